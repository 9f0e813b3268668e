import type { Bdf, Prot } from '@iommu-orch/core';
import type { Saga, SagaResult, View } from './saga.js';

/** A mapping to make once the group is attached: `pages` IOMMU pages from page index `page` of the aperture. */
export interface MapPlan {
  readonly page: number;
  readonly pages: number;
  /** Physical page frame number (in IOMMU pages) the first page maps to. */
  readonly frame: number;
  readonly prot: Prot;
}

export interface AssignPlan {
  readonly context: string;
  readonly group: number;
  readonly pageShift: number;
  readonly maps: readonly MapPlan[];
}

/**
 * Assign a whole group to a context, as a VMM does: the host unbinds the endpoints' kernel drivers,
 * the context claims every endpoint, allocates a paging domain and attaches each endpoint, then maps.
 * A refusal half-way (another context got there first, a removal began, a function appeared) undoes
 * what was done, newest first: the group ends assigned whole or not at all.
 */
export function* assignGroup(view: View, plan: AssignPlan): Saga {
  const saga = 'assign-group';
  const { context, group } = plan;
  const devices = view().groups[group]?.devices ?? [];
  if (devices.length === 0) return { saga, outcome: 'aborted', reason: `group ${group} has no endpoint` };
  for (const bdf of devices) {
    if ((view().devices[bdf]?.driver ?? null) === null) continue;
    const r = yield { type: 'unbindDriver', bdf };
    if (!r?.ok) return { saga, outcome: 'aborted', reason: `unbind ${bdf}: ${r?.code}` };
  }
  const claimed: Bdf[] = [];
  for (const bdf of view().groups[group]?.devices ?? []) {
    const r = yield { type: 'claimDevice', context, bdf };
    if (!r?.ok) return yield* undo(context, claimed, [], null, `claim ${bdf}: ${r?.code}`);
    claimed.push(bdf);
  }
  if (claimed.length === 0) return { saga, outcome: 'aborted', reason: `group ${group} is gone` };
  const alloc = yield { type: 'allocPagingDomain', context, bdf: claimed[0]!, pageShift: plan.pageShift };
  if (!alloc?.ok) return yield* undo(context, claimed, [], null, `alloc: ${alloc?.code}`);
  const domain = alloc.output['domain'] as number;
  const attached: Bdf[] = [];
  for (const bdf of claimed) {
    const r = yield { type: 'attachDevice', context, domain, bdf };
    if (!r?.ok) return yield* undo(context, claimed, attached, domain, `attach ${bdf}: ${r?.code}`);
    attached.push(bdf);
  }
  const d = view().domains[domain];
  if (!d) return { saga, outcome: 'done', reason: 'domain freed before mapping' };
  const pgsize = 1n << BigInt(plan.pageShift);
  for (const m of plan.maps) {
    const r = yield {
      type: 'mapPages', context, domain, iova: d.windows[0]!.start + BigInt(m.page) * pgsize, paddr: BigInt(m.frame) * pgsize, pgsize, pgcount: m.pages, prot: m.prot,
    };
    // A refused map ends the workload, not the assignment: the domain may be going away under a removal.
    if (!r?.ok && r?.code !== 'EEXIST') break;
  }
  return { saga, outcome: 'done' };
}

/** Compensation: detach, free and release what this saga did, newest first; refusals here are ignored. */
function* undo(context: string, claimed: readonly Bdf[], attached: readonly Bdf[], domain: number | null, reason: string): Saga {
  for (const bdf of [...attached].reverse()) yield { type: 'detachDevice', context, bdf };
  if (domain !== null) yield { type: 'freeDomain', context, domain };
  for (const bdf of [...claimed].reverse()) yield { type: 'releaseDevice', context, bdf };
  const result: SagaResult = { saga: 'assign-group', outcome: claimed.length > 0 ? 'compensated' : 'aborted', reason };
  return result;
}
