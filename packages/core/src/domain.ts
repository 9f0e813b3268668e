import { defaultWindow, resolveWindows, type WindowData, type WindowSpec } from './ddw.js';
import { fail } from './errors.js';
import { requireGroupOf, requireWholeGroup } from './group.js';
import type { Bdf } from './pci.js';
import { unmapAll, withDomainTces } from './pinning.js';
import { drop, patch, put, without, type DomainWindow, type Group, type PagingDomain, type State } from './state.js';
import { HOST_PAGE_SHIFT } from './tce-levels.js';
import {
  TCE_PCI_READ, TCE_PCI_WRITE, TCE_PERM_MASK, tceClearRange, tceFirstValid, tceGet, tcePermBits, tcePermName, tceTableCreate, tceValidRun,
  tceWriteRun, type TcePerm,
} from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, U64_MAX, type Hex } from './u64.js';

/**
 * Paging domains on the sPAPR TCE IOMMU: a TCE table behind each window (one or two) of the table
 * group the domain was allocated for. Follows the kernel's iommu_domain_ops contract, not the RFC's
 * code (iommufd-and-rfc.md section 4):
 * - map reports pgsize x pgcount bytes, and a refused map writes no TCE at all;
 * - unmap returns the bytes it cleared;
 * - the aperture end is inclusive, and every TCE index is bounds-checked;
 * - iova_to_phys returns 0 for an empty TCE and keeps the offset inside the IOMMU page;
 * - a read-only mapping (device reads memory, DMA_TO_DEVICE) gets TCE_PCI_READ alone; a writable one
 *   gets READ|WRITE, because PowerNV (pnv_tce_build) and pSeries LPAR both set READ with WRITE;
 * - the windows are programmed when the domain is attached, never when it is allocated;
 * - attach refuses (EINVAL) a device outside the group the domain serves.
 * A domain with two windows reports two apertures (the aperture-list op the RFC thread asks for);
 * its pgsize_bitmap is the union of the windows' page sizes, and a map must use the page size of the
 * window it lands in (a range never spans windows: the gap between them is not mappable).
 */
export type PagingDomainEvent =
  | {
      readonly type: 'PagingDomainAllocated';
      readonly data: {
        readonly domain: number;
        readonly context: string;
        readonly group: number;
        readonly windows?: readonly WindowData[];
        /** Logs written before domains had several windows carry their one window in these fields. */
        readonly slot?: 0 | 1;
        readonly start?: Hex;
        readonly size?: Hex;
        readonly pageShift?: number;
      };
    }
  | { readonly type: 'PagingDomainFreed'; readonly data: { readonly domain: number; readonly reason: 'user' | 'group-removed' } }
  | { readonly type: 'DeviceAttached'; readonly data: { readonly domain: number; readonly group: number; readonly bdf: Bdf } }
  | { readonly type: 'DeviceDetached'; readonly data: { readonly domain: number; readonly group: number; readonly bdf: Bdf } }
  | {
      readonly type: 'TcesMapped';
      readonly data: {
        readonly domain: number;
        readonly iova: Hex;
        readonly paddr: Hex;
        readonly pgsize: Hex;
        readonly pgcount: number;
        /** TCE permission bits written, in words: "r" = TCE_PCI_READ, "rw" = READ|WRITE (schemas 1-3 wrote bits 1 or 3). */
        readonly perm: TcePerm;
      };
    }
  | {
      readonly type: 'TcesCleared';
      readonly data: { readonly domain: number; readonly iova: Hex; readonly pgsize: Hex; readonly pgcount: number };
    };

/** IOMMU_READ: the device may read memory; IOMMU_WRITE: the device may write memory. */
export interface Prot {
  readonly read: boolean;
  readonly write: boolean;
}

/** iommu_direction_to_tce_perm plus the platforms' widening of WRITE to READ|WRITE. */
export function tcePerm(prot: Prot): bigint {
  if (prot.write) return TCE_PCI_READ | TCE_PCI_WRITE;
  if (prot.read) return TCE_PCI_READ;
  return fail('EINVAL', 'a mapping needs IOMMU_READ, IOMMU_WRITE or both');
}

export function requireDomain(state: State, context: string, id: number): PagingDomain {
  const d = state.domains[id];
  if (!d || d.context !== context) fail('ENOENT', `context ${context} has no domain ${id}`);
  return d;
}

/**
 * domain_alloc_paging for a device its context has claimed. Without window parameters: one window in
 * slot 0 over the 32-bit range (tce32), one level. The smallest page must not exceed the host
 * PAGE_SIZE, as iommufd requires of every domain.
 */
export function allocPagingDomain(tx: Tx, context: string, bdf: Bdf, windows: number | readonly WindowSpec[]): number {
  const group = requireGroupOf(tx.state, bdf);
  requireClaimed(group, context, bdf);
  const pe = tx.state.pes[group.pe]!;
  const specs = typeof windows === 'number' ? [defaultWindow(pe, windows)] : windows;
  const resolved = resolveWindows(tx.state, pe, specs);
  const smallest = Math.min(...resolved.map((w) => w.pageShift));
  if (smallest > HOST_PAGE_SHIFT) fail('EINVAL', `IOMMU page size 2^${smallest} is larger than the host PAGE_SIZE 2^${HOST_PAGE_SHIFT}`);
  const id = tx.state.nextDomainId;
  tx.emit({ type: 'PagingDomainAllocated', data: { domain: id, context, group: group.id, windows: resolved } });
  return id;
}

export function freeDomain(tx: Tx, context: string, id: number): void {
  const d = requireDomain(tx.state, context, id);
  const group = tx.state.groups[d.group];
  if (group?.domain.type === 'paging' && group.domain.id === id) fail('EBUSY', `domain ${id} is attached to group ${group.id}`);
  unmapAll(tx, id);
  tx.emit({ type: 'PagingDomainFreed', data: { domain: id, reason: 'user' } });
}

function requireClaimed(group: Group, context: string, bdf: Bdf): void {
  if (group.owner !== context || !group.claimed.includes(bdf)) {
    fail('EPERM', `${bdf} (group ${group.id}) is not owned by context ${context}`);
  }
}

/**
 * Attach a claimed device. The first device of the group switches the whole group and programs the
 * domain's window; later devices of the group must choose the same domain (EINVAL otherwise).
 */
export function attachDevice(tx: Tx, context: string, id: number, bdf: Bdf): void {
  const d = requireDomain(tx.state, context, id);
  const group = requireGroupOf(tx.state, bdf);
  requireClaimed(group, context, bdf);
  if (d.group !== group.id) fail('EINVAL', `domain ${id} serves group ${d.group}; ${bdf} is in group ${group.id}`);
  if (group.attached.includes(bdf)) fail('EBUSY', `${bdf} is already attached to domain ${id}`);
  if (group.domain.type === 'paging' && group.domain.id !== id) {
    fail('EINVAL', `group ${group.id} is attached to domain ${group.domain.id}; every device of a group shares one domain`);
  }
  if (group.domain.type === 'blocked') {
    requireWholeGroup(group, context);
    programWindows(tx, d);
  }
  tx.emit({ type: 'DeviceAttached', data: { domain: id, group: group.id, bdf } });
}

/** Detach; the last device returns the group to the blocking domain and its window is unset. */
export function detachDevice(tx: Tx, context: string, bdf: Bdf): void {
  const group = requireGroupOf(tx.state, bdf);
  requireClaimed(group, context, bdf);
  if (group.domain.type !== 'paging' || !group.attached.includes(bdf)) fail('EINVAL', `${bdf} is not attached`);
  const id = group.domain.id;
  tx.emit({ type: 'DeviceDetached', data: { domain: id, group: group.id, bdf } });
  if (tx.state.groups[group.id]!.attached.length === 0) unprogramWindows(tx, tx.state.domains[id]!);
}

/** set_window for each window of the domain: the slots must be free (EBUSY otherwise). */
function programWindows(tx: Tx, d: PagingDomain): void {
  const pe = tx.state.pes[d.pe]!;
  for (const w of d.windows) if (pe.windows[w.slot]) fail('EBUSY', `${pe.id} window slot ${w.slot} is in use`);
  for (const w of d.windows) {
    tx.emit({
      type: 'WindowSet',
      data: {
        pe: pe.id, slot: w.slot, start: toHex(w.start), size: toHex(w.last - w.start + 1n),
        pageShift: w.table.pageShift, table: { kind: 'domain', domain: d.id },
      },
    });
  }
}

function unprogramWindows(tx: Tx, d: PagingDomain): void {
  for (const w of d.windows) tx.emit({ type: 'WindowUnset', data: { pe: d.pe, slot: w.slot } });
}

export interface MapRequest {
  readonly iova: bigint;
  readonly paddr: bigint;
  readonly pgsize: bigint;
  readonly pgcount: number;
  readonly prot: Prot;
}

/** map_pages: all-or-nothing; returns the bytes mapped (pgsize x pgcount). */
export function mapPages(tx: Tx, context: string, id: number, req: MapRequest): bigint {
  const d = requireDomain(tx.state, context, id);
  const { w, first, bytes } = checkRange(d, req.iova, req.pgsize, req.pgcount);
  if (req.paddr & (req.pgsize - 1n)) fail('EINVAL', `paddr ${toHex(req.paddr)} is not aligned to the IOMMU page size ${toHex(req.pgsize)}`);
  if (req.paddr + bytes - 1n > U64_MAX) fail('EOVERFLOW', 'paddr + size overflows 64 bits');
  const perm = tcePerm(req.prot);
  const busy = tceFirstValid(w.table, first, req.pgcount);
  if (busy >= 0) fail('EEXIST', `IOVA ${toHex(req.iova + BigInt(busy - first) * req.pgsize)} is already mapped in domain ${id}`);
  tx.emit({
    type: 'TcesMapped',
    data: { domain: id, iova: toHex(req.iova), paddr: toHex(req.paddr), pgsize: toHex(req.pgsize), pgcount: req.pgcount, perm: tcePermName(perm) as TcePerm },
  });
  return bytes;
}

/**
 * unmap_pages: clears the mapped pages at the start of the range and returns their bytes. Like the
 * core's __iommu_unmap loop it stops at the first page that is not mapped; an unmapped start returns 0.
 */
export function unmapPages(tx: Tx, context: string, id: number, iova: bigint, pgsize: bigint, pgcount: number): bigint {
  const d = requireDomain(tx.state, context, id);
  const { w, first } = checkRange(d, iova, pgsize, pgcount);
  const n = tceValidRun(w.table, first, pgcount);
  if (n > 0) tx.emit({ type: 'TcesCleared', data: { domain: id, iova: toHex(iova), pgsize: toHex(pgsize), pgcount: n } });
  return BigInt(n) * pgsize;
}

/** iova_to_phys: 0 when nothing is mapped (or outside every window), else the address with its in-page offset. */
export function iovaToPhys(state: State, context: string, id: number, iova: bigint): bigint {
  return domainIovaToPhys(requireDomain(state, context, id), iova);
}

export function domainIovaToPhys(d: PagingDomain, iova: bigint): bigint {
  const w = windowAt(d, iova);
  if (!w) return 0n;
  const shift = BigInt(w.table.pageShift);
  const tce = tceGet(w.table, Number((iova - w.start) >> shift));
  if (tce === 0n) return 0n;
  const pageMask = (1n << shift) - 1n;
  return (tce & ~TCE_PERM_MASK & ~pageMask) | (iova & pageMask);
}

/** The window whose aperture holds `iova`. */
export function windowAt(d: PagingDomain, iova: bigint): DomainWindow | undefined {
  return d.windows.find((w) => iova >= w.start && iova <= w.last);
}

/** pgsize_bitmap: every window's page size. */
export function domainPgsizes(d: PagingDomain): bigint {
  return d.windows.reduce((bits, w) => bits | (1n << BigInt(w.table.pageShift)), 0n);
}

/** The lowest bit of pgsize_bitmap: the granule iommufd aligns IOVAs to. */
export function smallestPage(d: PagingDomain): bigint {
  const bits = domainPgsizes(d);
  return bits & -bits;
}

/** The checks shared by map and unmap; returns the window, the first relative TCE index and the byte length. */
function checkRange(d: PagingDomain, iova: bigint, pgsize: bigint, pgcount: number): { w: DomainWindow; first: number; bytes: bigint } {
  const bitmap = domainPgsizes(d);
  if ((bitmap & pgsize) === 0n || (pgsize & (pgsize - 1n)) !== 0n) {
    fail('EINVAL', `page size ${toHex(pgsize)} is not in the domain's pgsize_bitmap (${toHex(bitmap)})`);
  }
  if (!Number.isSafeInteger(pgcount) || pgcount < 1) fail('EINVAL', `pgcount must be a positive integer, got ${pgcount}`);
  if (iova & (pgsize - 1n)) fail('EINVAL', `IOVA ${toHex(iova)} is not aligned to the IOMMU page size ${toHex(pgsize)}`);
  const bytes = pgsize * BigInt(pgcount);
  const last = iova + bytes - 1n;
  if (last > U64_MAX) fail('EOVERFLOW', 'IOVA + size overflows 64 bits');
  const w = windowAt(d, iova);
  if (!w || last > w.last) {
    const apertures = d.windows.map((x) => `[${toHex(x.start)}, ${toHex(x.last)}]`).join(' ');
    fail('EINVAL', `[${toHex(iova)}, ${toHex(last)}] is not inside one aperture of domain ${d.id} (${apertures})`);
  }
  const page = 1n << BigInt(w.table.pageShift);
  if (pgsize !== page) fail('EINVAL', `window ${w.slot} of domain ${d.id} uses ${toHex(page)} pages, not ${toHex(pgsize)}`);
  return { w, first: Number((iova - w.start) >> BigInt(w.table.pageShift)), bytes };
}

export function evolveDomain(state: State, event: PagingDomainEvent): State {
  switch (event.type) {
    case 'PagingDomainAllocated': {
      const e = event.data;
      const group = state.groups[e.group]!;
      const data = e.windows ?? [{ slot: e.slot!, start: e.start!, size: e.size!, pageShift: e.pageShift!, levels: 1 }];
      const windows = data.map((w): DomainWindow => {
        const start = fromHex(w.start);
        const size = fromHex(w.size);
        return { slot: w.slot, start, last: start + size - 1n, levels: w.levels, table: tceTableCreate(w.pageShift, Number(size >> BigInt(w.pageShift))) };
      });
      const d: PagingDomain = { id: e.domain, context: e.context, group: e.group, pe: group.pe, windows };
      return patch(state, { domains: put(state.domains, e.domain, d), nextDomainId: Math.max(state.nextDomainId, e.domain + 1) });
    }
    case 'PagingDomainFreed':
      return patch(state, { domains: drop(state.domains, event.data.domain) });
    case 'DeviceAttached': {
      const g = state.groups[event.data.group]!;
      const group: Group = { ...g, domain: { type: 'paging', id: event.data.domain }, attached: [...g.attached, event.data.bdf] };
      return patch(state, { groups: put(state.groups, g.id, group) });
    }
    case 'DeviceDetached': {
      const g = state.groups[event.data.group]!;
      const attached = without(g.attached, event.data.bdf);
      const group: Group = { ...g, attached, domain: attached.length === 0 ? { type: 'blocked' } : g.domain };
      return patch(state, { groups: put(state.groups, g.id, group) });
    }
    case 'TcesMapped': {
      const e = event.data;
      const d = state.domains[e.domain]!;
      return withDomainTces(state, d, mapRange(d, fromHex(e.iova), fromHex(e.pgsize) * BigInt(e.pgcount), fromHex(e.paddr) | tcePermBits(e.perm)));
    }
    case 'TcesCleared': {
      const e = event.data;
      const d = state.domains[e.domain]!;
      return withDomainTces(state, d, unmapRange(d, fromHex(e.iova), fromHex(e.pgsize) * BigInt(e.pgcount)));
    }
  }
}

/**
 * The domain with [iova, iova+length) translated, page after page, from `tce` (address | permission
 * bits) in the window holding iova. The caller checked the range fits that window and its pages.
 */
export function mapRange(d: PagingDomain, iova: bigint, length: bigint, tce: bigint): PagingDomain {
  return changeWindow(d, iova, length, tce);
}

/** The domain with the TCEs of [iova, iova+length) cleared. */
export function unmapRange(d: PagingDomain, iova: bigint, length: bigint): PagingDomain {
  return changeWindow(d, iova, length, null);
}

/** The window holding iova with its pages [iova, iova+length) written as a run from `tce`, or cleared when null. */
function changeWindow(d: PagingDomain, iova: bigint, length: bigint, tce: bigint | null): PagingDomain {
  const windows = d.windows.slice();
  for (let k = 0; k < windows.length; k++) {
    const w = windows[k]!;
    if (iova < w.start || iova > w.last) continue;
    const shift = BigInt(w.table.pageShift);
    const first = Number((iova - w.start) >> shift);
    const count = Number(length >> shift);
    const table = tce === null ? tceClearRange(w.table, first, count) : tceWriteRun(w.table, first, count, tce, 1n << shift);
    // Fields spelled out rather than spread: a spread with an override costs ten times as much in V8 11.
    windows[k] = { slot: w.slot, start: w.start, last: w.last, levels: w.levels, table };
  }
  return { id: d.id, context: d.context, group: d.group, pe: d.pe, windows };
}
