import type { Output } from './commands.js';
import { dma64Start, slotStart, SPAPR_LARGEST_BLOCK } from './ddw.js';
import { fail } from './errors.js';
import type { Pe, State } from './state.js';
import type { Tx } from './tx.js';
import { toHex } from './u64.js';
import { setDefaultConfig } from './window.js';

/**
 * pSeries Dynamic DMA Windows over RTAS, as QEMU's sPAPR PHB answers them (hw/ppc/spapr_rtas_ddw.c
 * with the default properties: ddw on, 2 windows, page sizes 4K|64K, dma_win_addr 0 and
 * dma_win_size 1 GiB, dma64_win_addr 1<<59).
 *
 * - query: windows available = 2 - active windows; largest block 1<<37 TCEs (the 6-cell form QEMU
 *   7.1+ answers); the LoPAR page-size mask; migration mask 0.
 * - create: PARAM_ERROR for a page size outside the mask or a window smaller than a page; HW_ERROR
 *   with no free LIOBN or both windows active, or a table larger than the largest block (the
 *   allocation fails). The window takes the first free LIOBN (slot); it starts at dma_win_addr when
 *   no window is active, else at dma64_win_addr, whatever the slot. Deliberate difference: when that
 *   puts a window in slot 0 at dma64_win_addr (the default window was removed while a dynamic one
 *   stays), QEMU overlaps the two windows; the model refuses with HW_ERROR instead.
 * - remove: PARAM_ERROR for an unknown or inactive LIOBN. Removing the last active window restores
 *   the default one, unless it was the default one (LoPAR; QEMU since 2022).
 * - reset: every window off, the default one back.
 *
 * These are the guest kernel's own calls (pseries/iommu.c enable_ddw) for a PE it drives: while a
 * user context owns the group, its windows belong to that owner and the kernel makes none (EBUSY).
 * A window made here translates through a kernel table marked dynamic.
 */

/** SPAPR_PCI_LIOBN(phb index, window): what the guest names a window by. */
export function liobn(phb: number, slot: 0 | 1): number {
  return (0x8000_0000 | (phb << 8) | slot) >>> 0;
}

/** LoPAR query mask bits by page shift; 2M was added later, hence out of order. */
const QUERY_MASK: Readonly<Record<number, number>> = { 12: 0x1, 16: 0x2, 24: 0x4, 25: 0x8, 26: 0x10, 27: 0x20, 28: 0x40, 34: 0x80, 21: 0x100 };

/** The PE behind a BUID: a pSeries PHB with devices; anything else is PARAM_ERROR. */
function requireDdwPe(state: State, phb: number): Pe {
  const p = state.phbs[phb];
  if (!p || p.platform !== 'pseries') fail('RTAS_PARAM_ERROR', `no sPAPR PHB with index ${phb} (unknown BUID)`);
  const pe = Object.values(state.pes).find((x) => x.phb === phb) ?? fail('RTAS_PARAM_ERROR', `PHB ${phb} has no device to address`);
  const group = pe.group === null ? undefined : state.groups[pe.group];
  if (group?.owner) fail('EBUSY', `group ${group.id} is owned by context ${group.owner}: the kernel makes no DDW calls for it`);
  return pe;
}

function activeWindows(pe: Pe): number {
  return pe.windows.filter((w) => w !== null).length;
}

export function rtasQuery(state: State, phb: number): Output {
  const pe = requireDdwPe(state, phb);
  const mask = pe.tableGroup.pageShifts.reduce((m, s) => m | (QUERY_MASK[s] ?? 0), 0);
  return { status: 0, windowsAvailable: 2 - activeWindows(pe), largestBlock: toHex(SPAPR_LARGEST_BLOCK), pageSizeMask: toHex(BigInt(mask)), migrationMask: 0 };
}

export function rtasCreate(tx: Tx, phb: number, pageShift: number, windowShift: number): Output {
  const pe = requireDdwPe(tx.state, phb);
  if (!pe.tableGroup.pageShifts.includes(pageShift) || windowShift < pageShift) {
    fail('RTAS_PARAM_ERROR', `page shift ${pageShift} is not offered or the window (2^${windowShift}) is smaller than a page`);
  }
  const slot = pe.windows.findIndex((w) => w === null);
  if (slot < 0) fail('RTAS_HW_ERROR', 'no free LIOBN: both windows are active');
  if (1n << BigInt(windowShift - pageShift) > SPAPR_LARGEST_BLOCK) fail('RTAS_HW_ERROR', `a table of 2^${windowShift - pageShift} TCEs cannot be allocated`);
  const start = activeWindows(pe) === 0 ? pe.tableGroup.tce32Start : dma64Start(tx.state, phb);
  if (start !== slotStart(tx.state, pe, slot as 0 | 1)) {
    fail('RTAS_HW_ERROR', `QEMU would give LIOBN slot ${slot} the start ${toHex(start)}, on top of the active window there: the model does not overlap two windows`);
  }
  tx.emit({
    type: 'WindowSet',
    data: { pe: pe.id, slot: slot as 0 | 1, start: toHex(start), size: toHex(1n << BigInt(windowShift)), pageShift, table: { kind: 'kernel', dynamic: true } },
  });
  return { status: 0, liobn: toHex(BigInt(liobn(phb, slot as 0 | 1))), startAddr: toHex(start) };
}

export function rtasRemove(tx: Tx, name: number): Output {
  const phb = (name >>> 8) & 0xffff;
  const slot = name & 0xff;
  if ((name & 0x8000_0000) === 0 || (name & 0x7f00_0000) !== 0 || (slot !== 0 && slot !== 1)) {
    fail('RTAS_PARAM_ERROR', `LIOBN ${toHex(BigInt(name))} is not a PHB window`);
  }
  const pe = requireDdwPe(tx.state, phb);
  const w = pe.windows[slot] ?? fail('RTAS_PARAM_ERROR', `LIOBN ${toHex(BigInt(name))} has no active window`);
  const wasDefault = w.table.kind === 'kernel' && !w.table.dynamic;
  tx.emit({ type: 'WindowUnset', data: { pe: pe.id, slot } });
  if (activeWindows(tx.state.pes[pe.id]!) === 0 && !wasDefault) setDefaultConfig(tx, tx.state.pes[pe.id]!);
  return { status: 0 };
}

export function rtasReset(tx: Tx, phb: number): Output {
  const pe = requireDdwPe(tx.state, phb);
  for (const slot of [0, 1] as const) if (pe.windows[slot]) tx.emit({ type: 'WindowUnset', data: { pe: pe.id, slot } });
  setDefaultConfig(tx, tx.state.pes[pe.id]!);
  return { status: 0 };
}
