import { fail } from './errors.js';
import type { Bdf } from './pci.js';
import { drop, patch, put, without, type Pe, type PeId, type Phb, type State, type TableGroup } from './state.js';
import type { Tx } from './tx.js';
import { toHex, fromHex, type Hex } from './u64.js';

/**
 * Partitionable endpoints.
 * PowerNV: one PE per PCI bus, created when the first device on the bus is set up; the root bus takes
 * the PE just below the reserved one (numPes-2), other buses take free numbers from the top down
 * (pnv_ioda_alloc_pe scans backwards). pSeries: the guest sees one table group per PHB (QEMU puts
 * ibm,dma-window on the PHB node), modelled as a single PE 0 serving every bus. PowerNV SR-IOV gives
 * each VF a PE of its own (sriov.ts), which serves that VF only and never a bus.
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
        /** Set for a VF PE (absent in logs written before SR-IOV was modelled). */
        readonly vf?: Bdf;
      };
    }
  | { readonly type: 'PeReleased'; readonly data: { readonly pe: PeId } };

export function peName(phb: number, number: number): PeId {
  return `domain${phb}-pe${number.toString(16)}`;
}

/** The PE serving `bus` on `phb`, if one exists. VF PEs serve no bus. */
export function findPe(state: State, phb: number, bus: number): Pe | undefined {
  for (const pe of Object.values(state.pes)) if (pe.phb === phb && pe.vf === null && (pe.bus === null || pe.bus === bus)) return pe;
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
  let number = 0;
  if (phb.platform === 'powernv') {
    number = bus === 0 ? phb.numPes - 2 : (allocatePeRun(tx.state, phb, 1) ?? fail('ENOSPC', `PHB ${phb.domain}: no free PE number for bus ${bus.toString(16)}`));
  }
  return createPe(tx, phb, number, phb.platform === 'pseries' ? null : bus, null);
}

/** Emits PeCreated with the table-group capabilities of the PHB; returns the new PE. */
export function createPe(tx: Tx, phb: Phb, number: number, bus: number | null, vf: Bdf | null): Pe {
  const id = peName(phb.domain, number);
  const tg = tableGroupFor(phb);
  tx.emit({
    type: 'PeCreated',
    data: {
      pe: id,
      phb: phb.domain,
      number,
      bus,
      tce32Start: toHex(tg.tce32Start),
      tce32Size: toHex(tg.tce32Size),
      pageShifts: tg.pageShifts,
      maxDynamicWindows: tg.maxDynamicWindows,
      maxLevels: tg.maxLevels,
      ...(vf === null ? {} : { vf }),
    },
  });
  return tx.state.pes[id]!;
}

/**
 * pnv_ioda_alloc_pe(phb, count): the lowest number of the first run of `count` free PE numbers found
 * scanning down from the top; null when there is none. The reserved PE (numPes-1) and the root-bus PE
 * (numPes-2) are never handed out.
 */
export function allocatePeRun(state: State, phb: Phb, count: number): number | null {
  const used = new Set(Object.values(state.pes).filter((p) => p.phb === phb.domain).map((p) => p.number));
  let run = 0;
  for (let n = phb.numPes - 3; n >= 0; n--) {
    run = used.has(n) ? 0 : run + 1;
    if (run === count) return n;
  }
  return null;
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
        vf: d.vf ?? null,
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
      return patch(state, { pes: put(state.pes, d.pe, pe) });
    }
    case 'PeReleased':
      return patch(state, { pes: drop(state.pes, event.data.pe) });
  }
}

export function peAddDevice(state: State, id: PeId, bdf: Bdf): State {
  const pe = state.pes[id]!;
  return patch(state, { pes: put(state.pes, id, { ...pe, devices: [...pe.devices, bdf] }) });
}

export function peRemoveDevice(state: State, id: PeId, bdf: Bdf): State {
  const pe = state.pes[id]!;
  return patch(state, { pes: put(state.pes, id, { ...pe, devices: without(pe.devices, bdf) }) });
}
