import type { Bdf, State } from '@iommu-orch/core';

/** The context holding a device's claim, or null. */
export function claimantOf(state: State, bdf: Bdf): string | null {
  const dev = state.devices[bdf];
  const group = dev?.group === null || dev === undefined ? undefined : state.groups[dev.group];
  return group?.claimed.includes(bdf) ? group.owner : null;
}
