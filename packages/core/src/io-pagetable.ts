import { fail } from './errors.js';
import type { Area, Ioas, Range, Reserved } from './iommufd-ctx.js';
import { HOST_PAGE_SHIFT } from './tce-levels.js';
import { toHex, U64_MAX } from './u64.js';

/**
 * The interval rules of an io_pagetable (drivers/iommu/iommufd/io_pagetable.c), as pure functions
 * of an IOAS. ULONG_MAX is U64_MAX on ppc64.
 *
 * - Reserved ranges (owned by a domain, a device or the test hook) and areas never overlap; allowed
 *   ranges never overlap reserved ones.
 * - IOVA_RANGES reports the holes between reserved ranges, never the allowed list.
 * - Automatic IOVAs come from the allowed list (or [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]) minus
 *   reserved ranges and areas, first fit from the bottom, so never IOVA 0.
 */
export const PAGE_SIZE = 1n << BigInt(HOST_PAGE_SHIFT);
/** The THP size with the radix MMU and 64 KiB pages (POWER9 and later): the cap on auto alignment. */
const HPAGE_SIZE = 1n << 21n;

export function overlaps(r: Range, start: bigint, last: bigint): boolean {
  return r.start <= last && start <= r.last;
}

/** The areas meeting [start, last], in IOVA order (binary search: areas are sorted and disjoint). */
export function areasIn(ioas: Ioas, start: bigint, last: bigint): Area[] {
  const areas = ioas.areas;
  let lo = 0;
  let hi = areas.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (areas[mid]!.last < start) lo = mid + 1;
    else hi = mid;
  }
  const out: Area[] = [];
  for (let i = lo; i < areas.length && areas[i]!.iova <= last; i++) out.push(areas[i]!);
  return out;
}

export function reservedIn(ioas: Ioas, start: bigint, last: bigint): Reserved[] {
  return ioas.reserved.filter((r) => overlaps(r, start, last));
}

/** The ranges as a sorted list of disjoint, non-adjacent ranges covering the same addresses. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Range[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev && r.start <= prev.last + 1n) out[out.length - 1] = { start: prev.start, last: r.last > prev.last ? r.last : prev.last };
    else out.push({ start: r.start, last: r.last });
  }
  return out;
}

/** What [lo, hi] leaves uncovered by `ranges`. */
export function holesIn(ranges: readonly Range[], lo: bigint, hi: bigint): Range[] {
  const out: Range[] = [];
  let next = lo;
  for (const r of mergeRanges(ranges)) {
    if (r.last < lo || r.start > hi) continue;
    if (r.start > next) out.push({ start: next, last: r.start - 1n });
    if (r.last >= hi) return out;
    next = r.last + 1n;
  }
  out.push({ start: next, last: hi });
  return out;
}

/** IOMMU_IOAS_IOVA_RANGES: the holes between reserved ranges over the whole 64-bit space. */
export function iovaRanges(ioas: Ioas): Range[] {
  return holesIn(ioas.reserved, 0n, U64_MAX);
}

/** iopt_check_iova for a FIXED_IOVA map: alignment (EINVAL), overflow, reserved (EINVAL), areas (EEXIST). */
export function checkFixedIova(ioas: Ioas, alignment: bigint, iova: bigint, length: bigint): void {
  if (iova & (alignment - 1n)) fail('EINVAL', `IOVA ${toHex(iova)} is not aligned to the IOAS alignment ${toHex(alignment)}`);
  const last = iova + length - 1n;
  if (last > U64_MAX) fail('EOVERFLOW', `IOVA ${toHex(iova)} + length ${toHex(length)} overflows`);
  const r = reservedIn(ioas, iova, last)[0];
  if (r) fail('EINVAL', `[${toHex(iova)}, ${toHex(last)}] intersects reserved [${toHex(r.start)}, ${toHex(r.last)}] (${ownerText(r)})`);
  const a = areasIn(ioas, iova, last)[0];
  if (a) fail('EEXIST', `[${toHex(iova)}, ${toHex(last)}] intersects the area at [${toHex(a.iova)}, ${toHex(a.last)}]`);
}

export function ownerText(r: Reserved): string {
  return r.owner.kind === 'test' ? 'test reservation' : `owned by ${r.owner.kind === 'hwpt' ? 'HWPT' : 'DEVICE'} ${r.owner.id}`;
}

/**
 * iopt_alloc_iova. The alignment keeps what the address has (its lowest set bit) up to the length
 * rounded to a power of two, capped at the THP size; the address's offset in its page is kept.
 */
export function allocIova(ioas: Ioas, alignment: bigint, addr: bigint, length: bigint): bigint {
  if (length === 0n || length >= U64_MAX / 2n) fail('EOVERFLOW', `length ${toHex(length)} cannot be placed automatically`);
  const offset = addr % PAGE_SIZE;
  let align = roundUpPow2(length);
  if (addr !== 0n && (addr & -addr) < align) align = addr & -addr;
  if (align >= HPAGE_SIZE) align = HPAGE_SIZE;
  if (align < alignment) fail('EINVAL', `the placement alignment ${toHex(align)} is below the IOAS alignment ${toHex(alignment)}`);
  const lo = PAGE_SIZE;
  const hi = U64_MAX - PAGE_SIZE;
  const spans = ioas.allowed.length === 0
    ? [{ start: lo, last: hi }]
    : ioas.allowed.filter((r) => r.last >= lo && r.start <= hi).map((r) => ({ start: r.start < lo ? lo : r.start, last: r.last > hi ? hi : r.last }));
  const used = [...ioas.reserved, ...ioas.areas.map((a) => ({ start: a.iova, last: a.last }))];
  for (const span of spans) {
    if (fits(span.start, span.last, length, align, offset) === null) continue;
    for (const hole of holesIn(used, span.start, span.last)) {
      const at = fits(hole.start, hole.last, length, align, offset);
      if (at !== null) return at;
    }
  }
  return fail('ENOSPC', `no free IOVA range of ${toHex(length)} bytes`);
}

/** __alloc_iova_check_range: the aligned start within [start, last] if `length` fits there. */
function fits(start: bigint, last: bigint, length: bigint, align: bigint, offset: bigint): bigint | null {
  if (start + align - 1n > U64_MAX) return null;
  const aligned = ((start + align - 1n) & ~(align - 1n)) | offset;
  if (aligned >= last || last - aligned < length - 1n) return null;
  return aligned;
}

function roundUpPow2(n: bigint): bigint {
  let p = 1n;
  while (p < n) p <<= 1n;
  return p;
}

/**
 * iopt_reserve_iova: a new reservation may not cover an area or an allowed range (EADDRINUSE).
 * Reserved ranges may overlap each other (each owner keeps its own).
 */
export function checkReserve(ioas: Ioas, ranges: readonly Range[], what: string): void {
  for (const r of ranges) {
    const a = areasIn(ioas, r.start, r.last)[0];
    if (a) fail('EADDRINUSE', `${what} [${toHex(r.start)}, ${toHex(r.last)}] covers the area at [${toHex(a.iova)}, ${toHex(a.last)}]`);
    const al = ioas.allowed.find((x) => overlaps(x, r.start, r.last));
    if (al) fail('EADDRINUSE', `${what} [${toHex(r.start)}, ${toHex(r.last)}] covers the allowed range [${toHex(al.start)}, ${toHex(al.last)}]`);
  }
}

/** The area list with `area` inserted in IOVA order. */
export function insertArea(areas: readonly Area[], area: Area): Area[] {
  let lo = 0;
  let hi = areas.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (areas[mid]!.iova < area.iova) lo = mid + 1;
    else hi = mid;
  }
  const out = areas.slice(0, lo);
  out.push(area);
  for (let i = lo; i < areas.length; i++) out.push(areas[i]!);
  return out;
}
