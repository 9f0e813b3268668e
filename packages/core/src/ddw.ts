import { fail } from './errors.js';
import { drop, patch, put, type Pe, type State } from './state.js';
import { pnvTableGeometry } from './tce-levels.js';
import type { Tx } from './tx.js';
import { fromHex, isPowerOfTwo, log2, toHex, U64_MAX, type Hex } from './u64.js';
import { BYPASS_BASE } from './window.js';

/**
 * The two DMA windows of a table group and the parameters of a window a domain asks for.
 *
 * The slot decides the start, not the caller: slot 0 starts at tce32_start, slot 1 at 1<<59, or at
 * 4 GiB on a PHB configured so (PowerNV PHB4/PHB5 firmware option OPAL_PHB_OPTION_TVE1_4GB; QEMU's
 * dma64_win_addr property on pSeries). Page sizes are the PHB generation's. The size rule is the
 * platform's own: PowerNV builds the table itself (pnv_pci_ioda2_table_alloc_pages); pSeries asks the
 * hypervisor with ibm,create-pe-dma-window, whose table has one level and at most "largest block" TCEs.
 */
export type DdwEvent = {
  readonly type: 'PhbOptionSet';
  readonly data: { readonly phb: number; readonly option: PhbOption; readonly enabled: boolean };
};

export type PhbOption = 'tve1-4gb';

export const TVE1_4GB_BASE = 1n << 32n;

/** Largest block QEMU reports in the 6-cell query form: 1<<37 TCEs. */
export const SPAPR_LARGEST_BLOCK = 1n << 37n;

/** One window a domain asks for: HWPT-allocation data, one entry per slot. */
export interface WindowSpec {
  /** The slot: 0 or 1 (anything else is EINVAL, as the driver would answer a bad user-data field). */
  readonly window: number;
  readonly pageShift: number;
  readonly size: bigint;
  readonly levels: number;
}

/** A checked window, placed at its slot's start. */
export interface WindowData {
  readonly slot: 0 | 1;
  readonly start: Hex;
  readonly size: Hex;
  readonly pageShift: number;
  readonly levels: number;
}

export function dma64Start(state: State, phb: number): bigint {
  return state.dma64Base[phb] ?? BYPASS_BASE;
}

export function slotStart(state: State, pe: Pe, slot: 0 | 1): bigint {
  return slot === 0 ? pe.tableGroup.tce32Start : dma64Start(state, pe.phb);
}

/** The window the kernel gives a domain by default: slot 0 over the 32-bit range, one level. */
export function defaultWindow(pe: Pe, pageShift: number): WindowSpec {
  return { window: 0, pageShift, size: pe.tableGroup.tce32Size, levels: 1 };
}

/**
 * create_table's checks for each requested window, then the placement: EINVAL for a repeated or
 * unknown slot, a page size the PHB lacks, levels outside 1..max_levels, a size that is not a power
 * of two or smaller than a page, windows that overlap; PowerNV's table-size rule (EINVAL, ENOMEM);
 * on pSeries more TCEs than the hypervisor's largest block, or a 64-bit window without the 32-bit
 * one (QEMU places a PE's first window at dma_win_addr whatever the slot: the domain could not get
 * the start it asked for).
 */
export function resolveWindows(state: State, pe: Pe, specs: readonly WindowSpec[]): WindowData[] {
  if (specs.length < 1 || specs.length > 2) fail('EINVAL', `a domain has one or two windows, not ${specs.length}`);
  const platform = state.phbs[pe.phb]!.platform;
  const tg = pe.tableGroup;
  const out: WindowData[] = [];
  for (const s of specs) {
    if (s.window !== 0 && s.window !== 1) fail('EINVAL', `window ${String(s.window)} does not exist: a table group has slots 0 and 1`);
    const slot: 0 | 1 = s.window;
    if (out.some((w) => w.slot === slot)) fail('EINVAL', `window ${slot} is given twice`);
    if (!tg.pageShifts.includes(s.pageShift)) {
      fail('EINVAL', `IOMMU page size 2^${s.pageShift} is not supported by ${pe.id} (supported: ${tg.pageShifts.map((p) => `2^${p}`).join(', ')})`);
    }
    if (!Number.isInteger(s.levels) || s.levels < 1 || s.levels > tg.maxLevels) {
      fail('EINVAL', `${pe.id} supports 1 to ${tg.maxLevels} table level(s), not ${s.levels}`);
    }
    if (platform === 'powernv') {
      pnvTableGeometry(s.pageShift, s.size, s.levels);
    } else {
      if (!isPowerOfTwo(s.size)) fail('EINVAL', `window size ${toHex(s.size)} is not a power of two`);
      if (log2(s.size) < s.pageShift) fail('EINVAL', `window size ${toHex(s.size)} is smaller than one 2^${s.pageShift} page`);
      if (s.size >> BigInt(s.pageShift) > SPAPR_LARGEST_BLOCK) {
        fail('EINVAL', `${toHex(s.size >> BigInt(s.pageShift))} TCEs exceed the hypervisor's largest block of ${toHex(SPAPR_LARGEST_BLOCK)}`);
      }
    }
    const start = slotStart(state, pe, slot);
    if (start + s.size - 1n > U64_MAX) fail('EINVAL', `window ${slot} of ${toHex(s.size)} at ${toHex(start)} passes the end of the bus address space`);
    out.push({ slot, start: toHex(start), size: toHex(s.size), pageShift: s.pageShift, levels: s.levels });
  }
  out.sort((a, b) => a.slot - b.slot);
  if (out.length === 2) {
    const [w0, w1] = out as [WindowData, WindowData];
    if (fromHex(w0.start) + fromHex(w0.size) > fromHex(w1.start)) {
      fail('EINVAL', `window 0 [${w0.start}, +${w0.size}) overlaps window 1 at ${w1.start}`);
    }
  }
  if (platform === 'pseries' && out[0]!.slot === 1) {
    fail('EINVAL', 'on pSeries the first window of a PE is placed at dma_win_addr: a domain needs window 0 to get window 1 at its 64-bit start');
  }
  return out;
}

/**
 * OPAL_PHB_OPTION_TVE1_4GB (PHB4 and PHB5; PHB3 firmware lacks it: EOPNOTSUPP), or QEMU's
 * dma64_win_addr on pSeries: window slot 1 starts at 4 GiB instead of 1<<59. Refused (EBUSY) while
 * any window or domain uses slot 1 of the PHB, whose start would move under it.
 */
export function setPhbOption(tx: Tx, phb: number, option: PhbOption, enabled: boolean): void {
  const p = tx.state.phbs[phb] ?? fail('ENODEV', `no PHB ${phb}`);
  if (option !== 'tve1-4gb') fail('EOPNOTSUPP', `unknown PHB option ${String(option)}`);
  if (p.generation === 'PHB3') fail('EOPNOTSUPP', 'PHB3 firmware has no OPAL_PHB_OPTION_TVE1_4GB');
  const pes = Object.values(tx.state.pes).filter((pe) => pe.phb === phb);
  if (pes.some((pe) => pe.windows[1] !== null)) fail('EBUSY', `a window of PHB ${phb} is set in slot 1`);
  if (Object.values(tx.state.domains).some((d) => pes.some((pe) => pe.id === d.pe) && d.windows.some((w) => w.slot === 1))) {
    fail('EBUSY', `a domain of PHB ${phb} has a window in slot 1`);
  }
  tx.emit({ type: 'PhbOptionSet', data: { phb, option, enabled } });
}

export function evolveDdw(state: State, event: DdwEvent): State {
  const { phb, enabled } = event.data;
  return patch(state, { dma64Base: enabled ? put(state.dma64Base, phb, TVE1_4GB_BASE) : drop(state.dma64Base, phb) });
}
