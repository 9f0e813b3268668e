import { evolve, invariants, invariantsAfter, type Command, type State, type Violation } from '@iommu-orch/core';
import {
  answerRequestsUntil, assignGroup, disableSriov, logicalClock, Orchestrator, removeSlotOrderly, runSaga, toDomainEvent,
  type Saga, type SagaResult,
} from '@iommu-orch/orchestrator';
import { MemoryEventStore } from '@iommu-orch/store';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CX5_PF, NIC, ROOT_PORT } from '../support/fixtures.js';

/**
 * Races as interleavings: sagas run concurrently through one orchestrator, and fast-check's scheduler
 * decides which saga's next step goes first (and shrinks a failing order). Every committed event is
 * folded into a shadow state from `events$` and checked, so a rule broken between two steps is caught
 * where it happens.
 */
const BOOT: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
  { type: 'registerSlot', slot: 'C1', phb: 0, bus: 1 },
  {
    type: 'enableSlot', slot: 'C1', devices: [
      { bdf: '0000:01:00.0', ...NIC, driver: 'tg3' },
      { bdf: '0000:01:00.1', ...NIC, driver: 'tg3' },
    ],
  },
  { type: 'registerSlot', slot: 'C2', phb: 0, bus: 2 },
  { type: 'enableSlot', slot: 'C2', devices: [{ bdf: '0000:02:00.0', ...CX5_PF, driver: 'mlx5_core' }] },
  { type: 'setNumVfs', bdf: '0000:02:00.0', numVfs: 2, vfDriver: null },
];
const NIC_GROUP = 0;
const map = { page: 0, pages: 8, frame: 0x4000, prot: { read: true, write: true } };

async function race(s: fc.Scheduler, sagas: (view: () => State) => Saga[]) {
  const orch = await Orchestrator.open(new MemoryEventStore(), { clock: logicalClock() });
  for (const c of BOOT) await orch.executeOrThrow(c);
  let shadow = orch.state;
  const violations: Violation[] = [];
  orch.events$.subscribe((e) => {
    const next = evolve(shadow, toDomainEvent(e));
    violations.push(...invariantsAfter(shadow, next));
    shadow = next;
  });
  const view = () => orch.state;
  const gate = (label: string) => s.schedule(Promise.resolve(), label);
  const results: SagaResult[] = await s.waitFor(Promise.all(sagas(view).map((saga) => runSaga(orch, saga, { gate, maxWaits: 2000 }))));
  return { state: orch.state, violations, results };
}

const done = (rs: SagaResult[], saga: string) => rs.filter((r) => r.saga === saga && r.outcome === 'done').length;

describe('saga races (fast-check scheduler)', () => {
  it('two contexts racing for one multifunction group: at most one wins, the group ends whole or free', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const { state, violations, results } = await race(s, (view) => [
          assignGroup(view, { context: 'vm1', group: NIC_GROUP, pageShift: 12, maps: [map] }),
          assignGroup(view, { context: 'vm2', group: NIC_GROUP, pageShift: 16, maps: [map] }),
        ]);
        expect(violations).toEqual([]);
        expect(done(results, 'assign-group')).toBeLessThanOrEqual(1);
        const g = state.groups[NIC_GROUP]!;
        if (g.owner === null) expect(g.claimed).toEqual([]);
        else {
          expect(g.claimed.slice().sort()).toEqual(['0000:01:00.0', '0000:01:00.1']);
          expect(g.attached.slice().sort()).toEqual(['0000:01:00.0', '0000:01:00.1']);
          expect(Object.keys(state.pinned)).toEqual([g.owner]);
        }
        // The loser left nothing behind: no domain, nothing pinned.
        expect(Object.values(state.domains).every((d) => d.context === g.owner)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('SR-IOV disable during a VF attach: the disable waits for the owner, then every VF goes and nothing leaks', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const vfGone = (st: State) => (st.devices['0000:02:00.0']?.sriov?.vfs.length ?? 0) === 0;
        const { state, violations, results } = await race(s, (view) => {
          const vfGroup = view().devices['0000:02:00.2']!.group!;
          return [
            assignGroup(view, { context: 'vm1', group: vfGroup, pageShift: 16, maps: [map, { ...map, page: 100 }] }),
            disableSriov(view, '0000:02:00.0'),
            answerRequestsUntil(view, 'vm1', vfGone),
          ];
        });
        expect(violations).toEqual([]);
        expect(done(results, 'sriov-disable')).toBe(1);
        expect(vfGone(state)).toBe(true);
        expect(state.domains).toEqual({});
        expect(state.pinned).toEqual({});
        expect(Object.values(state.pes).filter((p) => p.vf !== null)).toEqual([]);
        expect(invariants(state)).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });

  it('attach and map during an orderly slot removal: request, the owner releases, the card goes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const emptied = (st: State) => st.slots['C1']!.state === 'registered';
        const { state, violations, results } = await race(s, (view) => [
          assignGroup(view, { context: 'vm1', group: NIC_GROUP, pageShift: 12, maps: [map, { ...map, page: 64 }] }),
          removeSlotOrderly(view, 'C1'),
          answerRequestsUntil(view, 'vm1', emptied),
        ]);
        expect(violations).toEqual([]);
        expect(done(results, 'orderly-slot-removal')).toBe(1);
        expect(Object.keys(state.devices).filter((b) => b.startsWith('0000:01:'))).toEqual([]);
        expect(state.groups[NIC_GROUP]).toBeUndefined();
        expect(state.pinned).toEqual({});
        expect(invariants(state)).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });

  it('a surprise removal overtaking an assignment and its maps leaves no pin, domain or group behind', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        const surprise = function* (): Saga {
          const r = yield { type: 'disableSlot', slot: 'C1', surprise: true };
          return { saga: 'surprise', outcome: r?.ok ? 'done' : 'aborted' };
        };
        const { state, violations, results } = await race(s, (view) => [
          assignGroup(view, { context: 'vm1', group: NIC_GROUP, pageShift: 12, maps: [map, { ...map, page: 32 }, { ...map, page: 640 }] }),
          surprise(),
        ]);
        expect(violations).toEqual([]);
        expect(done(results, 'surprise')).toBe(1);
        // Whatever the order, vm1 can hold nothing of a card that is gone.
        expect(state.groups[NIC_GROUP]).toBeUndefined();
        expect(Object.values(state.domains).filter((d) => d.group === NIC_GROUP)).toEqual([]);
        expect(state.pinned).toEqual({});
        expect(invariants(state)).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });
});
