import type { Command, IommuEvent } from '@iommu-orch/core';

/**
 * Test-only faults: deliberate bugs that rewrite what a decision emits before it is logged and folded,
 * so that the invariant checks, the stress runner's shrinker and `run`'s replay can be shown to catch
 * a broken rule end to end. Reachable only through the hidden `--fault` flag of `stress` and `run`;
 * nothing selects one by default.
 */
export interface Fault {
  readonly name: FaultName;
  readonly description: string;
  readonly rule: string;
  rewrite(command: Command, events: readonly IommuEvent[]): readonly IommuEvent[];
}

const FAULT_TABLE = {
  'skip-forced-unmap': {
    description: 'frees paging domains without the forced unmap: their TCEs stay pinned',
    rule: 'pinned-pages',
    rewrite: (_c: Command, events: readonly IommuEvent[]) => {
      const freed = new Set(events.flatMap((e) => (e.type === 'PagingDomainFreed' ? [e.data.domain] : [])));
      return events.filter((e) => !(e.type === 'TcesCleared' && freed.has(e.data.domain)));
    },
  },
  'keep-window-on-detach': {
    description: 'the last detach leaves the PE window programmed with the domain table',
    rule: 'window-table',
    rewrite: (c: Command, events: readonly IommuEvent[]) => (c.type === 'detachDevice' ? events.filter((e) => e.type !== 'WindowUnset') : events),
  },
} as const;

export type FaultName = keyof typeof FAULT_TABLE;
export const FAULT_NAMES = Object.keys(FAULT_TABLE) as readonly FaultName[];

export function fault(name: FaultName): Fault {
  return { name, ...FAULT_TABLE[name] };
}
