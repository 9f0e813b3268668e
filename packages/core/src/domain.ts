import { fail } from './errors.js';
import { requireGroupOf, requireWholeGroup } from './group.js';
import type { Bdf } from './pci.js';
import { unmapAll } from './pinning.js';
import { drop, put, without, type Group, type PagingDomain, type State } from './state.js';
import {
  TCE_PCI_READ, TCE_PCI_WRITE, TCE_PERM_MASK, tceClearRange, tceGet, tcePermBits, tcePermName, tceTableCreate, tceWriteRange,
  type TcePerm,
} from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, U64_MAX, type Hex } from './u64.js';
import { slotStart } from './window.js';

/**
 * Paging domains on the sPAPR TCE IOMMU: a TCE table behind one window of the table group the domain
 * was allocated for. Follows the kernel's iommu_domain_ops contract, not the RFC's code
 * (iommufd-and-rfc.md section 4):
 * - map reports pgsize x pgcount bytes, and a refused map writes no TCE at all;
 * - unmap returns the bytes it cleared;
 * - the aperture end is inclusive, and every TCE index is bounds-checked;
 * - iova_to_phys returns 0 for an empty TCE and keeps the offset inside the IOMMU page;
 * - a read-only mapping (device reads memory, DMA_TO_DEVICE) gets TCE_PCI_READ alone; a writable one
 *   gets READ|WRITE, because PowerNV (pnv_tce_build) and pSeries LPAR both set READ with WRITE;
 * - the window is programmed when the domain is attached, never when it is allocated;
 * - attach refuses (EINVAL) a device outside the group the domain serves.
 */
export type PagingDomainEvent =
  | {
      readonly type: 'PagingDomainAllocated';
      readonly data: {
        readonly domain: number;
        readonly context: string;
        readonly group: number;
        readonly slot: 0 | 1;
        readonly start: Hex;
        readonly size: Hex;
        readonly pageShift: number;
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
        /** TCE permission bits written, in words: "r" = TCE_PCI_READ, "rw" = READ|WRITE (schema 1: bits 1 or 3). */
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

/** The host's CPU page size: iommufd refuses a domain whose smallest IO page is larger. */
export const HOST_PAGE_SHIFT = 16;

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

/** domain_alloc_paging for a device its context has claimed: a table for window slot 0 (tce32). */
export function allocPagingDomain(tx: Tx, context: string, bdf: Bdf, pageShift: number): number {
  const group = requireGroupOf(tx.state, bdf);
  requireClaimed(group, context, bdf);
  const pe = tx.state.pes[group.pe]!;
  const tg = pe.tableGroup;
  if (!tg.pageShifts.includes(pageShift)) {
    fail('EINVAL', `IOMMU page size 2^${pageShift} is not supported by ${pe.id} (supported: ${tg.pageShifts.map((s) => `2^${s}`).join(', ')})`);
  }
  if (pageShift > HOST_PAGE_SHIFT) fail('EINVAL', `IOMMU page size 2^${pageShift} is larger than the host PAGE_SIZE 2^${HOST_PAGE_SHIFT}`);
  const id = tx.state.nextDomainId;
  tx.emit({
    type: 'PagingDomainAllocated',
    data: { domain: id, context, group: group.id, slot: 0, start: toHex(slotStart(pe, 0)), size: toHex(tg.tce32Size), pageShift },
  });
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
    const pe = tx.state.pes[group.pe]!;
    if (pe.windows[d.slot]) fail('EBUSY', `${pe.id} window slot ${d.slot} is in use`);
    tx.emit({
      type: 'WindowSet',
      data: {
        pe: pe.id, slot: d.slot, start: toHex(d.start), size: toHex(d.last - d.start + 1n),
        pageShift: d.table.pageShift, table: { kind: 'domain', domain: id },
      },
    });
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
  if (tx.state.groups[group.id]!.attached.length === 0) {
    tx.emit({ type: 'WindowUnset', data: { pe: group.pe, slot: tx.state.domains[id]!.slot } });
  }
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
  const { first, bytes } = checkRange(d, req.iova, req.pgsize, req.pgcount);
  if (req.paddr & (req.pgsize - 1n)) fail('EINVAL', `paddr ${toHex(req.paddr)} is not aligned to the IOMMU page size ${toHex(req.pgsize)}`);
  if (req.paddr + bytes - 1n > U64_MAX) fail('EOVERFLOW', 'paddr + size overflows 64 bits');
  const perm = tcePerm(req.prot);
  for (let i = 0; i < req.pgcount; i++) {
    if (tceGet(d.table, first + i) !== 0n) {
      fail('EEXIST', `IOVA ${toHex(req.iova + BigInt(i) * req.pgsize)} is already mapped in domain ${id}`);
    }
  }
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
  const { first } = checkRange(d, iova, pgsize, pgcount);
  let n = 0;
  while (n < pgcount && tceGet(d.table, first + n) !== 0n) n++;
  if (n > 0) tx.emit({ type: 'TcesCleared', data: { domain: id, iova: toHex(iova), pgsize: toHex(pgsize), pgcount: n } });
  return BigInt(n) * pgsize;
}

/** iova_to_phys: 0 when nothing is mapped (or outside the window), else the address with its in-page offset. */
export function iovaToPhys(state: State, context: string, id: number, iova: bigint): bigint {
  const d = requireDomain(state, context, id);
  if (iova < d.start || iova > d.last) return 0n;
  const shift = BigInt(d.table.pageShift);
  const tce = tceGet(d.table, Number((iova - d.start) >> shift));
  if (tce === 0n) return 0n;
  const pageMask = (1n << shift) - 1n;
  return (tce & ~TCE_PERM_MASK & ~pageMask) | (iova & pageMask);
}

/** The checks shared by map and unmap; returns the first relative TCE index and the byte length. */
function checkRange(d: PagingDomain, iova: bigint, pgsize: bigint, pgcount: number): { first: number; bytes: bigint } {
  const page = 1n << BigInt(d.table.pageShift);
  if (pgsize !== page) fail('EINVAL', `page size ${toHex(pgsize)} is not in the domain's pgsize_bitmap (${toHex(page)})`);
  if (!Number.isSafeInteger(pgcount) || pgcount < 1) fail('EINVAL', `pgcount must be a positive integer, got ${pgcount}`);
  if (iova & (pgsize - 1n)) fail('EINVAL', `IOVA ${toHex(iova)} is not aligned to the IOMMU page size ${toHex(pgsize)}`);
  const bytes = pgsize * BigInt(pgcount);
  const last = iova + bytes - 1n;
  if (last > U64_MAX) fail('EOVERFLOW', 'IOVA + size overflows 64 bits');
  if (iova < d.start || last > d.last) {
    fail('EINVAL', `[${toHex(iova)}, ${toHex(last)}] is outside the aperture [${toHex(d.start)}, ${toHex(d.last)}] of domain ${d.id}`);
  }
  return { first: Number((iova - d.start) >> BigInt(d.table.pageShift)), bytes };
}

export function evolveDomain(state: State, event: PagingDomainEvent): State {
  switch (event.type) {
    case 'PagingDomainAllocated': {
      const e = event.data;
      const start = fromHex(e.start);
      const size = fromHex(e.size);
      const group = state.groups[e.group]!;
      const d: PagingDomain = {
        id: e.domain, context: e.context, group: e.group, pe: group.pe, slot: e.slot, start, last: start + size - 1n,
        table: tceTableCreate(e.pageShift, Number(size >> BigInt(e.pageShift))),
      };
      return { ...state, domains: put(state.domains, e.domain, d), nextDomainId: Math.max(state.nextDomainId, e.domain + 1) };
    }
    case 'PagingDomainFreed':
      return { ...state, domains: drop(state.domains, event.data.domain) };
    case 'DeviceAttached': {
      const g = state.groups[event.data.group]!;
      const group: Group = { ...g, domain: { type: 'paging', id: event.data.domain }, attached: [...g.attached, event.data.bdf] };
      return { ...state, groups: put(state.groups, g.id, group) };
    }
    case 'DeviceDetached': {
      const g = state.groups[event.data.group]!;
      const attached = without(g.attached, event.data.bdf);
      const group: Group = { ...g, attached, domain: attached.length === 0 ? { type: 'blocked' } : g.domain };
      return { ...state, groups: put(state.groups, g.id, group) };
    }
    case 'TcesMapped': {
      const e = event.data;
      const d = state.domains[e.domain]!;
      const pgsize = fromHex(e.pgsize);
      const base = fromHex(e.paddr) | tcePermBits(e.perm);
      const first = Number((fromHex(e.iova) - d.start) / pgsize);
      const table = tceWriteRange(d.table, first, e.pgcount, (i) => base + BigInt(i) * pgsize);
      return { ...state, domains: put(state.domains, d.id, { ...d, table }) };
    }
    case 'TcesCleared': {
      const e = event.data;
      const d = state.domains[e.domain]!;
      const first = Number((fromHex(e.iova) - d.start) / fromHex(e.pgsize));
      return { ...state, domains: put(state.domains, d.id, { ...d, table: tceClearRange(d.table, first, e.pgcount) }) };
    }
  }
}
