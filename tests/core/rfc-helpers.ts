import { decide, initialState, type State } from '@iommu-orch/core';
import { apply, NVME } from '../support/fixtures.js';

export { decide, tceGet, TCE_PCI_READ, TCE_PCI_WRITE, type State } from '@iommu-orch/core';

/** iova_to_phys through the public decide path (it is a query: no events). */
export function iovaToPhysOf(state: State, context: string, domain: number, iova: bigint): bigint {
  const d = decide(state, { type: 'iovaToPhys', context, domain, iova });
  if (!d.ok) throw new Error(d.error.message);
  return BigInt(d.output['phys'] as string);
}

/** A pseries guest: one QEMU sPAPR PHB, one group for the whole PHB. */
export function pseriesHost(): State {
  return apply(
    initialState,
    { type: 'addPhb', phb: 0, platform: 'pseries', generation: 'SPAPR' },
    { type: 'addDevice', bdf: '0000:00:01.0', ...NVME },
    { type: 'addDevice', bdf: '0000:00:02.0', ...NVME },
  );
}
