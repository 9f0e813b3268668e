import type { WindowSpec } from './ddw.js';
import { allocPagingDomain, mapRange, smallestPage, tcePerm, unmapRange, windowAt } from './domain.js';
import { fail } from './errors.js';
import { checkReserve, holesIn, PAGE_SIZE } from './io-pagetable.js';
import {
  dropObject, findObject, nextObjectId, objectAt, putObject, rangeData, rangeOf, requireObject,
  type Area, type Hwpt, type IDevice, type Ioas, type Range, type RangeData,
} from './iommufd-ctx.js';
import { unmapAll, withDomainTces } from './pinning.js';
import type { PagingDomain, State } from './state.js';
import type { Tx } from './tx.js';
import { toHex, U64_MAX } from './u64.js';

/**
 * HWPT_PAGING objects (hw_pagetable.c): a paging domain filled from an IOAS.
 *
 * - Allocation adds the domain to its IOAS at once (iopt_table_add_domain), before any attach: the
 *   IOAS alignment may grow to the domain's smallest page (EINVAL above PAGE_SIZE, EADDRINUSE for an
 *   area it misaligns), the gaps around and between the domain's apertures become reserved ranges
 *   owned by the HWPT (EADDRINUSE over an area or an allowed range), and every area is mapped into
 *   the domain (HwptAllocated fills it: one event, so the HWPT and the IOAS agree after every event).
 *   So allocating a HWPT already narrows the IOAS's IOVA ranges.
 * - Window parameters (which window, page shift, size, levels) travel as the allocation's user data,
 *   as the RFC thread proposes for the second window; without them the domain gets window 0.
 * - Destroying a HWPT unmaps every area from its domain, drops its reservations and frees the domain.
 */
export type HwptEvent =
  | {
      readonly type: 'HwptAllocated';
      readonly data: {
        readonly context: string;
        readonly hwpt: number;
        readonly ioas: number;
        readonly domain: number;
        readonly auto: boolean;
        /** The IOVA the domain cannot translate, reserved on the IOAS for the HWPT. */
        readonly reserved: readonly RangeData[];
      };
    }
  | { readonly type: 'HwptDestroyed'; readonly data: { readonly context: string; readonly hwpt: number } };

/** The domain's apertures: one per window (the aperture-list op). */
export function apertures(d: PagingDomain): Range[] {
  return d.windows.map((w) => ({ start: w.start, last: w.last }));
}

/** iova_alignment: the largest smallest-page among the IOAS's domains; 1 without domains. */
export function ioasAlignment(state: State, context: string, ioas: Ioas): bigint {
  let align = 1n;
  for (const id of ioas.hwpts) {
    const smallest = smallestPage(state.domains[objectAt(state, context, id, 'hwpt').domain]!);
    if (smallest > align) align = smallest;
  }
  return align;
}

/** IOMMU_HWPT_ALLOC on an IOAS. Flags: the modelled driver supports no nesting and no dirty tracking. */
export function hwptAlloc(tx: Tx, context: string, devId: number, ptId: number, flags: readonly string[], windows: readonly WindowSpec[] | null): number {
  const dev = requireObject(tx.state, context, devId, 'device');
  const pt = findObject(tx.state, context, ptId) ?? fail('EINVAL', `pt_id ${ptId} is not an object of context ${context}`);
  if (pt.kind === 'hwpt') fail('EOPNOTSUPP', 'a nested HWPT needs domain_alloc_nested, which the sPAPR TCE driver does not have');
  if (pt.kind !== 'ioas') fail('EINVAL', `pt_id ${ptId} is a ${pt.kind}, not an IOAS`);
  for (const f of flags) {
    if (f === 'NEST_PARENT') fail('EOPNOTSUPP', 'TCE tables cannot be nesting parents');
    if (f === 'DIRTY_TRACKING') fail('EOPNOTSUPP', 'TCEs have no dirty bit: the device is not capable of dirty tracking');
    fail('EOPNOTSUPP', `unknown HWPT_ALLOC flag ${f}`);
  }
  return createHwpt(tx, context, dev, pt, windows, false);
}

/** Without window parameters a domain gets window 0 of 4 KiB TCEs, as the RFC's driver does. */
const DEFAULT_PAGE_SHIFT = 12;

/** Allocates a domain for the device's group and adds it to the IOAS; returns the HWPT id. */
export function createHwpt(tx: Tx, context: string, dev: IDevice, ioas: Ioas, windows: readonly WindowSpec[] | null, auto: boolean): number {
  const domain = allocPagingDomain(tx, context, dev.bdf, windows ?? DEFAULT_PAGE_SHIFT);
  const d = tx.state.domains[domain]!;
  const current = ioasAlignment(tx.state, context, ioas);
  const smallest = smallestPage(d);
  const alignment = smallest > current ? smallest : current;
  if (alignment > PAGE_SIZE) fail('EINVAL', `IOVA alignment ${toHex(alignment)} would exceed PAGE_SIZE`);
  if (alignment !== current) {
    const bad = ioas.areas.find((a) => (a.iova | (a.last + 1n - a.iova) | (a.paddr % PAGE_SIZE)) & (alignment - 1n));
    if (bad) fail('EADDRINUSE', `the area at ${toHex(bad.iova)} is not aligned to the new IOVA alignment ${toHex(alignment)}`);
  }
  const gaps = holesIn(apertures(d), 0n, U64_MAX);
  checkReserve(ioas, gaps, `outside the apertures of domain ${domain}`);
  for (const area of ioas.areas) checkAreaFits(d, area);
  const id = nextObjectId(tx.state, context);
  tx.emit({ type: 'HwptAllocated', data: { context, hwpt: id, ioas: ioas.id, domain, auto, reserved: gaps.map(rangeData) } });
  return id;
}

/**
 * What iommu_map of an area asks of the driver. The area lies in one window (reserved ranges cover
 * everything else); the core picks the page size that window uses, and the driver refuses (EINVAL)
 * an area not aligned to it, which happens when the other window or another domain sets a smaller
 * IOVA alignment.
 */
export function checkAreaFits(d: PagingDomain, area: Area): void {
  const w = windowAt(d, area.iova)!;
  const page = 1n << BigInt(w.table.pageShift);
  if ((area.iova | area.paddr | (area.last + 1n)) & (page - 1n)) {
    fail('EINVAL', `window ${w.slot} of domain ${d.id} maps ${toHex(page)} pages: the area [${toHex(area.iova)}, ${toHex(area.last)}] -> ${toHex(area.paddr)} is not aligned to them`);
  }
}

/** The TCE value for the first page of an area: its address and permission bits. */
export function areaTce(area: Area): bigint {
  return area.paddr | tcePerm(area.prot);
}

/** The domain with the area's pages mapped / cleared, and the context's pinned count following. */
export function withArea(state: State, domain: number, area: Area, mapped: boolean): State {
  const d = state.domains[domain]!;
  const length = area.last - area.iova + 1n;
  const next = mapped ? mapRange(d, area.iova, length, areaTce(area)) : unmapRange(d, area.iova, length);
  return withDomainTces(state, d, next);
}

/**
 * Removes the domain from its IOAS and frees it. The HWPT goes first (with its reservations); the
 * domain, no longer filled by the IOAS, is then unmapped and freed. The caller checks users.
 */
export function destroyHwpt(tx: Tx, context: string, id: number): void {
  const h = objectAt(tx.state, context, id, 'hwpt');
  tx.emit({ type: 'HwptDestroyed', data: { context, hwpt: id } });
  unmapAll(tx, h.domain);
  tx.emit({ type: 'PagingDomainFreed', data: { domain: h.domain, reason: 'user' } });
}

export function evolveHwpt(state: State, event: HwptEvent): State {
  const { context, hwpt } = event.data;
  switch (event.type) {
    case 'HwptAllocated': {
      const e = event.data;
      const h: Hwpt = { kind: 'hwpt', id: hwpt, ioas: e.ioas, domain: e.domain, auto: e.auto };
      const ioas = objectAt(state, context, e.ioas, 'ioas');
      const reserved = [...ioas.reserved, ...e.reserved.map((r) => ({ ...rangeOf(r), owner: { kind: 'hwpt' as const, id: hwpt } }))];
      let next = putObject(putObject(state, context, h), context, { ...ioas, hwpts: [...ioas.hwpts, hwpt], reserved });
      for (const area of ioas.areas) next = withArea(next, e.domain, area, true);
      return next;
    }
    case 'HwptDestroyed': {
      const h = objectAt(state, context, hwpt, 'hwpt');
      const ioas = objectAt(state, context, h.ioas, 'ioas');
      const next: Ioas = {
        ...ioas,
        hwpts: ioas.hwpts.filter((x) => x !== hwpt),
        reserved: ioas.reserved.filter((r) => !(r.owner.kind === 'hwpt' && r.owner.id === hwpt)),
      };
      return putObject(dropObject(state, context, hwpt), context, next);
    }
  }
}
