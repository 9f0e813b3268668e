import type { Output } from './commands.js';
import type { WindowSpec } from './ddw.js';
import { allocPagingDomain, attachDevice, detachDevice } from './domain.js';
import { fail } from './errors.js';
import { claimDevice, releaseDevice } from './group.js';
import { preregAt, registerMemory, unregisterMemory } from './prereg.js';
import { unmapAll } from './pinning.js';
import { drop, put, type PagingDomain, type State } from './state.js';
import { tceRuns, TCE_PERM_MASK, tceFirstValid } from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, type Hex } from './u64.js';

/**
 * The VFIO sPAPR TCE IOMMU container (drivers/vfio/vfio_iommu_spapr_tce.c; ppc-platform.md 4),
 * emulated over the model's ownership and paging domains: the container is the user context that
 * owns its group, and its DMA windows are the windows of one paging domain attached to the group.
 * The container knows which IOMMU type it emulates (v1 = VFIO_SPAPR_TCE_IOMMU 2, v2 = 7) and answers
 * each ioctl as that type does: v1 has ENABLE/DISABLE and a lazily made 32-bit window, v2 has
 * preregistration and TCE_CREATE/REMOVE (v1 calling those gets ENOTTY and the other way round).
 *
 * Model choices (docs/model.md): one group per container (v1 allows only one; QEMU offers guest EEH
 * only with one, so v2 is held to one too and a second group is EBUSY); changing the set of windows
 * re-makes the paging domain and maps the kept windows' TCEs again (the kernel programs one more
 * table into the group); MAP_DMA's physical address is the user address (what pinning would give).
 * Locked memory is derived, not counted: v1 enabled charges the 32-bit window's pages; v2 charges the
 * preregistered regions it references and its tables' pages; over `memlockPages` is ENOMEM.
 */
export interface SpaprContainer {
  readonly name: string;
  readonly v2: boolean;
  readonly memlockPages: number | null;
  readonly enabled: boolean;
  readonly group: number | null;
  /** The 32-bit default window is owed: made on the first MAP/UNMAP/CREATE. */
  readonly defWindowPending: boolean;
  readonly domain: number | null;
  /** Preregistered regions this container references (v2). */
  readonly regions: readonly { readonly ua: bigint; readonly size: bigint }[];
}

export type SpaprEvent =
  | { readonly type: 'SpaprContainerOpened'; readonly data: { readonly container: string; readonly v2: boolean; readonly memlockPages: number | null } }
  | { readonly type: 'SpaprGroupAttached'; readonly data: { readonly container: string; readonly group: number } }
  | { readonly type: 'SpaprGroupDetached'; readonly data: { readonly container: string; readonly group: number } }
  | { readonly type: 'SpaprEnabled'; readonly data: { readonly container: string; readonly enabled: boolean } }
  | { readonly type: 'SpaprWindowsSet'; readonly data: { readonly container: string; readonly domain: number | null; readonly defWindowPending: boolean } }
  | { readonly type: 'SpaprRegionReferenced'; readonly data: { readonly container: string; readonly ua: Hex; readonly size: Hex; readonly referenced: boolean } }
  | { readonly type: 'SpaprContainerClosed'; readonly data: { readonly container: string } };

const PAGE_SHIFT = 12;
const PAGE = 1n << BigInt(PAGE_SHIFT);
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_SPAPR_TCE_V2_IOMMU = 7;

function requireContainer(state: State, name: string): SpaprContainer {
  return state.spapr[name] ?? fail('EBADF', `no VFIO container ${name}`);
}

function requireGroup(c: SpaprContainer, code: 'ENXIO' | 'ENODEV'): number {
  return c.group ?? fail(code, `container ${c.name} holds no group`);
}

function v1Only(c: SpaprContainer): void {
  if (c.v2) fail('ENOTTY', `container ${c.name} emulates the v2 sPAPR IOMMU, which has no such ioctl`);
}

function v2Only(c: SpaprContainer): void {
  if (!c.v2) fail('ENOTTY', `container ${c.name} emulates the v1 sPAPR IOMMU, which has no such ioctl`);
}

export function spaprOpen(tx: Tx, name: string, iommuType: number, memlockPages: number | undefined): Output {
  // iommufd's VFIO compat emulates type1 only: VFIO_SET_IOMMU with an sPAPR type on /dev/iommu is EINVAL.
  if (tx.state.iommufd[name]) fail('EINVAL', `context ${name} is an iommufd context, whose VFIO compat knows no sPAPR TCE type`);
  if (tx.state.spapr[name]) fail('EEXIST', `container ${name} exists`);
  if (iommuType !== VFIO_SPAPR_TCE_IOMMU && iommuType !== VFIO_SPAPR_TCE_V2_IOMMU) fail('EINVAL', `IOMMU type ${iommuType} is not an sPAPR TCE type (2 or 7)`);
  tx.emit({ type: 'SpaprContainerOpened', data: { container: name, v2: iommuType === VFIO_SPAPR_TCE_V2_IOMMU, memlockPages: memlockPages ?? null } });
  return { v2: iommuType === VFIO_SPAPR_TCE_V2_IOMMU };
}

/** VFIO_GROUP_SET_CONTAINER: the group's devices are claimed (take_ownership empties the PE). */
export function spaprAttachGroup(tx: Tx, name: string, group: number): Output {
  const c = requireContainer(tx.state, name);
  const g = tx.state.groups[group] ?? fail('ENODEV', `no group ${group}`);
  if (c.group === group) fail('EBUSY', `group ${group} is already in container ${name}`);
  if (c.group !== null) fail('EBUSY', `container ${name} already holds group ${c.group}: ${c.v2 ? 'the model holds a v2 container to one group' : 'v1 allows one group'}`);
  if (c.v2 && tx.state.pes[g.pe]!.tableGroup.maxDynamicWindows === 0) fail('EINVAL', `group ${group} supports no dynamic window`);
  for (const bdf of g.devices) claimDevice(tx, name, bdf);
  tx.emit({ type: 'SpaprGroupAttached', data: { container: name, group } });
  return { group, defWindowPending: true };
}

export function spaprGetInfo(state: State, name: string): Output {
  const c = requireContainer(state, name);
  const pe = state.pes[state.groups[requireGroup(c, 'ENXIO')]!.pe]!;
  const tg = pe.tableGroup;
  const ddw = c.v2 && tg.maxDynamicWindows !== 0;
  return {
    dma32WindowStart: toHex(tg.tce32Start), dma32WindowSize: toHex(tg.tce32Size), flags: ddw ? 1 : 0,
    ...(ddw ? { ddw: { pgsizes: toHex(tg.pageShifts.reduce((m, s) => m | (1n << BigInt(s)), 0n)), maxDynamicWindowsSupported: tg.maxDynamicWindows, levels: tg.maxLevels } } : {}),
  };
}

/** Pages a container charges to locked_vm now. */
export function lockedPages(state: State, c: SpaprContainer): bigint {
  if (!c.v2) return c.enabled && c.group !== null ? state.pes[state.groups[c.group]!.pe]!.tableGroup.tce32Size >> BigInt(PAGE_SHIFT) : 0n;
  const regions = c.regions.reduce((n, r) => n + (r.size >> BigInt(PAGE_SHIFT)), 0n);
  const d = c.domain === null ? undefined : state.domains[c.domain];
  const tables = (d?.windows ?? []).reduce((n, w) => n + ((BigInt(w.table.size) * 8n + PAGE - 1n) >> BigInt(PAGE_SHIFT)), 0n);
  return regions + tables;
}

function requireMemlock(state: State, c: SpaprContainer, extra: bigint): void {
  if (c.memlockPages !== null && lockedPages(state, c) + extra > BigInt(c.memlockPages)) {
    fail('ENOMEM', `${toHex(lockedPages(state, c) + extra)} pages would pass RLIMIT_MEMLOCK (${c.memlockPages} pages)`);
  }
}

/** IOMMU_ENABLE (v1): charges the whole 32-bit window. */
export function spaprEnable(tx: Tx, name: string): Output {
  const c = requireContainer(tx.state, name);
  v1Only(c);
  if (c.enabled) fail('EBUSY', `container ${name} is enabled`);
  const group = requireGroup(c, 'ENODEV');
  const tce32 = tx.state.pes[tx.state.groups[group]!.pe]!.tableGroup.tce32Size;
  if (tce32 === 0n) fail('EPERM', 'the group has no 32-bit window');
  requireMemlock(tx.state, c, tce32 >> BigInt(PAGE_SHIFT));
  tx.emit({ type: 'SpaprEnabled', data: { container: name, enabled: true } });
  return { lockedPages: toHex(lockedPages(tx.state, tx.state.spapr[name]!)) };
}

export function spaprDisable(tx: Tx, name: string): Output {
  const c = requireContainer(tx.state, name);
  v1Only(c);
  if (c.enabled) tx.emit({ type: 'SpaprEnabled', data: { container: name, enabled: false } });
  return {};
}

/**
 * REGISTER_MEMORY (v2): the limit (ENOMEM) is checked before overlaps (EINVAL); a range this
 * container registered already is EBUSY; one another container of the process registered is adopted.
 * Enables the container.
 */
export function spaprRegisterMemory(tx: Tx, name: string, ua: bigint, size: bigint, pageShift: number, flags: number): Output {
  const c = requireContainer(tx.state, name);
  v2Only(c);
  if (flags !== 0) fail('EINVAL', `flags ${flags} must be 0`);
  if (size === 0n || (ua | size) & (PAGE - 1n) || ua + size > 1n << 64n) fail('EINVAL', `region ${toHex(ua)}+${toHex(size)} is not page aligned or wraps`);
  if (c.regions.some((r) => r.ua === ua && r.size === size)) fail('EBUSY', `container ${name} registered ${toHex(ua)}+${toHex(size)} already`);
  requireMemlock(tx.state, c, size >> BigInt(PAGE_SHIFT));
  const out = registerMemory(tx, ua, size, pageShift);
  tx.emit({ type: 'SpaprRegionReferenced', data: { container: name, ua: toHex(ua), size: toHex(size), referenced: true } });
  if (!c.enabled) tx.emit({ type: 'SpaprEnabled', data: { container: name, enabled: true } });
  return out;
}

/**
 * UNREGISTER_MEMORY (v2). Quirk reproduced: while TCEs still map the region the kernel's put fails
 * with EBUSY, the ioctl still returns 0 and the region stays pinned, orphaned from the container.
 */
export function spaprUnregisterMemory(tx: Tx, name: string, ua: bigint, size: bigint): Output {
  const c = requireContainer(tx.state, name);
  v2Only(c);
  if ((ua | size) & (PAGE - 1n)) fail('EINVAL', `region ${toHex(ua)}+${toHex(size)} is not page aligned`);
  if (!c.regions.some((r) => r.ua === ua && r.size === size)) fail('ENOENT', `container ${name} has no region ${toHex(ua)}+${toHex(size)}`);
  tx.emit({ type: 'SpaprRegionReferenced', data: { container: name, ua: toHex(ua), size: toHex(size), referenced: false } });
  const mapped = regionMapped(tx.state, ua, size);
  if (!mapped) unregisterMemory(tx, ua, size);
  return { orphaned: mapped };
}

/** Whether any valid TCE of any domain points into [ua, ua+size). */
function regionMapped(state: State, ua: bigint, size: bigint): boolean {
  for (const d of Object.values(state.domains)) {
    for (const w of d.windows) {
      for (const r of tceRuns(w.table)) {
        const first = r.first & ~TCE_PERM_MASK;
        const end = first + (BigInt(r.count) << BigInt(w.table.pageShift));
        if (first < ua + size && ua < end) return true;
      }
    }
  }
  return false;
}

/** The container's window slots as specs, from its domain. */
function windowSpecs(state: State, c: SpaprContainer): WindowSpec[] {
  const d = c.domain === null ? undefined : state.domains[c.domain];
  return (d?.windows ?? []).map((w) => ({ window: w.slot, pageShift: w.table.pageShift, size: w.last - w.start + 1n, levels: w.levels }));
}

/**
 * Sets the container's windows: the old domain (if any) is detached, unmapped and freed, a new one
 * with `specs` is allocated and attached, and the TCEs of the windows kept are mapped again.
 */
function setWindows(tx: Tx, c: SpaprContainer, specs: readonly WindowSpec[], defWindowPending: boolean): void {
  const old: PagingDomain | undefined = c.domain === null ? undefined : tx.state.domains[c.domain];
  const keep = old ? old.windows.filter((w) => specs.some((s) => s.window === w.slot)) : [];
  const g = tx.state.groups[c.group!]!;
  if (old) {
    for (const bdf of g.attached) detachDevice(tx, c.name, bdf);
    unmapAll(tx, old.id);
    tx.emit({ type: 'PagingDomainFreed', data: { domain: old.id, reason: 'user' } });
  }
  let domain: number | null = null;
  if (specs.length > 0) {
    domain = allocPagingDomain(tx, c.name, g.devices[0]!, [...specs].sort((a, b) => a.window - b.window));
    for (const bdf of g.devices) attachDevice(tx, c.name, domain, bdf);
    for (const w of keep) {
      const shift = BigInt(w.table.pageShift);
      for (const r of tceRuns(w.table)) {
        tx.emit({
          type: 'TcesMapped',
          data: { domain, iova: toHex(w.start + (BigInt(r.index) << shift)), paddr: toHex(r.first & ~TCE_PERM_MASK), pgsize: toHex(1n << shift), pgcount: r.count, perm: Number(r.first & TCE_PERM_MASK) },
        });
      }
    }
  }
  tx.emit({ type: 'SpaprWindowsSet', data: { container: c.name, domain, defWindowPending } });
}

/** The pending default window: slot 0, 4K pages, the 32-bit size, one level. */
function createPendingDefault(tx: Tx, name: string): void {
  const c = tx.state.spapr[name]!;
  if (!c.defWindowPending) return;
  const tg = tx.state.pes[tx.state.groups[c.group!]!.pe]!.tableGroup;
  setWindows(tx, c, [...windowSpecs(tx.state, c), { window: 0, pageShift: 12, size: tg.tce32Size, levels: 1 }], false);
}

/** SPAPR_TCE_CREATE (v2): the pending default comes first, so a fresh container's first window is slot 1. */
export function spaprTceCreate(tx: Tx, name: string, pageShift: number, windowSize: bigint, levels: number, flags: number): Output {
  let c = requireContainer(tx.state, name);
  v2Only(c);
  requireGroup(c, 'ENXIO');
  if (flags !== 0) fail('EINVAL', `flags ${flags} must be 0`);
  createPendingDefault(tx, name);
  c = tx.state.spapr[name]!;
  const specs = windowSpecs(tx.state, c);
  const slot = [0, 1].find((s) => !specs.some((w) => w.window === s)) ?? fail('ENOSPC', `container ${name} has both windows`);
  const entries = windowSize >> BigInt(pageShift);
  requireMemlock(tx.state, c, (entries * 8n + PAGE - 1n) >> BigInt(PAGE_SHIFT));
  setWindows(tx, c, [...specs, { window: slot, pageShift, size: windowSize, levels }], false);
  const d = tx.state.domains[tx.state.spapr[name]!.domain!]!;
  return { startAddr: toHex(d.windows.find((w) => w.slot === slot)!.start) };
}

/** SPAPR_TCE_REMOVE (v2): removing address 0 while the default is still owed only cancels it. */
export function spaprTceRemove(tx: Tx, name: string, startAddr: bigint): Output {
  const c = requireContainer(tx.state, name);
  v2Only(c);
  requireGroup(c, 'ENXIO');
  if (c.defWindowPending && startAddr === 0n) {
    tx.emit({ type: 'SpaprWindowsSet', data: { container: name, domain: c.domain, defWindowPending: false } });
    return { cancelledDefault: true };
  }
  const d = c.domain === null ? undefined : tx.state.domains[c.domain];
  const w = d?.windows.find((x) => x.start === startAddr) ?? fail('EINVAL', `no window starts at ${toHex(startAddr)}`);
  setWindows(tx, c, windowSpecs(tx.state, c).filter((s) => s.window !== w.slot), c.defWindowPending);
  return {};
}

/** MAP_DMA / UNMAP_DMA's shared checks; returns the domain and its window's page size. */
function dmaTarget(tx: Tx, name: string, iova: bigint, size: bigint) {
  const c = requireContainer(tx.state, name);
  if (!c.enabled) fail('EPERM', `container ${name} is not enabled`);
  requireGroup(c, 'ENXIO');
  createPendingDefault(tx, name);
  const domainId = tx.state.spapr[name]!.domain;
  const d = domainId === null ? undefined : tx.state.domains[domainId];
  const w = d?.windows.find((x) => iova >= x.start && iova <= x.last) ?? fail('ENXIO', `iova ${toHex(iova)} is in no window`);
  const page = 1n << BigInt(w.table.pageShift);
  if (size === 0n || size & (page - 1n)) fail('EINVAL', `size ${toHex(size)} is not a multiple of the window's ${toHex(page)} pages`);
  if (iova & (page - 1n)) fail('EINVAL', `iova ${toHex(iova)} is not aligned to ${toHex(page)}`);
  // Deliberate difference (quirk 3): the kernel checks only the first page against the window.
  if (iova + size - 1n > w.last) fail('EINVAL', `[${toHex(iova)}, ${toHex(iova + size - 1n)}] runs past the window end ${toHex(w.last)}`);
  return { c: tx.state.spapr[name]!, d: d!, page, w };
}

/**
 * MAP_DMA: READ and/or WRITE (ENXIO for an iova outside the windows comes before the flag check, as in
 * the kernel). v2 needs every page inside a preregistered region with pages at least the IOMMU page
 * (EINVAL). An existing mapping is overwritten silently (reproduced).
 */
export function spaprMapDma(tx: Tx, name: string, vaddr: bigint, iova: bigint, size: bigint, flags: readonly string[]): Output {
  const unknown = flags.filter((f) => f !== 'READ' && f !== 'WRITE');
  const { c, d, page } = dmaTarget(tx, name, iova, size);
  if (unknown.length > 0) fail('EINVAL', `unknown map flags ${unknown.join(',')}`);
  if (flags.length === 0) fail('EINVAL', 'neither READ nor WRITE');
  if (vaddr & (page - 1n)) fail('EINVAL', `vaddr ${toHex(vaddr)} is not aligned to ${toHex(page)}`);
  if (c.v2) {
    const r = preregAt(tx.state, vaddr, size);
    if (!r || !c.regions.some((x) => x.ua === r.ua && x.size === r.size)) fail('EINVAL', `${toHex(vaddr)}+${toHex(size)} is not preregistered by ${name}`);
    if (1n << BigInt(r.pageShift) < page) fail('EINVAL', `the region's 2^${r.pageShift} pages are smaller than the IOMMU page ${toHex(page)}`);
  }
  const perm = (flags.includes('READ') ? 1 : 0) | (flags.includes('WRITE') ? 2 : 0);
  tx.emit({ type: 'TcesMapped', data: { domain: d.id, iova: toHex(iova), paddr: toHex(vaddr), pgsize: toHex(page), pgcount: Number(size / page), perm } });
  return {};
}

/** UNMAP_DMA: clearing entries already clear succeeds; no size is written back. */
export function spaprUnmapDma(tx: Tx, name: string, iova: bigint, size: bigint, flags: number): Output {
  if (flags !== 0) fail('EINVAL', `flags ${flags} must be 0`);
  const { d, page, w } = dmaTarget(tx, name, iova, size);
  const first = Number((iova - w.start) / page);
  const count = Number(size / page);
  if (tceFirstValid(w.table, first, count) >= 0) tx.emit({ type: 'TcesCleared', data: { domain: d.id, iova: toHex(iova), pgsize: toHex(page), pgcount: count } });
  return {};
}

/** Release: the windows go (TCEs cleared), the group is released, the regions are dropped. */
export function spaprClose(tx: Tx, name: string): Output {
  let c = requireContainer(tx.state, name);
  if (c.group !== null) {
    const group = c.group;
    if (c.domain !== null) setWindows(tx, c, [], false);
    // The container lets go of the group before the group's ownership goes: it never names a group it does not own.
    tx.emit({ type: 'SpaprGroupDetached', data: { container: name, group } });
    for (const bdf of tx.state.groups[group]!.claimed) releaseDevice(tx, name, bdf);
  }
  c = tx.state.spapr[name]!;
  for (const r of c.regions) {
    tx.emit({ type: 'SpaprRegionReferenced', data: { container: name, ua: toHex(r.ua), size: toHex(r.size), referenced: false } });
    unregisterMemory(tx, r.ua, r.size);
  }
  tx.emit({ type: 'SpaprContainerClosed', data: { container: name } });
  return {};
}

export function evolveSpapr(state: State, event: SpaprEvent): State {
  const d = event.data;
  const c = state.spapr[d.container]!;
  const set = (next: SpaprContainer): State => ({ ...state, spapr: put(state.spapr, d.container, next) });
  switch (event.type) {
    case 'SpaprContainerOpened':
      return set({ name: d.container, v2: event.data.v2, memlockPages: event.data.memlockPages, enabled: false, group: null, defWindowPending: false, domain: null, regions: [] });
    case 'SpaprGroupAttached':
      return set({ ...c, group: event.data.group, defWindowPending: true });
    case 'SpaprGroupDetached':
      return set({ ...c, group: null, defWindowPending: false });
    case 'SpaprEnabled':
      return set({ ...c, enabled: event.data.enabled });
    case 'SpaprWindowsSet':
      return set({ ...c, domain: event.data.domain, defWindowPending: event.data.defWindowPending });
    case 'SpaprRegionReferenced': {
      const ua = fromHex(event.data.ua);
      const size = fromHex(event.data.size);
      const regions = event.data.referenced ? [...c.regions, { ua, size }] : c.regions.filter((r) => r.ua !== ua || r.size !== size);
      return set({ ...c, regions });
    }
    case 'SpaprContainerClosed':
      return { ...state, spapr: drop(state.spapr, d.container) };
  }
}

/** A container forgets a domain freed or a group removed under it (a surprise removal of its device). */
export function forgetInSpapr(state: State, gone: { readonly domain?: number; readonly group?: number }): State {
  let spapr = state.spapr;
  for (const c of Object.values(state.spapr)) {
    if (gone.group !== undefined && c.group === gone.group) spapr = put(spapr, c.name, { ...c, group: null, domain: null, defWindowPending: false, enabled: c.v2 && c.enabled });
    else if (gone.domain !== undefined && c.domain === gone.domain) spapr = put(spapr, c.name, { ...c, domain: null });
  }
  return spapr === state.spapr ? state : { ...state, spapr };
}
