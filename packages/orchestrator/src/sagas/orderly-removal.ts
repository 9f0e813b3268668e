import { slotDevices, type Bdf, type State } from '@iommu-orch/core';
import { claimantOf } from './claims.js';
import { WAIT, type Saga, type SagaStep, type View } from './saga.js';

/**
 * Two-phase removals, as the kernel does them: first every device to go is marked (vfio's request() to
 * its owner; no new claim gets in), then the removal waits (WAIT) until no context holds any of them,
 * then it happens. The owners' releases are other sagas' steps, so anything can interleave: attaches
 * and maps during the wait, a surprise removal overtaking the orderly one.
 */
export function* removeSlotOrderly(view: View, slot: string): Saga {
  const saga = 'orderly-slot-removal';
  for (;;) {
    const s = view();
    const sl = s.slots[slot];
    if (!sl || sl.state !== 'populated') return { saga, outcome: 'aborted', reason: `slot ${slot} is not populated` };
    const devices = withVfs(s, slotDevices(s, sl));
    yield* requestAll(view, devices);
    if (devices.some((b) => claimantOf(view(), b) !== null)) {
      yield WAIT;
      continue;
    }
    const r = yield { type: 'disableSlot', slot };
    if (r?.ok) return { saga, outcome: 'done' };
    if (r?.code !== 'EBUSY') return { saga, outcome: 'aborted', reason: `disable: ${r?.code}` };
  }
}

/** SR-IOV disable (sriov_numvfs = 0) while VFs may be held: request, wait for the owners, write 0. */
export function* disableSriov(view: View, pf: Bdf): Saga {
  const saga = 'sriov-disable';
  for (;;) {
    const vfs = view().devices[pf]?.sriov?.vfs ?? [];
    if (vfs.length === 0) return { saga, outcome: 'aborted', reason: `${pf} has no VFs` };
    yield* requestAll(view, vfs);
    if (vfs.some((b) => claimantOf(view(), b) !== null)) {
      yield WAIT;
      continue;
    }
    const r = yield { type: 'setNumVfs', bdf: pf, numVfs: 0 };
    if (r?.ok) return { saga, outcome: 'done' };
    if (r?.code !== 'EBUSY') return { saga, outcome: 'aborted', reason: `setNumVfs 0: ${r?.code}` };
  }
}

function* requestAll(view: View, devices: readonly Bdf[]): Generator<SagaStep, void, unknown> {
  for (const bdf of devices) {
    const d = view().devices[bdf];
    if (d && !d.removalRequested) yield { type: 'requestRemoval', bdf };
  }
}

function withVfs(s: State, devices: readonly Bdf[]): Bdf[] {
  return devices.flatMap((b) => [...(s.devices[b]?.sriov?.vfs ?? []), b]);
}
