import type { Output } from './commands.js';
import { dma64Start } from './ddw.js';
import { requireGroupOf } from './group.js';
import { requireObject } from './iommufd-ctx.js';
import type { State } from './state.js';
import { toHex } from './u64.js';

/**
 * IOMMU_GET_HW_INFO for a bound device: what the table group offers, as the RFC thread proposes for
 * reporting window capabilities (the fields of VFIO_IOMMU_SPAPR_TCE_GET_INFO's ddw block, plus where
 * each window slot starts). `pgsizes` is a bitmap (bit n = 2^n bytes). No capability bits: TCEs have
 * no dirty tracking.
 */
export function getHwInfo(state: State, context: string, devId: number): Output {
  const dev = requireObject(state, context, devId, 'device');
  const pe = state.pes[requireGroupOf(state, dev.bdf).pe]!;
  const tg = pe.tableGroup;
  return {
    type: 'spapr_tce',
    tce32Start: toHex(tg.tce32Start),
    tce32Size: toHex(tg.tce32Size),
    pgsizes: toHex(tg.pageShifts.reduce((bits, s) => bits | (1n << BigInt(s)), 0n)),
    maxDynamicWindows: tg.maxDynamicWindows,
    levels: tg.maxLevels,
    windowStarts: [toHex(tg.tce32Start), toHex(dma64Start(state, pe.phb))],
    capabilities: 0,
  };
}
