import type { Ioas, State } from '@iommu-orch/core';

/** The IOAS `id` of an iommufd context; undefined when there is none or the id names another kind. */
export function ioasOf(state: State, context: string, id: number): Ioas | undefined {
  const o = state.iommufd[context]?.objects[id];
  return o?.kind === 'ioas' ? o : undefined;
}

/** The paging domains an IOAS fills: those of its HWPTs, in the order they were added. */
export function ioasDomains(state: State, context: string, id: number): number[] {
  return (ioasOf(state, context, id)?.hwpts ?? []).flatMap((h) => {
    const o = state.iommufd[context]?.objects[h];
    return o?.kind === 'hwpt' ? [o.domain] : [];
  });
}
