import type { Output } from './commands.js';
import { fail } from './errors.js';
import {
  emitPut, emitStuff, guestTce, liobnKey, MAX_INDIRECT_TCES, qemuGetTce, qemuPutTce, qemuPutTceIndirect, qemuStuffTce, TCE_LIST_ALIGN,
  tcePerm, type GuestTable,
} from './guest-tce.js';
import { hcallEntry } from './hcall-dispatch.js';
import { hwptOfDomain } from './iommufd-ctx.js';
import { preregAt } from './prereg.js';
import { patch, put, type State, type Window } from './state.js';
import { tceFirstValid, tcePermOf } from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, U64_MAX, type Hex } from './u64.js';

/**
 * KVM's in-kernel TCE acceleration (arch/powerpc/kvm/book3s_64_vio.c; ppc-platform.md 3.5), for the
 * one guest the model runs: guest TCE tables by LIOBN (KVM_CREATE_SPAPR_TCE_64), memslots (guest
 * physical -> user address), links to the hardware tables of VFIO groups
 * (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), and the hypercalls KVM answers for its tables.
 *
 * A hypercall goes to KVM when KVM has a table of that LIOBN, else to QEMU's emulation (guest-tce.ts),
 * which is also what KVM's H_TOO_HARD means: "let userspace do it". `layer: 'kvm'` asks the KVM handler
 * alone, so its H_TOO_HARD answers show (an unknown LIOBN included).
 *
 * A linked hardware table is the group's current window table: a window of the group's PE that
 * translates through the owner's paging domain (not an iommufd HWPT's: sPAPR has no iommufd path to
 * KVM, and a HWPT's TCEs are its IOAS's), with page size at most the guest's, the same bus
 * start and at least the guest window's size. A guest TCE whose page is larger than the hardware
 * page maps 2^(guest shift - hw shift) consecutive hardware entries. The hardware TCE takes the user
 * address that backs the guest page (the model's stand-in for the host physical address mm_iommu
 * translates it to), so what the device reaches is what the guest mapped.
 */
export interface KvmTceTable {
  readonly liobn: number;
  readonly pageShift: number;
  /** First entry's bus page number (the table starts at offset << pageShift). */
  readonly offset: bigint;
  readonly size: number;
  /** Linked VFIO groups, each with the context that linked it (the holder of the group fd). */
  readonly groups: readonly KvmLink[];
}

export interface KvmLink {
  readonly group: number;
  readonly context: string;
}

export interface Memslot {
  readonly slot: number;
  readonly gpa: bigint;
  readonly size: bigint;
  readonly ua: bigint;
}

export type KvmTceEvent =
  | { readonly type: 'KvmTceTableCreated'; readonly data: { readonly liobn: number; readonly pageShift: number; readonly offset: Hex; readonly size: number } }
  | { readonly type: 'KvmMemslotSet'; readonly data: { readonly slot: number; readonly gpa: Hex; readonly size: Hex; readonly ua: Hex } }
  | { readonly type: 'KvmGroupLinked'; readonly data: { readonly liobn: number; readonly group: number; readonly context: string } };

export type HcallLayer = 'kvm' | 'qemu';

const PAGE = 0x1000n;
/** The largest table the model lets KVM charge to locked_vm (2^37 TCEs, QEMU's largest block). */
const MAX_TABLE_ENTRIES = 1n << 37n;

export function kvmCreateSpaprTce(tx: Tx, liobn: number, pageShift: number, offset: bigint, size: bigint): Output {
  if (size === 0n) fail('EINVAL', 'a TCE table of 0 pages');
  if (!Number.isInteger(pageShift) || pageShift < 12 || pageShift > 34) fail('EINVAL', `page shift ${pageShift} is outside 12..34`);
  if (offset + size > U64_MAX || offset + size < offset) fail('EINVAL', 'offset + size overflows');
  if (tx.state.kvmTables[liobnKey(liobn)]) fail('EBUSY', `LIOBN ${liobnKey(liobn)} already has a TCE table`);
  if (size > MAX_TABLE_ENTRIES) fail('ENOMEM', `${toHex(size)} TCEs exceed the locked memory the guest may charge`);
  tx.emit({ type: 'KvmTceTableCreated', data: { liobn, pageShift, offset: toHex(offset), size: Number(size) } });
  return { liobn: liobnKey(liobn) };
}

/** KVM_SET_USER_MEMORY_REGION for a new slot: page aligned, not overlapping another (EEXIST). */
export function kvmSetMemslot(tx: Tx, slot: number, gpa: bigint, size: bigint, ua: bigint): Output {
  if (size === 0n || (gpa | size | ua) & (PAGE - 1n)) fail('EINVAL', 'a memslot is page aligned and not empty');
  for (const m of Object.values(tx.state.memslots)) {
    if (m.slot === slot) fail('EEXIST', `memslot ${slot} exists`);
    if (gpa < m.gpa + m.size && m.gpa < gpa + size) fail('EEXIST', `guest range ${toHex(gpa)}+${toHex(size)} overlaps memslot ${m.slot}`);
  }
  tx.emit({ type: 'KvmMemslotSet', data: { slot, gpa: toHex(gpa), size: toHex(size), ua: toHex(ua) } });
  return { slot };
}

/**
 * KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: the group (which `context` must own: it holds the group fd) is
 * linked to the guest table when one of its windows can back it, else EINVAL; EBADF for an unknown
 * table or a group the context does not hold. Linking again only takes another reference.
 */
export function kvmLinkGroup(tx: Tx, liobn: number, context: string, group: number): Output {
  const kt = tx.state.kvmTables[liobnKey(liobn)] ?? fail('EBADF', `no KVM TCE table with LIOBN ${liobnKey(liobn)}`);
  const g = tx.state.groups[group];
  if (!g || g.owner !== context) fail('EBADF', `context ${context} holds no group ${group}`);
  const hw = hwWindows(tx.state, kt, { group, context });
  if (hw.length === 0) {
    fail('EINVAL', `group ${group} has no window with pages <= 2^${kt.pageShift}, start ${toHex(guestStart(kt))} and at least ${toHex(guestBytes(kt))} bytes`);
  }
  if (!kt.groups.some((l) => l.group === group && l.context === context)) tx.emit({ type: 'KvmGroupLinked', data: { liobn, group, context } });
  return { hwPageShift: hw[0]!.window.pageShift };
}

function guestStart(kt: KvmTceTable): bigint {
  return kt.offset << BigInt(kt.pageShift);
}

function guestBytes(kt: KvmTceTable): bigint {
  return BigInt(kt.size) << BigInt(kt.pageShift);
}

function asGuestTable(kt: KvmTceTable): GuestTable {
  return { liobn: kt.liobn, start: guestStart(kt), pageShift: kt.pageShift, size: kt.size };
}

interface HwTable {
  readonly domain: number;
  readonly window: Window;
}

/**
 * The windows of a linked group that can back the guest table (kvm_spapr_tce_attach_iommu_group's
 * match). A link lives as long as its context holds the group: once the group is released (the kernel
 * drops the link with the group fd) it backs nothing, even if another context takes the group.
 */
function hwWindows(state: State, kt: KvmTceTable, link: KvmLink): HwTable[] {
  const g = state.groups[link.group];
  const pe = g && state.pes[g.pe];
  if (!pe || g.owner !== link.context) return [];
  return pe.windows.flatMap((w) =>
    w && w.table.kind === 'domain' && state.domains[w.table.domain]?.context === g.owner && !hwptOfDomain(state, w.table.domain) &&
    w.pageShift <= kt.pageShift && w.start === guestStart(kt) && w.size >= guestBytes(kt)
      ? [{ domain: w.table.domain, window: w }]
      : [],
  );
}

function linkedTables(state: State, kt: KvmTceTable): HwTable[] {
  return kt.groups.flatMap((l) => hwWindows(state, kt, l).slice(0, 1));
}

/** kvmppc_ioba_validate: page aligned and [idx, idx+npages) inside the table, else H_PARAMETER. */
function kvmIndex(kt: KvmTceTable, ioba: bigint, npages: number): number {
  const shift = BigInt(kt.pageShift);
  if (ioba & ((1n << shift) - 1n)) fail('H_PARAMETER', `ioba ${toHex(ioba)} is not aligned to the table's page`);
  const idx = ioba >> shift;
  if (idx < kt.offset || idx - kt.offset + BigInt(npages) > BigInt(kt.size)) fail('H_PARAMETER', `ioba ${toHex(ioba)} + ${npages} pages is outside LIOBN ${liobnKey(kt.liobn)}`);
  return Number(idx - kt.offset);
}

/** The user address backing guest physical `gpa` (kvmppc_tce_to_ua), or null outside every memslot. */
function gpaToUa(state: State, gpa: bigint, len: bigint): bigint | null {
  for (const m of Object.values(state.memslots)) if (gpa >= m.gpa && gpa + len <= m.gpa + m.size) return m.ua + (gpa - m.gpa);
  return null;
}

/**
 * kvmppc_tce_validate for a mapping TCE (DMA_NONE values are not validated): the guest page is
 * aligned, inside a memslot, and for every linked hardware table inside a preregistered region
 * whose backing pages are at least the hardware page; else H_TOO_HARD. Returns the user address.
 */
function validateTce(state: State, kt: KvmTceTable, hw: readonly HwTable[], tce: bigint): bigint {
  const page = 1n << BigInt(kt.pageShift);
  const gpa = tce & ~3n;
  if (gpa & (page - 1n)) fail('H_TOO_HARD', `TCE ${toHex(tce)} is not aligned to the guest page`);
  const ua = gpaToUa(state, gpa, page) ?? fail('H_TOO_HARD', `guest address ${toHex(gpa)} is in no memslot`);
  for (const t of hw) {
    const r = preregAt(state, ua, page);
    if (!r || r.pageShift < t.window.pageShift) fail('H_TOO_HARD', `user address ${toHex(ua)} is not preregistered with pages of at least 2^${t.window.pageShift}`);
  }
  return ua;
}

/** Writes one guest entry through to every linked hardware table (subpages when the guest page is larger). */
function applyTce(tx: Tx, kt: KvmTceTable, hw: readonly HwTable[], index: number, tce: bigint, ua: bigint | null): void {
  if (ua === null) return clearHw(tx, kt, hw, index, 1);
  const ioba = guestStart(kt) + (BigInt(index) << BigInt(kt.pageShift));
  for (const t of hw) {
    const hs = t.window.pageShift;
    tx.emit({
      type: 'TcesMapped',
      data: { domain: t.domain, iova: toHex(ioba), paddr: toHex(ua), pgsize: toHex(1n << BigInt(hs)), pgcount: 1 << (kt.pageShift - hs), perm: tcePermOf(tcePerm(tce)) },
    });
  }
}

/** Unmaps `count` guest entries from `index` in every linked hardware table: one event per table, if anything was mapped. */
function clearHw(tx: Tx, kt: KvmTceTable, hw: readonly HwTable[], index: number, count: number): void {
  const ioba = guestStart(kt) + (BigInt(index) << BigInt(kt.pageShift));
  for (const t of hw) {
    const hs = t.window.pageShift;
    const pages = count * (1 << (kt.pageShift - hs));
    const w = tx.state.domains[t.domain]!.windows.find((x) => ioba >= x.start && ioba <= x.last)!;
    const first = Number((ioba - w.start) >> BigInt(hs));
    if (tceFirstValid(w.table, first, pages) >= 0) tx.emit({ type: 'TcesCleared', data: { domain: t.domain, iova: toHex(ioba), pgsize: toHex(1n << BigInt(hs)), pgcount: pages } });
  }
}

function requireKvmTable(state: State, liobn: number): KvmTceTable {
  return state.kvmTables[liobnKey(liobn)] ?? fail('H_TOO_HARD', `KVM has no table with LIOBN ${liobnKey(liobn)}: userspace handles it`);
}

/** Which handler answers: KVM for its own tables (or when asked alone), QEMU otherwise. */
function kvmHandles(state: State, liobn: number, layer: HcallLayer | undefined): boolean {
  return layer === 'kvm' || (layer === undefined && state.kvmTables[liobnKey(liobn)] !== undefined);
}

export function hPutTce(tx: Tx, liobn: number, ioba: bigint, tce: bigint, layer?: HcallLayer, problemState?: boolean): Output {
  hcallEntry(tx.state, problemState, layer);
  if (!kvmHandles(tx.state, liobn, layer)) return qemuPutTce(tx, liobn, ioba, tce);
  const kt = requireKvmTable(tx.state, liobn);
  const idx = kvmIndex(kt, ioba, 1);
  const hw = linkedTables(tx.state, kt);
  const ua = tcePerm(tce) === 0n ? null : validateTce(tx.state, kt, hw, tce);
  applyTce(tx, kt, hw, idx, tce, ua);
  emitPut(tx, asGuestTable(kt), idx, [tce]);
  return { ret: 'H_SUCCESS' };
}

/** Every TCE is validated before any is written: a refused list writes nothing. */
export function hPutTceIndirect(
  tx: Tx, liobn: number, ioba: bigint, tceList: bigint, tces: readonly bigint[], layer?: HcallLayer, problemState?: boolean,
): Output {
  hcallEntry(tx.state, problemState, layer);
  if (!kvmHandles(tx.state, liobn, layer)) return qemuPutTceIndirect(tx, liobn, ioba, tceList, tces);
  const kt = requireKvmTable(tx.state, liobn);
  if (tces.length > MAX_INDIRECT_TCES) fail('H_PARAMETER', `${tces.length} TCEs: at most ${MAX_INDIRECT_TCES} per call`);
  if (tceList & (TCE_LIST_ALIGN - 1n)) fail('H_PARAMETER', `TCE list ${toHex(tceList)} is not 4 KiB aligned`);
  const idx = kvmIndex(kt, ioba, tces.length);
  if (gpaToUa(tx.state, tceList, TCE_LIST_ALIGN) === null) fail('H_TOO_HARD', `TCE list ${toHex(tceList)} is in no memslot`);
  const hw = linkedTables(tx.state, kt);
  const uas = tces.map((t) => (tcePerm(t) === 0n ? null : validateTce(tx.state, kt, hw, t)));
  tces.forEach((t, i) => applyTce(tx, kt, hw, idx + i, t, uas[i]!));
  if (tces.length > 0) emitPut(tx, asGuestTable(kt), idx, tces);
  return { ret: 'H_SUCCESS', processed: tces.length };
}

/** Only a value without permission bits may be stuffed (H_PARAMETER); each entry is unmapped everywhere. */
export function hStuffTce(tx: Tx, liobn: number, ioba: bigint, tce: bigint, npages: number, layer?: HcallLayer, problemState?: boolean): Output {
  hcallEntry(tx.state, problemState, layer);
  if (!kvmHandles(tx.state, liobn, layer)) return qemuStuffTce(tx, liobn, ioba, tce, npages);
  const kt = requireKvmTable(tx.state, liobn);
  const idx = kvmIndex(kt, ioba, npages);
  if (tcePerm(tce) !== 0n) fail('H_PARAMETER', `H_STUFF_TCE value ${toHex(tce)} has permission bits`);
  const hw = linkedTables(tx.state, kt);
  if (npages > 0) clearHw(tx, kt, hw, idx, npages);
  if (npages > 0) emitStuff(tx, asGuestTable(kt), idx, npages, tce);
  return { ret: 'H_SUCCESS', processed: npages };
}

/** H_GET_TCE: 0 for a page never written. */
export function hGetTce(state: State, liobn: number, ioba: bigint, layer?: HcallLayer, problemState?: boolean): Output {
  hcallEntry(state, problemState, layer);
  if (!kvmHandles(state, liobn, layer)) return qemuGetTce(state, liobn, ioba);
  const kt = requireKvmTable(state, liobn);
  return { ret: 'H_SUCCESS', tce: toHex(guestTce(state, asGuestTable(kt), kvmIndex(kt, ioba, 1))) };
}

export function evolveKvmTce(state: State, event: KvmTceEvent): State {
  switch (event.type) {
    case 'KvmTceTableCreated': {
      const d = event.data;
      const kt: KvmTceTable = { liobn: d.liobn, pageShift: d.pageShift, offset: fromHex(d.offset), size: d.size, groups: [] };
      return patch(state, { kvmTables: put(state.kvmTables, liobnKey(d.liobn), kt) });
    }
    case 'KvmMemslotSet': {
      const d = event.data;
      const m: Memslot = { slot: d.slot, gpa: fromHex(d.gpa), size: fromHex(d.size), ua: fromHex(d.ua) };
      return patch(state, { memslots: put(state.memslots, d.slot, m) });
    }
    case 'KvmGroupLinked': {
      const key = liobnKey(event.data.liobn);
      const kt = state.kvmTables[key]!;
      return patch(state, { kvmTables: put(state.kvmTables, key, { ...kt, groups: [...kt.groups, { group: event.data.group, context: event.data.context }] }) });
    }
  }
}
