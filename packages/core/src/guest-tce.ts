import type { Output } from './commands.js';
import { fail } from './errors.js';
import { drop, patch, put, type State } from './state.js';
import { TCE_PERM_MASK, tceClearRange, tceGet, tceTableCreate, tceWriteRange, type TceTable } from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, type Hex } from './u64.js';

/**
 * The guest-visible TCE tables the hypervisor keeps by LIOBN, and the TCE hypercalls as QEMU
 * emulates them (hw/ppc/spapr_iommu.c; ppc-platform.md 3.4). QEMU's tables are the windows of the
 * modelled pSeries PHBs (LIOBN = SPAPR_PCI_LIOBN(phb, slot)); their contents die with the window
 * (disabling a window frees its table). KVM's tables (kvm-tce.ts) keep their contents here too.
 *
 * Hypercall outcomes: H_SUCCESS is an accepted command (`ret: "H_SUCCESS"`). A call refused before
 * anything was written is a refused command with its H_* code. A multi-entry call that stops part way
 * (QEMU writes entry by entry and keeps what it wrote) is accepted with the entries it wrote and
 * reports the H_* code in `ret` with `processed`: the hypervisor really returns that code to the
 * guest, but the writes happened, so they are in the log.
 */
export type GuestTceEvent =
  | {
      readonly type: 'GuestTcesPut';
      readonly data: { readonly liobn: number; readonly pageShift: number; readonly size: number; readonly index: number; readonly tces: readonly Hex[] };
    }
  | {
      readonly type: 'GuestTcesStuffed';
      readonly data: { readonly liobn: number; readonly pageShift: number; readonly size: number; readonly index: number; readonly count: number; readonly tce: Hex };
    };

/** A guest TCE table: bus address `start`, `size` entries of 2^pageShift bytes. */
export interface GuestTable {
  readonly liobn: number;
  readonly start: bigint;
  readonly pageShift: number;
  readonly size: number;
}

/** H_PUT_TCE_INDIRECT takes one 4 KiB page of 8-byte TCEs. */
export const MAX_INDIRECT_TCES = 512;
export const TCE_LIST_ALIGN = 0x1000n;

export function liobnKey(liobn: number): string {
  return toHex(BigInt(liobn));
}

/** The pSeries PHB window a LIOBN names (QEMU's sPAPRTCETable), if it is enabled. */
export function qemuTable(state: State, liobn: number): GuestTable | undefined {
  if ((liobn & 0x8000_0000) === 0 || (liobn & 0x7f00_0000) !== 0) return undefined;
  const phb = (liobn >>> 8) & 0xffff;
  const slot = liobn & 0xff;
  if (slot > 1 || state.phbs[phb]?.platform !== 'pseries') return undefined;
  const pe = Object.values(state.pes).find((p) => p.phb === phb);
  const w = pe?.windows[slot as 0 | 1];
  return w ? { liobn, start: w.start, pageShift: w.pageShift, size: Number(w.size >> BigInt(w.pageShift)) } : undefined;
}

export function guestTces(state: State, liobn: number): TceTable | undefined {
  return state.guestTces[liobnKey(liobn)];
}

export function guestTce(state: State, g: GuestTable, index: number): bigint {
  const t = guestTces(state, g.liobn);
  return t ? tceGet(t, index) : 0n;
}

export function emitPut(tx: Tx, g: GuestTable, index: number, tces: readonly bigint[]): void {
  tx.emit({ type: 'GuestTcesPut', data: { liobn: g.liobn, pageShift: g.pageShift, size: g.size, index, tces: tces.map(toHex) } });
}

export function emitStuff(tx: Tx, g: GuestTable, index: number, count: number, tce: bigint): void {
  tx.emit({ type: 'GuestTcesStuffed', data: { liobn: g.liobn, pageShift: g.pageShift, size: g.size, index, count, tce: toHex(tce) } });
}

function requireQemuTable(state: State, liobn: number): GuestTable {
  return qemuTable(state, liobn) ?? fail('H_PARAMETER', `no TCE table with LIOBN ${liobnKey(liobn)}`);
}

/** QEMU masks the ioba down to the page and finds the entry; an ioba below the window wraps to a huge index. */
function qemuIndex(g: GuestTable, ioba: bigint): number | null {
  const page = ioba & ~((1n << BigInt(g.pageShift)) - 1n);
  if (page < g.start) return null;
  const idx = (page - g.start) >> BigInt(g.pageShift);
  return idx < BigInt(g.size) ? Number(idx) : null;
}

export function qemuPutTce(tx: Tx, liobn: number, ioba: bigint, tce: bigint): Output {
  const g = requireQemuTable(tx.state, liobn);
  const idx = qemuIndex(g, ioba) ?? fail('H_PARAMETER', `ioba ${toHex(ioba)} is outside LIOBN ${liobnKey(liobn)}`);
  emitPut(tx, g, idx, [tce]);
  return { ret: 'H_SUCCESS' };
}

export function qemuGetTce(state: State, liobn: number, ioba: bigint): Output {
  const g = requireQemuTable(state, liobn);
  const idx = qemuIndex(g, ioba) ?? fail('H_PARAMETER', `ioba ${toHex(ioba)} is outside LIOBN ${liobnKey(liobn)}`);
  return { ret: 'H_SUCCESS', tce: toHex(guestTce(state, g, idx)) };
}

/** Writes entry by entry and stops at the first one past the window; what it wrote stays. */
export function qemuPutTceIndirect(tx: Tx, liobn: number, ioba: bigint, tceList: bigint, tces: readonly bigint[]): Output {
  if (tces.length > MAX_INDIRECT_TCES) fail('H_PARAMETER', `${tces.length} TCEs: at most ${MAX_INDIRECT_TCES} per call`);
  const g = requireQemuTable(tx.state, liobn);
  if (tceList & (TCE_LIST_ALIGN - 1n)) fail('H_PARAMETER', `TCE list ${toHex(tceList)} is not 4 KiB aligned`);
  return partial(g, ioba, tces.length, (idx, n) => emitPut(tx, g, idx, tces.slice(0, n)));
}

export function qemuStuffTce(tx: Tx, liobn: number, ioba: bigint, tce: bigint, npages: number): Output {
  const g = requireQemuTable(tx.state, liobn);
  if (npages > g.size) fail('H_PARAMETER', `${npages} pages is more than LIOBN ${liobnKey(liobn)} holds`);
  return partial(g, ioba, npages, (idx, n) => emitStuff(tx, g, idx, n, tce));
}

function partial(g: GuestTable, ioba: bigint, npages: number, write: (idx: number, n: number) => void): Output {
  const first = qemuIndex(g, ioba);
  const room = first === null ? 0 : g.size - first;
  const n = Math.min(npages, room);
  if (n === 0 && npages > 0) fail('H_PARAMETER', `ioba ${toHex(ioba)} is outside LIOBN ${liobnKey(g.liobn)}`);
  if (n > 0) write(first!, n);
  return n < npages ? { ret: 'H_PARAMETER', processed: n } : { ret: 'H_SUCCESS', processed: n };
}

/** A TCE's permission bits: 0 (DMA_NONE) clears, anything else maps. */
export function tcePerm(tce: bigint): bigint {
  return tce & TCE_PERM_MASK;
}

export function evolveGuestTce(state: State, event: GuestTceEvent): State {
  const d = event.data;
  const key = liobnKey(d.liobn);
  const table = state.guestTces[key] ?? tceTableCreate(d.pageShift, d.size);
  let next: TceTable;
  if (event.type === 'GuestTcesPut') {
    const values = event.data.tces.map(fromHex);
    next = tceWriteRange(table, d.index, values.length, (i) => values[i]!);
  } else {
    const tce = fromHex(event.data.tce);
    next = tce === 0n ? tceClearRange(table, d.index, event.data.count) : tceWriteRange(table, d.index, event.data.count, () => tce);
  }
  return patch(state, { guestTces: put(state.guestTces, key, next) });
}

/** A QEMU window going away frees its table (unless KVM holds a table of that LIOBN). */
export function dropQemuTces(state: State, liobn: number): State {
  const key = liobnKey(liobn);
  if (state.guestTces[key] === undefined || state.kvmTables[key] !== undefined) return state;
  return patch(state, { guestTces: drop(state.guestTces, key) });
}
