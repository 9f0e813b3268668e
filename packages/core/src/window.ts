import { patch, put, type Pe, type PeId, type State, type TableRef, type Window } from './state.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, type Hex } from './u64.js';

/**
 * DMA windows of a table group: two slots per PE. Slot 0 starts at tce32_start; slot 1 at 1<<59
 * (tce_bypass_base) or 4 GiB (ddw.ts). The slot decides the start, not the caller (ppc-platform.md 2.2).
 *
 * Invariants: a window is only ever set on a free slot (set_window after unset_window), and a window
 * that translates through a paging domain's table covers exactly that domain's aperture.
 */
export type WindowEvent =
  | {
      readonly type: 'WindowSet';
      readonly data: {
        readonly pe: PeId;
        readonly slot: 0 | 1;
        readonly start: Hex;
        readonly size: Hex;
        readonly pageShift: number;
        readonly table: TableRef;
      };
    }
  | { readonly type: 'WindowUnset'; readonly data: { readonly pe: PeId; readonly slot: 0 | 1 } }
  | { readonly type: 'BypassSet'; readonly data: { readonly pe: PeId; readonly enabled: boolean } };

export const BYPASS_BASE = 1n << 59n;

/**
 * Host RAM assumed for the kernel's default window. pnv_pci_ioda2_setup_default_config sizes window 0
 * as min(8 TiB, rounddown_pow2(RAM)) with 64 KiB kernel pages; the model's host has 256 GiB.
 */
export const HOST_RAM = 256n << 30n;
const KERNEL_PAGE_SHIFT = 16;

/** The kernel's own DMA set-up of a PE: used at first device set-up and again on ownership release. */
export function setDefaultConfig(tx: Tx, pe: Pe): void {
  const powernv = tx.state.phbs[pe.phb]?.platform === 'powernv';
  const size = powernv ? (HOST_RAM < 8n << 40n ? HOST_RAM : 8n << 40n) : pe.tableGroup.tce32Size;
  const pageShift = powernv ? KERNEL_PAGE_SHIFT : 12;
  tx.emit({
    type: 'WindowSet',
    data: { pe: pe.id, slot: 0, start: toHex(pe.tableGroup.tce32Start), size: toHex(size), pageShift, table: { kind: 'kernel' } },
  });
  if (powernv) tx.emit({ type: 'BypassSet', data: { pe: pe.id, enabled: true } });
}

/** Unsets every window and the bypass: what take_ownership leaves (the PE can do no DMA at all). */
export function clearWindows(tx: Tx, peId: PeId): void {
  const pe = tx.state.pes[peId]!;
  if (pe.bypass) tx.emit({ type: 'BypassSet', data: { pe: peId, enabled: false } });
  for (const slot of [0, 1] as const) if (pe.windows[slot]) tx.emit({ type: 'WindowUnset', data: { pe: peId, slot } });
}

export function evolveWindow(state: State, event: WindowEvent): State {
  const pe = state.pes[event.data.pe]!;
  switch (event.type) {
    case 'WindowSet': {
      const d = event.data;
      const w: Window = { start: fromHex(d.start), size: fromHex(d.size), pageShift: d.pageShift, table: d.table };
      const windows: Pe['windows'] = d.slot === 0 ? [w, pe.windows[1]] : [pe.windows[0], w];
      return patch(state, { pes: put(state.pes, pe.id, { ...pe, windows }) });
    }
    case 'WindowUnset': {
      const windows: Pe['windows'] = event.data.slot === 0 ? [null, pe.windows[1]] : [pe.windows[0], null];
      return patch(state, { pes: put(state.pes, pe.id, { ...pe, windows }) });
    }
    case 'BypassSet':
      return patch(state, { pes: put(state.pes, pe.id, { ...pe, bypass: event.data.enabled }) });
  }
}
