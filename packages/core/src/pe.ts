import { fail } from './errors.js';
import type { Bdf } from './pci.js';
import { drop, put, without, type Pe, type PeId, type Phb, type State, type TableGroup } from './state.js';
import type { Tx } from './tx.js';
import { toHex, fromHex, type Hex } from './u64.js';

/**
 * Partitionable endpoints.
 * PowerNV: one PE per PCI bus, created when the first device on the bus is set up; the root bus takes
 * the PE just below the reserved one (numPes-2), other buses take free numbers from the top down
 * (pnv_ioda_alloc_pe scans backwards). pSeries: the guest sees one table group per PHB (QEMU puts
 * ibm,dma-window on the PHB node), modelled as a single PE 0 serving every bus.
 */
export type PeEvent =
  | {
      readonly type: 'PeCreated';
      readonly data: {
        readonly pe: PeId;
        readonly phb: number;
        readonly number: number;
        readonly bus: number | null;
        readonly tce32Start: Hex;
        readonly tce32Size: Hex;
        readonly pageShifts: readonly number[];
        readonly maxDynamicWindows: number;
        readonly maxLevels: number;
      };
    }
  | { readonly type: 'PeReleased'; readonly data: { readonly pe: PeId } };

export function peName(phb: number, number: number): PeId {
  return `domain${phb}-pe${number.toString(16)}`;
}

/** The PE serving `bus` on `phb`, if one exists. */
export function findPe(state: State, phb: number, bus: number): Pe | undefined {
  for (const pe of Object.values(state.pes)) if (pe.phb === phb && (pe.bus === null || pe.bus === bus)) return pe;
  return undefined;
}

/** Table-group capabilities per platform (ppc-platform.md 2.2 and 3.3/3.4, QEMU defaults for pSeries). */
export function tableGroupFor(phb: Phb): TableGroup {
  return phb.platform === 'powernv'
    ? { tce32Start: 0n, tce32Size: 0x8000_0000n, pageShifts: phb.pageShifts, maxDynamicWindows: 2, maxLevels: 5 }
    : { tce32Start: 0n, tce32Size: 0x4000_0000n, pageShifts: phb.pageShifts, maxDynamicWindows: 2, maxLevels: 1 };
}

/** Returns the PE for a new device on (phb, bus), creating it when the bus has none yet. */
export function ensurePe(tx: Tx, phb: Phb, bus: number): Pe {
  const existing = findPe(tx.state, phb.domain, bus);
  if (existing) return existing;
  const number = phb.platform === 'pseries' ? 0 : allocatePeNumber(tx.state, phb, bus);
  const id = peName(phb.domain, number);
  const tg = tableGroupFor(phb);
  tx.emit({
    type: 'PeCreated',
    data: {
      pe: id,
      phb: phb.domain,
      number,
      bus: phb.platform === 'pseries' ? null : bus,
      tce32Start: toHex(tg.tce32Start),
      tce32Size: toHex(tg.tce32Size),
      pageShifts: tg.pageShifts,
      maxDynamicWindows: tg.maxDynamicWindows,
      maxLevels: tg.maxLevels,
    },
  });
  return tx.state.pes[id]!;
}

function allocatePeNumber(state: State, phb: Phb, bus: number): number {
  const rootPe = phb.numPes - 2; // reserved PE is numPes-1
  const used = new Set(Object.values(state.pes).filter((p) => p.phb === phb.domain).map((p) => p.number));
  if (bus === 0) return rootPe;
  for (let n = rootPe - 1; n >= 0; n--) if (!used.has(n)) return n;
  return fail('ENOSPC', `PHB ${phb.domain}: no free PE number for bus ${bus.toString(16)}`);
}

export function evolvePe(state: State, event: PeEvent): State {
  switch (event.type) {
    case 'PeCreated': {
      const d = event.data;
      const pe: Pe = {
        id: d.pe,
        phb: d.phb,
        number: d.number,
        bus: d.bus,
        devices: [],
        group: null,
        tableGroup: {
          tce32Start: fromHex(d.tce32Start),
          tce32Size: fromHex(d.tce32Size),
          pageShifts: d.pageShifts,
          maxDynamicWindows: d.maxDynamicWindows,
          maxLevels: d.maxLevels,
        },
        windows: [null, null],
        bypass: false,
      };
      return { ...state, pes: put(state.pes, d.pe, pe) };
    }
    case 'PeReleased':
      return { ...state, pes: drop(state.pes, event.data.pe) };
  }
}

export function peAddDevice(state: State, id: PeId, bdf: Bdf): State {
  const pe = state.pes[id]!;
  return { ...state, pes: put(state.pes, id, { ...pe, devices: [...pe.devices, bdf] }) };
}

export function peRemoveDevice(state: State, id: PeId, bdf: Bdf): State {
  const pe = state.pes[id]!;
  return { ...state, pes: put(state.pes, id, { ...pe, devices: without(pe.devices, bdf) }) };
}
