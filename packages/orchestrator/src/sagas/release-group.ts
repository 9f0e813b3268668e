import type { Bdf, State } from '@iommu-orch/core';
import { WAIT, type Saga, type View } from './saga.js';

/**
 * Give devices back, as a VMM does when it shuts down: detach each, free the context's domains serving
 * the group (free unmaps, so nothing stays pinned), release each claim. `only` limits it to some
 * devices of the group (the owner's answer to a removal request); the domains go once the context
 * holds nothing in the group any more.
 */
export function* releaseGroup(view: View, context: string, group: number, only?: readonly Bdf[]): Saga {
  const saga = 'release-group';
  const g = view().groups[group];
  if (!g || g.owner !== context) return { saga, outcome: 'aborted', reason: `group ${group} is not owned by ${context}` };
  const mine = (s: State) => (s.groups[group]?.claimed ?? []).filter((b) => only === undefined || only.includes(b));
  for (const bdf of mine(view())) {
    if (view().groups[group]?.attached.includes(bdf)) yield { type: 'detachDevice', context, bdf };
  }
  const rest = view().groups[group]?.claimed.filter((b) => !mine(view()).includes(b)) ?? [];
  if (rest.length === 0) {
    for (const d of Object.values(view().domains)) {
      if (d.context === context && d.group === group) yield { type: 'freeDomain', context, domain: d.id };
    }
  }
  for (const bdf of mine(view())) yield { type: 'releaseDevice', context, bdf };
  return { saga, outcome: 'done' };
}

/** The owner's answer to removal requests: release every device it holds whose removal is pending. */
export function* answerRemovalRequests(view: View, context: string): Saga {
  const s = view();
  const byGroup = new Map<number, Bdf[]>();
  for (const g of Object.values(s.groups)) {
    if (g.owner !== context) continue;
    const requested = g.claimed.filter((b) => s.devices[b]?.removalRequested);
    if (requested.length > 0) byGroup.set(g.id, requested);
  }
  for (const [group, devices] of byGroup) yield* releaseGroup(view, context, group, devices);
  return { saga: 'answer-removal-requests', outcome: 'done' };
}

/** Groups where a removal waits on `context`. */
export function pendingRequests(s: State, context: string): boolean {
  for (const g of Object.values(s.groups)) {
    if (g.owner === context && g.claimed.some((b) => s.devices[b]?.removalRequested)) return true;
  }
  return false;
}

/**
 * An owner that keeps answering removal requests while `until` is false: what a VMM's request
 * handler does for the lifetime of its devices.
 */
export function* answerRequestsUntil(view: View, context: string, until: (s: State) => boolean): Saga {
  while (!until(view())) {
    if (pendingRequests(view(), context)) yield* answerRemovalRequests(view, context);
    else yield WAIT;
  }
  return { saga: 'answer-requests', outcome: 'done' };
}
