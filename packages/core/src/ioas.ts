import type { Output } from './commands.js';
import type { Prot } from './domain.js';
import { fail } from './errors.js';
import { checkAreaFits, ioasAlignment, withArea } from './hwpt.js';
import {
  allocIova, areasIn, checkFixedIova, checkReserve, insertArea, iovaRanges, PAGE_SIZE,
} from './io-pagetable.js';
import {
  dropObject, nextObjectId, objectAt, putObject, rangeData, rangeOf, requireObject, type Area, type Ioas, type Range, type RangeData,
} from './iommufd-ctx.js';
import type { State } from './state.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, U64_MAX, type Hex } from './u64.js';

/**
 * IOAS objects and their ioctls (ioas.c over io_pagetable.c). Every map programs the TCEs of every
 * HWPT domain of the IOAS and every unmap clears them, in the same event that records the area
 * (IoasAreaMapped / IoasAreaUnmapped), so iova_to_phys through any of those domains agrees with the
 * IOAS after every event.
 *
 * Deliberate difference: the kernel's UNMAP removes the fully covered areas below the first area it
 * only partly covers and then fails with ENOENT, keeping what it did. Here a refused command changes
 * nothing, so such an UNMAP fails with ENOENT and every area stays.
 */
export type IoasEvent =
  | { readonly type: 'IoasAllocated'; readonly data: { readonly context: string; readonly ioas: number } }
  | { readonly type: 'IoasDestroyed'; readonly data: { readonly context: string; readonly ioas: number } }
  | {
      readonly type: 'IoasAreaMapped';
      readonly data: {
        readonly context: string;
        readonly ioas: number;
        readonly iova: Hex;
        readonly length: Hex;
        readonly paddr: Hex;
        readonly read: boolean;
        readonly write: boolean;
        readonly pagesWritable: boolean;
      };
    }
  | { readonly type: 'IoasAreaUnmapped'; readonly data: { readonly context: string; readonly ioas: number; readonly iova: Hex } }
  | { readonly type: 'IoasAllowedSet'; readonly data: { readonly context: string; readonly ioas: number; readonly ranges: readonly RangeData[] } }
  | { readonly type: 'IoasTestReserved'; readonly data: { readonly context: string; readonly ioas: number; readonly range: RangeData } };

export const MAP_FLAGS = ['FIXED_IOVA', 'WRITEABLE', 'READABLE'] as const;

interface MapFlags {
  readonly fixed: boolean;
  readonly prot: Prot;
}

/** Unknown flags are EOPNOTSUPP, as for every iommufd ioctl. */
function parseMapFlags(flags: readonly string[]): MapFlags {
  const unknown = flags.find((f) => !(MAP_FLAGS as readonly string[]).includes(f));
  if (unknown !== undefined) fail('EOPNOTSUPP', `unknown map flag ${unknown} (known: ${MAP_FLAGS.join(', ')})`);
  return { fixed: flags.includes('FIXED_IOVA'), prot: { read: flags.includes('READABLE'), write: flags.includes('WRITEABLE') } };
}

function requireProt(prot: Prot): void {
  if (!prot.read && !prot.write) fail('EINVAL', 'a mapping needs READABLE, WRITEABLE or both');
}

/** IOMMU_IOAS_ALLOC: an empty IOAS (alignment 1, nothing reserved, no allowed list). */
export function ioasAlloc(tx: Tx, context: string): number {
  const id = nextObjectId(tx.state, context);
  tx.emit({ type: 'IoasAllocated', data: { context, ioas: id } });
  return id;
}

export interface MapRequest {
  readonly ioas: number;
  readonly flags: readonly string[];
  readonly iova: bigint;
  readonly length: bigint;
  readonly paddr: bigint;
}

/** IOMMU_IOAS_MAP, checks in the kernel's order; returns the IOVA (chosen when not FIXED_IOVA). */
export function ioasMap(tx: Tx, context: string, req: MapRequest): bigint {
  const flags = parseMapFlags(req.flags);
  if (req.iova >= U64_MAX || req.length >= U64_MAX) fail('EOVERFLOW', 'iova and length must be below ULONG_MAX');
  requireProt(flags.prot);
  const ioas = requireObject(tx.state, context, req.ioas, 'ioas');
  return placeAreas(tx, context, ioas, [{ paddr: req.paddr, length: req.length, pagesWritable: flags.prot.write }], flags, req.iova);
}

export interface CopyRequest {
  readonly dstIoas: number;
  readonly srcIoas: number;
  readonly flags: readonly string[];
  readonly dstIova: bigint;
  readonly srcIova: bigint;
  readonly length: bigint;
}

/**
 * IOMMU_IOAS_COPY: maps the pages behind [srcIova, +length) of one IOAS into another. The source
 * must be fully covered by contiguous areas (any covered sub-range, not only whole areas); the
 * destination is placed like MAP. The pages are shared, so a WRITEABLE copy of pages pinned
 * read-only is EPERM.
 */
export function ioasCopy(tx: Tx, context: string, req: CopyRequest): bigint {
  const flags = parseMapFlags(req.flags);
  if (req.length >= U64_MAX || req.srcIova >= U64_MAX || req.dstIova >= U64_MAX) fail('EOVERFLOW', 'iovas and length must be below ULONG_MAX');
  requireProt(flags.prot);
  const src = requireObject(tx.state, context, req.srcIoas, 'ioas');
  if (req.length === 0n) fail('EINVAL', 'length is 0');
  const last = req.srcIova + req.length - 1n;
  if (last > U64_MAX) fail('EOVERFLOW', 'source range overflows');
  const pieces: Piece[] = [];
  let at = req.srcIova;
  for (const a of areasIn(src, req.srcIova, last)) {
    if (a.iova > at) break;
    const end = a.last < last ? a.last : last;
    pieces.push({ paddr: a.paddr + (at - a.iova), length: end - at + 1n, pagesWritable: a.pagesWritable });
    at = end + 1n;
    if (end === last) break;
  }
  if (at <= last) fail('ENOENT', `[${toHex(req.srcIova)}, ${toHex(last)}] of IOAS ${req.srcIoas} is not fully mapped`);
  const dst = requireObject(tx.state, context, req.dstIoas, 'ioas');
  return placeAreas(tx, context, dst, pieces, flags, req.dstIova);
}

interface Piece {
  readonly paddr: bigint;
  readonly length: bigint;
  readonly pagesWritable: boolean;
}

/** iopt_map_pages: one area per piece, placed back to back from a fixed or allocated IOVA. */
function placeAreas(tx: Tx, context: string, ioas: Ioas, pieces: readonly Piece[], flags: MapFlags, fixedIova: bigint): bigint {
  const align = ioasAlignment(tx.state, context, ioas);
  const length = pieces.reduce((n, p) => n + p.length, 0n);
  if (length === 0n || length & (align - 1n)) fail('EINVAL', `length ${toHex(length)} is zero or not a multiple of the IOVA alignment ${toHex(align)}`);
  let iova: bigint;
  if (flags.fixed) {
    checkFixedIova(ioas, align, fixedIova, length);
    iova = fixedIova;
  } else {
    iova = allocIova(ioas, align, pieces[0]!.paddr, length);
  }
  const areas: Area[] = [];
  let at = iova;
  for (const p of pieces) {
    if (flags.prot.write && !p.pagesWritable) fail('EPERM', `the pages at ${toHex(p.paddr)} were pinned read-only`);
    if ((p.paddr % PAGE_SIZE) & (align - 1n)) fail('EINVAL', `the offset of ${toHex(p.paddr)} in its page is not aligned to ${toHex(align)}`);
    areas.push({ iova: at, last: at + p.length - 1n, paddr: p.paddr, prot: flags.prot, pagesWritable: p.pagesWritable });
    at += p.length;
  }
  for (const area of areas) {
    for (const h of ioas.hwpts) checkAreaFits(tx.state.domains[objectAt(tx.state, context, h, 'hwpt').domain]!, area);
    tx.emit({
      type: 'IoasAreaMapped',
      data: {
        context, ioas: ioas.id, iova: toHex(area.iova), length: toHex(area.last - area.iova + 1n), paddr: toHex(area.paddr),
        read: area.prot.read, write: area.prot.write, pagesWritable: area.pagesWritable,
      },
    });
  }
  return iova;
}

/**
 * IOMMU_IOAS_UNMAP. (0, U64_MAX) unmaps everything and always succeeds. Otherwise the range must
 * cover every area it touches entirely (ENOENT if it cuts one), and something must be unmapped
 * (ENOENT for an empty range). Returns the bytes unmapped.
 */
export function ioasUnmap(tx: Tx, context: string, ioasId: number, iova: bigint, length: bigint): bigint {
  const ioas = requireObject(tx.state, context, ioasId, 'ioas');
  let victims: Area[];
  if (iova === 0n && length === U64_MAX) {
    victims = [...ioas.areas];
  } else {
    if (iova >= U64_MAX || length >= U64_MAX) fail('EOVERFLOW', 'iova and length must be below ULONG_MAX');
    if (length === 0n) fail('EINVAL', 'length is 0');
    const last = iova + length - 1n;
    if (last > U64_MAX) fail('EOVERFLOW', 'range overflows');
    victims = areasIn(ioas, iova, last);
    const cut = victims.find((a) => a.iova < iova || a.last > last);
    if (cut) fail('ENOENT', `[${toHex(iova)}, ${toHex(last)}] would split the area [${toHex(cut.iova)}, ${toHex(cut.last)}]`);
    if (victims.length === 0) fail('ENOENT', `nothing is mapped in [${toHex(iova)}, ${toHex(last)}]`);
  }
  let bytes = 0n;
  for (const a of victims) {
    tx.emit({ type: 'IoasAreaUnmapped', data: { context, ioas: ioasId, iova: toHex(a.iova) } });
    bytes += a.last - a.iova + 1n;
  }
  return bytes;
}

/**
 * IOMMU_IOAS_IOVA_RANGES with a buffer of `capacity` entries (unlimited when omitted): the holes
 * between reserved ranges and the alignment. A short buffer gets the entries that fit and EMSGSIZE,
 * with numIovas set to the count needed.
 */
export function ioasIovaRanges(state: State, context: string, ioasId: number, capacity: number | undefined): Output {
  const ioas = requireObject(state, context, ioasId, 'ioas');
  const ranges = iovaRanges(ioas);
  const shown = capacity === undefined ? ranges : ranges.slice(0, capacity);
  const out: Output = { numIovas: ranges.length, ranges: shown.map(rangeData), alignment: toHex(ioasAlignment(state, context, ioas)) };
  if (shown.length < ranges.length) fail('EMSGSIZE', `${ranges.length} ranges do not fit in ${capacity}`, out);
  return out;
}

/**
 * IOMMU_IOAS_ALLOW_IOVAS: replaces the allowed list (an empty list clears it). Each range needs
 * start < last and no two may overlap (EINVAL); a range over a reserved one is EADDRINUSE.
 */
export function ioasAllowIovas(tx: Tx, context: string, ioasId: number, ranges: readonly Range[]): void {
  const ioas = requireObject(tx.state, context, ioasId, 'ioas');
  for (const r of ranges) if (r.start >= r.last) fail('EINVAL', `allowed range [${toHex(r.start)}, ${toHex(r.last)}] is empty or reversed`);
  if (overlapping(ranges)) fail('EINVAL', 'allowed ranges overlap');
  for (const r of ranges) {
    const hit = ioas.reserved.find((x) => x.start <= r.last && r.start <= x.last);
    if (hit) fail('EADDRINUSE', `allowed range [${toHex(r.start)}, ${toHex(r.last)}] covers reserved [${toHex(hit.start)}, ${toHex(hit.last)}]`);
  }
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1));
  tx.emit({ type: 'IoasAllowedSet', data: { context, ioas: ioasId, ranges: sorted.map(rangeData) } });
}

function overlapping(ranges: readonly Range[]): boolean {
  return ranges.some((a, i) => ranges.some((b, j) => i < j && a.start <= b.last && b.start <= a.last));
}

/** IOMMU_TEST_OP_ADD_RESERVED, the selftest hook: reserves [start, start+length) with no owner. */
export function ioasAddReserved(tx: Tx, context: string, ioasId: number, start: bigint, length: bigint): void {
  const ioas = requireObject(tx.state, context, ioasId, 'ioas');
  if (length === 0n || start + length - 1n > U64_MAX) fail('EINVAL', 'empty or overflowing range');
  const range = { start, last: start + length - 1n };
  checkReserve(ioas, [range], 'the reservation');
  tx.emit({ type: 'IoasTestReserved', data: { context, ioas: ioasId, range: rangeData(range) } });
}

/** IOMMU_DESTROY of an IOAS: EBUSY while a HWPT uses it; its areas go with it. */
export function destroyIoas(tx: Tx, context: string, ioas: Ioas): void {
  if (ioas.hwpts.length > 0) fail('EBUSY', `IOAS ${ioas.id} is used by HWPT ${ioas.hwpts.join(', ')}`);
  tx.emit({ type: 'IoasDestroyed', data: { context, ioas: ioas.id } });
}

/** The area mapped into (or cleared from) every HWPT domain of the IOAS. */
function inDomains(state: State, context: string, ioas: Ioas, area: Area, mapped: boolean): State {
  let next = state;
  for (const h of ioas.hwpts) next = withArea(next, objectAt(state, context, h, 'hwpt').domain, area, mapped);
  return next;
}

export function evolveIoas(state: State, event: IoasEvent): State {
  const { context } = event.data;
  switch (event.type) {
    case 'IoasAllocated':
      return putObject(state, context, { kind: 'ioas', id: event.data.ioas, areas: [], reserved: [], allowed: [], hwpts: [] });
    case 'IoasDestroyed':
      return dropObject(state, context, event.data.ioas);
    case 'IoasAreaMapped': {
      const e = event.data;
      const ioas = objectAt(state, context, e.ioas, 'ioas');
      const iova = fromHex(e.iova);
      const area: Area = {
        iova, last: iova + fromHex(e.length) - 1n, paddr: fromHex(e.paddr), prot: { read: e.read, write: e.write }, pagesWritable: e.pagesWritable,
      };
      return inDomains(putObject(state, context, { ...ioas, areas: insertArea(ioas.areas, area) }), context, ioas, area, true);
    }
    case 'IoasAreaUnmapped': {
      const ioas = objectAt(state, context, event.data.ioas, 'ioas');
      const iova = fromHex(event.data.iova);
      const area = ioas.areas.find((a) => a.iova === iova)!;
      return inDomains(putObject(state, context, { ...ioas, areas: ioas.areas.filter((a) => a !== area) }), context, ioas, area, false);
    }
    case 'IoasAllowedSet': {
      const ioas = objectAt(state, context, event.data.ioas, 'ioas');
      return putObject(state, context, { ...ioas, allowed: event.data.ranges.map(rangeOf) });
    }
    case 'IoasTestReserved': {
      const ioas = objectAt(state, context, event.data.ioas, 'ioas');
      return putObject(state, context, { ...ioas, reserved: [...ioas.reserved, { ...rangeOf(event.data.range), owner: { kind: 'test' } }] });
    }
  }
}
