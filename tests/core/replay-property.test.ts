import { canonicalState, decide, fold, initialState, invariants, type IommuEvent } from '@iommu-orch/core';
import { MemoryEventStore, SqliteEventStore } from '@iommu-orch/store';
import { logicalClock, Orchestrator, replay } from '@iommu-orch/orchestrator';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bootCommands, commandsArb } from '../support/arbitraries.js';

describe('replay equals live state (fast-check)', () => {
  it('pure: the fold of the accepted events equals the decided state; refusals emit nothing; invariants hold', () => {
    fc.assert(
      fc.property(commandsArb, (commands) => {
        let state = initialState;
        const events: IommuEvent[] = [];
        for (const c of [...bootCommands, ...commands]) {
          const d = decide(state, c);
          if (!d.ok) continue;
          events.push(...d.events);
          state = d.state;
          expect(invariants(state)).toEqual([]);
        }
        // Round-trip through JSON, as the store does, before folding.
        const stored = JSON.parse(JSON.stringify(events)) as IommuEvent[];
        expect(canonicalState(fold(stored, initialState))).toBe(canonicalState(state));
      }),
      { numRuns: 300 },
    );
  });

  const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-prop-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;

  for (const engine of ['memory', 'sqlite'] as const) {
    it(`through the orchestrator on the ${engine} store: rejected commands leave the log unchanged`, async () => {
      await fc.assert(
        fc.asyncProperty(commandsArb, async (commands) => {
          const store = engine === 'memory' ? new MemoryEventStore() : SqliteEventStore.open(join(dir, `p${n++}.sqlite`));
          try {
            const orch = await Orchestrator.open(store, { clock: logicalClock() });
            for (const c of [...bootCommands, ...commands]) {
              const before = await store.head();
              const r = await orch.execute(c);
              const after = await store.head();
              if (r.ok) expect(after).toBe(before + r.events.length);
              else expect(after).toBe(before);
            }
            const replayed = await replay(store);
            expect(canonicalState(replayed.state)).toBe(canonicalState(orch.state));
            expect(replayed.position).toBe(await store.head());
          } finally {
            await store.close();
          }
        }),
        { numRuns: engine === 'memory' ? 150 : 40 },
      );
    });
  }
});
