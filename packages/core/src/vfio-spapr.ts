import type { Output } from './commands.js';
import type { WindowSpec } from './ddw.js';
import { allocPagingDomain, attachDevice, detachDevice } from './domain.js';
import { fail } from './errors.js';
import { claimDevice, releaseDevice } from './group.js';
import { preregAt, registerMemory, stuckOnLastPut, unregisterMemory } from './prereg.js';
import { unmapAll } from './pinning.js';
import { countAccepted, HCALL_STATUS, hvAnswers, hvBuild, hvClear, hvReleaseTable, ioMappedBytes, validStretches } from './platform-hv.js';
import { drop, patch, put, type DomainWindow, type PagingDomain, type State } from './state.js';
import { tceRuns, TCE_PERM_MASK, tceFirstValid, tcePermOf, type TcePerm } from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, type Hex } from './u64.js';

/**
 * The VFIO sPAPR TCE IOMMU container (drivers/vfio/vfio_iommu_spapr_tce.c; ppc-platform.md 4),
 * emulated over the model's ownership and paging domains: the container is the user context that
 * owns its groups, and its DMA windows are the windows of a paging domain attached to each group
 * (the kernel programs one table into every group; the model keeps one domain per group, all with
 * the same windows and TCEs: a map or unmap writes every one of them).
 * The container knows which IOMMU type it emulates (v1 = VFIO_SPAPR_TCE_IOMMU 2, v2 = 7) and answers
 * each ioctl as that type does: v1 has ENABLE/DISABLE and a lazily made 32-bit window, v2 has
 * preregistration and TCE_CREATE/REMOVE (v1 calling those gets ENOTTY and the other way round).
 *
 * Model choices (docs/model.md): changing the set of windows re-makes each group's paging domain and
 * maps the kept windows' TCEs again (the kernel programs one more table into the groups); MAP_DMA's
 * physical address is the user address (what pinning would give).
 * Locked memory is derived, not counted: v1 enabled charges the 32-bit window's pages; v2 charges the
 * preregistered regions it references and its tables' pages; over `memlockPages` is ENOMEM.
 */
export interface SpaprGroupEntry {
  readonly group: number;
  /** The paging domain carrying the container's windows for this group; null while there are none. */
  readonly domain: number | null;
}

export interface SpaprContainer {
  readonly name: string;
  readonly v2: boolean;
  readonly memlockPages: number | null;
  readonly enabled: boolean;
  readonly groups: readonly SpaprGroupEntry[];
  /** The 32-bit default window is owed: made on the first MAP/UNMAP/CREATE. */
  readonly defWindowPending: boolean;
  /** Preregistered regions this container references (v2). */
  readonly regions: readonly { readonly ua: bigint; readonly size: bigint }[];
}

export type SpaprEvent =
  | { readonly type: 'SpaprContainerOpened'; readonly data: { readonly container: string; readonly v2: boolean; readonly memlockPages: number | null } }
  | {
      readonly type: 'SpaprGroupAttached';
      readonly data: { readonly container: string; readonly group: number; readonly domain: number | null; readonly defWindowPending: boolean };
    }
  | { readonly type: 'SpaprGroupDetached'; readonly data: { readonly container: string; readonly group: number } }
  | { readonly type: 'SpaprEnabled'; readonly data: { readonly container: string; readonly enabled: boolean } }
  | {
      readonly type: 'SpaprWindowsSet';
      readonly data: { readonly container: string; readonly groups: readonly SpaprGroupEntry[]; readonly defWindowPending: boolean };
    }
  | { readonly type: 'SpaprRegionReferenced'; readonly data: { readonly container: string; readonly ua: Hex; readonly size: Hex; readonly referenced: boolean } }
  | { readonly type: 'SpaprContainerClosed'; readonly data: { readonly container: string } };

const PAGE_SHIFT = 12;
const PAGE = 1n << BigInt(PAGE_SHIFT);
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_SPAPR_TCE_V2_IOMMU = 7;

function requireContainer(state: State, name: string): SpaprContainer {
  return state.spapr[name] ?? fail('EBADF', `no VFIO container ${name}`);
}

/** The container's first group: GET_INFO and ENABLE read its table group. */
function requireGroup(c: SpaprContainer, code: 'ENXIO' | 'ENODEV'): number {
  return c.groups[0]?.group ?? fail(code, `container ${c.name} holds no group`);
}

function v1Only(c: SpaprContainer): void {
  if (c.v2) fail('ENOTTY', `container ${c.name} emulates the v2 sPAPR IOMMU, which has no such ioctl`);
}

function v2Only(c: SpaprContainer): void {
  if (!c.v2) fail('ENOTTY', `container ${c.name} emulates the v1 sPAPR IOMMU, which has no such ioctl`);
}

/** The domain whose windows are the container's (every group's domain has the same ones). */
function windowsDomain(state: State, c: SpaprContainer): PagingDomain | undefined {
  for (const e of c.groups) if (e.domain !== null && state.domains[e.domain]) return state.domains[e.domain];
  return undefined;
}

export function spaprOpen(tx: Tx, name: string, iommuType: number, memlockPages: number | undefined): Output {
  // iommufd's VFIO compat emulates type1 only: VFIO_SET_IOMMU with an sPAPR type on /dev/iommu is EINVAL.
  if (tx.state.iommufd[name]) fail('EINVAL', `context ${name} is an iommufd context, whose VFIO compat knows no sPAPR TCE type`);
  if (tx.state.spapr[name]) fail('EEXIST', `container ${name} exists`);
  if (iommuType !== VFIO_SPAPR_TCE_IOMMU && iommuType !== VFIO_SPAPR_TCE_V2_IOMMU) fail('EINVAL', `IOMMU type ${iommuType} is not an sPAPR TCE type (2 or 7)`);
  tx.emit({ type: 'SpaprContainerOpened', data: { container: name, v2: iommuType === VFIO_SPAPR_TCE_V2_IOMMU, memlockPages: memlockPages ?? null } });
  return { v2: iommuType === VFIO_SPAPR_TCE_V2_IOMMU };
}

/**
 * VFIO_GROUP_SET_CONTAINER: v1 holds one group (EBUSY); the same group twice is EBUSY; a group of
 * another platform (another create_table op) is EPERM. The group's devices are claimed
 * (take_ownership empties the PE), then the container's windows are programmed into it with the TCEs
 * they hold; the first group leaves the default window owed.
 */
export function spaprAttachGroup(tx: Tx, name: string, group: number): Output {
  const c = requireContainer(tx.state, name);
  const g = tx.state.groups[group] ?? fail('ENODEV', `no group ${group}`);
  if (c.groups.some((e) => e.group === group)) fail('EBUSY', `group ${group} is already in container ${name}`);
  if (!c.v2 && c.groups.length > 0) fail('EBUSY', `container ${name} is v1 and holds group ${c.groups[0]!.group}: v1 allows one group`);
  const platform = (id: number) => tx.state.phbs[groupPhb(tx.state, id)]!.platform;
  if (c.groups.length > 0 && platform(c.groups[0]!.group) !== platform(group)) fail('EPERM', `group ${group} has another table-group implementation than the container's groups`);
  if (c.v2 && tx.state.pes[g.pe]!.tableGroup.maxDynamicWindows === 0) fail('EINVAL', `group ${group} supports no dynamic window`);
  const source = windowsDomain(tx.state, c);
  if (source && platform(group) === 'pseries') refuseForeignTable(group);
  for (const bdf of g.devices) claimDevice(tx, name, bdf);
  const domain = source ? programGroup(tx, name, group, specsOf(source), source.windows) : null;
  const defWindowPending = c.groups.length === 0 ? true : c.defWindowPending;
  tx.emit({ type: 'SpaprGroupAttached', data: { container: name, group, domain, defWindowPending } });
  return { group, defWindowPending };
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

/** Pages a container charges to locked_vm now (its tables once: the kernel shares them among groups). */
export function lockedPages(state: State, c: SpaprContainer): bigint {
  if (!c.v2) return c.enabled && c.groups.length > 0 ? state.pes[state.groups[c.groups[0]!.group]!.pe]!.tableGroup.tce32Size >> BigInt(PAGE_SHIFT) : 0n;
  const regions = c.regions.reduce((n, r) => n + (r.size >> BigInt(PAGE_SHIFT)), 0n);
  const tables = (windowsDomain(state, c)?.windows ?? []).reduce((n, w) => n + ((BigInt(w.table.size) * 8n + PAGE - 1n) >> BigInt(PAGE_SHIFT)), 0n);
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
 * UNREGISTER_MEMORY (v2). The container forgets the region and puts it once. Quirk reproduced: when that
 * is the region's last user while TCEs still map it, the kernel's put fails with EBUSY, the ioctl still
 * returns 0 and the region stays pinned, orphaned from the container; with another user left (another
 * container of the process adopted it) the put just drops this one. TCEs leaked into it (a refused
 * clear of a removed window) count as mapping it for good.
 */
export function spaprUnregisterMemory(tx: Tx, name: string, ua: bigint, size: bigint): Output {
  const c = requireContainer(tx.state, name);
  v2Only(c);
  if ((ua | size) & (PAGE - 1n)) fail('EINVAL', `region ${toHex(ua)}+${toHex(size)} is not page aligned`);
  if (!c.regions.some((r) => r.ua === ua && r.size === size)) fail('ENOENT', `container ${name} has no region ${toHex(ua)}+${toHex(size)}`);
  tx.emit({ type: 'SpaprRegionReferenced', data: { container: name, ua: toHex(ua), size: toHex(size), referenced: false } });
  const stays = stuckOnLastPut(tx.state, preregAt(tx.state, ua, size)!);
  if (!stays) unregisterMemory(tx, ua, size);
  return { orphaned: stays };
}

/** A domain's windows as specs. */
function specsOf(d: PagingDomain | undefined): WindowSpec[] {
  return (d?.windows ?? []).map((w) => ({ window: w.slot, pageShift: w.table.pageShift, size: w.last - w.start + 1n, levels: w.levels }));
}

/** Allocates the group's domain with `specs`, attaches every device and maps the TCEs of `copy`'s windows. */
function programGroup(tx: Tx, name: string, group: number, specs: readonly WindowSpec[], copy: readonly DomainWindow[]): number {
  const g = tx.state.groups[group]!;
  const id = allocPagingDomain(tx, name, g.devices[0]!, [...specs].sort((a, b) => a.window - b.window));
  for (const bdf of g.devices) attachDevice(tx, name, id, bdf);
  for (const w of copy) {
    const shift = BigInt(w.table.pageShift);
    for (const r of tceRuns(w.table)) {
      tx.emit({
        type: 'TcesMapped',
        data: { domain: id, iova: toHex(w.start + (BigInt(r.index) << shift)), paddr: toHex(r.first & ~TCE_PERM_MASK), pgsize: toHex(1n << shift), pgcount: r.count, perm: tcePermOf(r.first) },
      });
    }
  }
  return id;
}

/** Detaches, unmaps and frees a group's domain. */
function unprogramGroup(tx: Tx, name: string, entry: SpaprGroupEntry): void {
  if (entry.domain === null || !tx.state.domains[entry.domain]) return;
  for (const bdf of tx.state.groups[entry.group]!.attached) detachDevice(tx, name, bdf);
  unmapAll(tx, entry.domain);
  tx.emit({ type: 'PagingDomainFreed', data: { domain: entry.domain, reason: 'user' } });
}

/**
 * Sets the container's windows in every group: each old domain goes, a new one with `specs` comes,
 * and the TCEs of the windows kept are mapped again.
 */
function setWindows(tx: Tx, name: string, specs: readonly WindowSpec[], defWindowPending: boolean): void {
  const c = tx.state.spapr[name]!;
  const second = c.groups[1];
  if (specs.length > 0 && second && tx.state.phbs[groupPhb(tx.state, second.group)]!.platform === 'pseries') refuseForeignTable(second.group);
  const old = windowsDomain(tx.state, c);
  const keep = (old?.windows ?? []).filter((w) => specs.some((s) => s.window === w.slot));
  releaseTables(tx, c, (old?.windows ?? []).filter((w) => !keep.includes(w)));
  for (const e of c.groups) unprogramGroup(tx, name, e);
  const groups = c.groups.map((e) => ({ group: e.group, domain: specs.length > 0 ? programGroup(tx, name, e.group, specs, keep) : null }));
  tx.emit({ type: 'SpaprWindowsSet', data: { container: name, groups, defWindowPending } });
}

/**
 * The clears of the tables the container frees (`gone`, in slot order). Only on a partition can one be
 * refused: the entries the hypervisor would not clear are leaked (hvReleaseTable) before the domains
 * go; the rest are cleared with them. The windows kept when the set changes are not cleared in the
 * kernel (the model re-makes their domains), so they never come here.
 */
function releaseTables(tx: Tx, c: SpaprContainer, gone: readonly DomainWindow[]): void {
  const phb = gone.length > 0 ? hvPhb(tx.state, c) : null;
  if (phb === null) return;
  const domains = c.groups.flatMap((e) => (e.domain === null ? [] : [e.domain]));
  for (const w of gone) hvReleaseTable(tx, phb, domains, w);
}

/**
 * pSeries `set_window` accepts only the table the group's own `create_table` made (tables[num]): the
 * hypervisor created that window for that PE. A container programs the table it created through its
 * first group into every group, so a second pSeries group can never take a window: attaching it to a
 * container that has windows, or creating a window while it is attached, is EPERM (the kernel unsets
 * what it had set and frees the table).
 */
function refuseForeignTable(group: number): never {
  fail('EPERM', `group ${group} is a pSeries table group: its set_window takes only a table its own create_table made, not the container's`);
}

/** The pending default window: slot 0, 4K pages, the 32-bit size, one level. */
function createPendingDefault(tx: Tx, name: string): void {
  const c = tx.state.spapr[name]!;
  if (!c.defWindowPending) return;
  const tg = tx.state.pes[tx.state.groups[c.groups[0]!.group]!.pe]!.tableGroup;
  setWindows(tx, name, [...specsOf(windowsDomain(tx.state, c)), { window: 0, pageShift: 12, size: tg.tce32Size, levels: 1 }], false);
}

/** SPAPR_TCE_CREATE (v2): the pending default comes first, so a fresh container's first window is slot 1. */
export function spaprTceCreate(tx: Tx, name: string, pageShift: number, windowSize: bigint, levels: number, flags: number): Output {
  const c = requireContainer(tx.state, name);
  v2Only(c);
  requireGroup(c, 'ENXIO');
  if (flags !== 0) fail('EINVAL', `flags ${flags} must be 0`);
  createPendingDefault(tx, name);
  const specs = specsOf(windowsDomain(tx.state, tx.state.spapr[name]!));
  const slot = [0, 1].find((s) => !specs.some((w) => w.window === s)) ?? fail('ENOSPC', `container ${name} has both windows`);
  const entries = windowSize >> BigInt(pageShift);
  requireMemlock(tx.state, tx.state.spapr[name]!, (entries * 8n + PAGE - 1n) >> BigInt(PAGE_SHIFT));
  setWindows(tx, name, [...specs, { window: slot, pageShift, size: windowSize, levels }], false);
  const d = windowsDomain(tx.state, tx.state.spapr[name]!)!;
  return { startAddr: toHex(d.windows.find((w) => w.slot === slot)!.start) };
}

/** SPAPR_TCE_REMOVE (v2): removing address 0 while the default is still owed only cancels it. */
export function spaprTceRemove(tx: Tx, name: string, startAddr: bigint): Output {
  const c = requireContainer(tx.state, name);
  v2Only(c);
  requireGroup(c, 'ENXIO');
  if (c.defWindowPending && startAddr === 0n) {
    tx.emit({ type: 'SpaprWindowsSet', data: { container: name, groups: c.groups, defWindowPending: false } });
    return { cancelledDefault: true };
  }
  const d = windowsDomain(tx.state, c);
  const w = d?.windows.find((x) => x.start === startAddr) ?? fail('EINVAL', `no window starts at ${toHex(startAddr)}`);
  setWindows(tx, name, specsOf(d).filter((s) => s.window !== w.slot), c.defWindowPending);
  return hvPhb(tx.state, c) === null ? {} : hvOutput(tx.state, name, {});
}

/** MAP_DMA / UNMAP_DMA's shared checks; returns the container, its window and page size. */
function dmaTarget(tx: Tx, name: string, iova: bigint, size: bigint) {
  const c = requireContainer(tx.state, name);
  if (!c.enabled) fail('EPERM', `container ${name} is not enabled`);
  requireGroup(c, 'ENXIO');
  createPendingDefault(tx, name);
  const now = tx.state.spapr[name]!;
  const w = windowsDomain(tx.state, now)?.windows.find((x) => iova >= x.start && iova <= x.last) ?? fail('ENXIO', `iova ${toHex(iova)} is in no window`);
  const page = 1n << BigInt(w.table.pageShift);
  if (size === 0n || size & (page - 1n)) fail('EINVAL', `size ${toHex(size)} is not a multiple of the window's ${toHex(page)} pages`);
  if (iova & (page - 1n)) fail('EINVAL', `iova ${toHex(iova)} is not aligned to ${toHex(page)}`);
  // Deliberate difference (quirk 3): the kernel checks only the first page against the window.
  if (iova + size - 1n > w.last) fail('EINVAL', `[${toHex(iova)}, ${toHex(iova + size - 1n)}] runs past the window end ${toHex(w.last)}`);
  return { c: now, page, w };
}

/**
 * MAP_DMA: READ and/or WRITE (ENXIO for an iova outside the windows comes before the flag check, as in
 * the kernel). v2 needs every page inside a preregistered region with pages at least the IOMMU page
 * (EINVAL). An existing mapping is overwritten silently (reproduced). Every group's table gets it.
 */
export function spaprMapDma(tx: Tx, name: string, vaddr: bigint, iova: bigint, size: bigint, flags: readonly string[]): Output {
  const unknown = flags.filter((f) => f !== 'READ' && f !== 'WRITE');
  const { c, page, w } = dmaTarget(tx, name, iova, size);
  if (unknown.length > 0) fail('EINVAL', `unknown map flags ${unknown.join(',')}`);
  if (flags.length === 0) fail('EINVAL', 'neither READ nor WRITE');
  if (vaddr & (page - 1n)) fail('EINVAL', `vaddr ${toHex(vaddr)} is not aligned to ${toHex(page)}`);
  if (c.v2) {
    const r = preregAt(tx.state, vaddr, size);
    if (!r || !c.regions.some((x) => x.ua === r.ua && x.size === r.size)) fail('EINVAL', `${toHex(vaddr)}+${toHex(size)} is not preregistered by ${name}`);
    if (1n << BigInt(r.pageShift) < page) fail('EINVAL', `the region's 2^${r.pageShift} pages are smaller than the IOMMU page ${toHex(page)}`);
  }
  // pnv_tce_xchg sets READ with WRITE: a device-writable page is also device-readable.
  const perm = flags.includes('WRITE') ? 'rw' : 'r';
  const phb = hvPhb(tx.state, c);
  if (phb !== null) return mapThroughHv(tx, c, phb, { iova, vaddr, page, count: Number(size / page), perm, w });
  emitMapped(tx, c, iova, vaddr, page, Number(size / page), perm);
  return {};
}

function emitMapped(tx: Tx, c: SpaprContainer, iova: bigint, vaddr: bigint, page: bigint, pgcount: number, perm: TcePerm): void {
  for (const e of c.groups) {
    if (e.domain !== null) tx.emit({ type: 'TcesMapped', data: { domain: e.domain, iova: toHex(iova), paddr: toHex(vaddr), pgsize: toHex(page), pgcount, perm } });
  }
}

function emitCleared(tx: Tx, c: SpaprContainer, iova: bigint, page: bigint, pgcount: number): void {
  for (const e of c.groups) if (e.domain !== null) tx.emit({ type: 'TcesCleared', data: { domain: e.domain, iova: toHex(iova), pgsize: toHex(page), pgcount } });
}

/**
 * The PHB whose hypervisor answers the container's TCE hcalls, when the model carries one (PowerVM):
 * the container's table is made through its first group's table group, so its LIOBN is that PHB's.
 */
function hvPhb(state: State, c: SpaprContainer): number | null {
  const phb = groupPhb(state, c.groups[0]!.group);
  return hvAnswers(state, phb) ? phb : null;
}

/** The PHB a group's PE sits on. */
function groupPhb(state: State, group: number): number {
  return state.pes[state.groups[group]!.pe]!.phb;
}

interface HvMap {
  readonly iova: bigint;
  readonly vaddr: bigint;
  readonly page: bigint;
  readonly count: number;
  readonly perm: TcePerm;
  readonly w: DomainWindow;
}

/**
 * MAP_DMA on a partition: tce_iommu_build(_v2) exchanges entry by entry; on the first refused entry it
 * rolls back the entries it wrote (tce_iommu_clear, which skips a failed exchange) and the ioctl
 * returns the raw hcall status: -1 (errno EPERM) for H_HARDWARE, -44 (errno ECHRNG) for
 * H_NOT_ENOUGH_RESOURCES, +1 for H_BUSY (a "success" with nothing kept). When the call changed nothing
 * it is refused with that errno; when it changed something (entries the rollback could not clear, old
 * mappings the rollback cleared, or any H_BUSY) it is accepted with the events, and the output carries
 * `ret`, `hcall` (and `errno`) as userspace saw them.
 */
function mapThroughHv(tx: Tx, c: SpaprContainer, phb: number, m: HvMap): Output {
  const first = Number((m.iova - m.w.start) / m.page);
  const mirrors = c.groups.filter((e) => e.domain !== null).length;
  const o = hvBuild(tx.state, phb, m.w.table, first, m.count, mirrors);
  if (o.answer === null) {
    emitMapped(tx, c, m.iova, m.vaddr, m.page, m.count, m.perm);
    countAccepted(tx, phb, o.accepted);
    return hvOutput(tx.state, c.name, {});
  }
  const ret = HCALL_STATUS[o.answer];
  const entry = toHex(m.iova + BigInt(o.written) * m.page);
  const errno = o.answer === 'H_HARDWARE' ? 'EPERM' : o.answer === 'H_NOT_ENOUGH_RESOURCES' ? 'ECHRNG' : null;
  const lostOld = o.rolledBack > 0 && tceFirstValid(m.w.table, first, o.rolledBack) >= 0;
  const stays = o.written - o.rolledBack;
  if (errno !== null && stays === 0 && !lostOld) {
    const before = o.written === 0 ? 'nothing was written before it' : `the rollback cleared the ${o.written} entries written before it`;
    fail(errno, `the hypervisor answered ${o.answer} (${ret}) to the TCE at ${entry}; ${before}`, { ret, hcall: o.answer, entry });
  }
  if (lostOld) emitCleared(tx, c, m.iova, m.page, o.rolledBack);
  const kept = BigInt(o.rolledBack) * m.page;
  if (stays > 0) emitMapped(tx, c, m.iova + kept, m.vaddr + kept, m.page, stays, m.perm);
  countAccepted(tx, phb, o.accepted);
  const stayed = stays > 0 ? [{ start: toHex(m.iova + kept), last: toHex(m.iova + BigInt(o.written) * m.page - 1n) }] : [];
  return hvOutput(tx.state, c.name, { ret, hcall: o.answer, ...(errno === null ? {} : { errno }), entry, stayed });
}

/** What a partition's MAP/UNMAP/TCE_REMOVE reports besides the ioctl's answer: the I/O mapping, the pins and the leaked pins after it. */
function hvOutput(state: State, container: string, out: Output): Output {
  return { ...out, ioMapped: toHex(ioMappedBytes(state)), pinned: toHex(state.pinned[container] ?? 0n), leaked: toHex(state.leakedPinned[container] ?? 0n) };
}

/** UNMAP_DMA: clearing entries already clear succeeds; no size is written back. */
export function spaprUnmapDma(tx: Tx, name: string, iova: bigint, size: bigint, flags: number): Output {
  if (flags !== 0) fail('EINVAL', `flags ${flags} must be 0`);
  const { c, page, w } = dmaTarget(tx, name, iova, size);
  const first = Number((iova - w.start) / page);
  const count = Number(size / page);
  const phb = hvPhb(tx.state, c);
  // On a partition every entry is exchanged, valid or not; a refused exchange leaves its entry mapped.
  const { cleared, answer } = phb === null ? { cleared: count, answer: null } : hvClear(tx.state, phb, count);
  if (cleared > 0 && tceFirstValid(w.table, first, cleared) >= 0) emitCleared(tx, c, iova, page, cleared);
  if (phb === null) return {};
  countAccepted(tx, phb, cleared);
  // The entries past the cleared ones are as they were before the call.
  const stayed = [...validStretches(w.table, first + cleared, count - cleared)].map((s) => ({
    start: toHex(w.start + BigInt(s.index) * page), last: toHex(w.start + BigInt(s.index + s.count) * page - 1n),
  }));
  return hvOutput(tx.state, name, { ret: 0, ...(answer === null ? {} : { hcall: answer }), stayed });
}

/**
 * Release: every group's windows go (TCEs cleared, or leaked where the hypervisor refuses the clear)
 * and its claims, then the regions; the last put of a region with leaked TCEs fails (the kernel WARNs)
 * and the region stays preregistered.
 */
export function spaprClose(tx: Tx, name: string): Output {
  const c = requireContainer(tx.state, name);
  const partition = c.groups.length > 0 && hvPhb(tx.state, c) !== null;
  releaseTables(tx, c, windowsDomain(tx.state, c)?.windows ?? []);
  for (const e of c.groups) {
    unprogramGroup(tx, name, e);
    // The container lets go of the group before the group's ownership goes: it never names a group it does not own.
    tx.emit({ type: 'SpaprGroupDetached', data: { container: name, group: e.group } });
    for (const bdf of tx.state.groups[e.group]!.claimed) releaseDevice(tx, name, bdf);
  }
  for (const r of tx.state.spapr[name]!.regions) {
    tx.emit({ type: 'SpaprRegionReferenced', data: { container: name, ua: toHex(r.ua), size: toHex(r.size), referenced: false } });
    if (!stuckOnLastPut(tx.state, preregAt(tx.state, r.ua, r.size)!)) unregisterMemory(tx, r.ua, r.size);
  }
  tx.emit({ type: 'SpaprContainerClosed', data: { container: name } });
  return partition ? { leaked: toHex(tx.state.leakedPinned[name] ?? 0n) } : {};
}

export function evolveSpapr(state: State, event: SpaprEvent): State {
  const d = event.data;
  const c = state.spapr[d.container]!;
  const set = (next: SpaprContainer): State => patch(state, { spapr: put(state.spapr, d.container, next) });
  switch (event.type) {
    case 'SpaprContainerOpened':
      return set({ name: d.container, v2: event.data.v2, memlockPages: event.data.memlockPages, enabled: false, groups: [], defWindowPending: false, regions: [] });
    case 'SpaprGroupAttached':
      return set({ ...c, groups: [...c.groups, { group: event.data.group, domain: event.data.domain }], defWindowPending: event.data.defWindowPending });
    case 'SpaprGroupDetached':
      return set(withoutGroup(c, event.data.group));
    case 'SpaprEnabled':
      return set({ ...c, enabled: event.data.enabled });
    case 'SpaprWindowsSet':
      return set({ ...c, groups: event.data.groups, defWindowPending: event.data.defWindowPending });
    case 'SpaprRegionReferenced': {
      const ua = fromHex(event.data.ua);
      const size = fromHex(event.data.size);
      const regions = event.data.referenced ? [...c.regions, { ua, size }] : c.regions.filter((r) => r.ua !== ua || r.size !== size);
      return set({ ...c, regions });
    }
    case 'SpaprContainerClosed':
      return patch(state, { spapr: drop(state.spapr, d.container) });
  }
}

function withoutGroup(c: SpaprContainer, group: number): SpaprContainer {
  const groups = c.groups.filter((e) => e.group !== group);
  return { ...c, groups, defWindowPending: groups.length > 0 && c.defWindowPending, enabled: c.enabled && (c.v2 || groups.length > 0) };
}

/** A container forgets a domain freed or a group taken from it (a surprise removal of its device). */
export function forgetInSpapr(state: State, gone: { readonly domain?: number; readonly group?: number }): State {
  let spapr = state.spapr;
  for (const c of Object.values(state.spapr)) {
    if (gone.group !== undefined && c.groups.some((e) => e.group === gone.group)) spapr = put(spapr, c.name, withoutGroup(c, gone.group));
    else if (gone.domain !== undefined && c.groups.some((e) => e.domain === gone.domain)) {
      spapr = put(spapr, c.name, { ...c, groups: c.groups.map((e) => (e.domain === gone.domain ? { ...e, domain: null } : e)) });
    }
  }
  // The same record: nothing changed, or the open transient scope owns it and it changed in place.
  return spapr === state.spapr ? state : patch(state, { spapr });
}
