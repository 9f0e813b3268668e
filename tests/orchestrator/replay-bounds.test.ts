import { canonicalState, initialState } from '@iommu-orch/core';
import { logicalClock, Orchestrator, replay } from '@iommu-orch/orchestrator';
import { MemoryEventStore, SqliteEventStore, type EventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachedBootCommands } from '../support/arbitraries.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-replay-bounds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Boot, attach, then maps of 1 to 3 pages (one command, several events, one time), snapshotted every 4 events. */
async function logIn(store: EventStore): Promise<void> {
  const orch = await Orchestrator.open(store, { clock: logicalClock('2026-05-01T00:00:00.000Z', 500), snapshotEvery: 4 });
  for (const c of attachedBootCommands) await orch.executeOrThrow(c);
  for (let i = 0; i < 10; i++) {
    await orch.executeOrThrow({ type: 'mapPages', context: 'vm1', domain: 1, iova: BigInt(i) << 20n, paddr: 0x4000_0000n, pgsize: 0x1000n, pgcount: 1 + (i % 3), prot: { read: true, write: true } });
  }
}

const engines: [string, () => EventStore][] = [
  ['memory', () => new MemoryEventStore()],
  ['sqlite', () => SqliteEventStore.open(join(dir, `log-${Math.random().toString(36).slice(2)}.sqlite`))],
];

describe.each(engines)('replay bounds (%s)', (_name, open) => {
  it('until a time stops before the first later event: the same state, position and time as replay at the last event not later', async () => {
    const store = open();
    await logIn(store);
    const events = await store.read(0, 1000);
    expect(new Set(events.map((e) => e.metadata.time)).size).toBeLessThan(events.length); // commands of several events share a time
    const first = Date.parse(events[0]!.metadata.time);
    // Every event time, and the instants between two of them.
    const bounds = [...new Set(events.flatMap((e) => [Date.parse(e.metadata.time), Date.parse(e.metadata.time) + 250]))];
    for (const snapshots of [true, false]) {
      for (const t of bounds) {
        const last = events.filter((e) => Date.parse(e.metadata.time) <= t).at(-1)!;
        const r = await replay(store, { until: new Date(t).toISOString(), snapshots });
        expect([r.position, r.time]).toEqual([last.position, last.metadata.time]);
        expect(canonicalState(r.state)).toBe(canonicalState((await replay(store, { at: last.position, snapshots: false })).state));
      }
      const before = await replay(store, { until: new Date(first - 1).toISOString(), snapshots });
      expect([before.position, before.time, canonicalState(before.state)]).toEqual([0, null, canonicalState(initialState)]);
    }
    await store.close();
  });

  it('at a position folds exactly the events up to it, from a snapshot or not, and reports that event time', async () => {
    const store = open();
    await logIn(store);
    const events = await store.read(0, 1000);
    for (let at = 0; at <= events.length + 2; at++) {
      const full = await replay(store, { at, snapshots: false });
      const last = events[Math.min(at, events.length) - 1];
      expect([full.position, full.time]).toEqual([last?.position ?? 0, last?.metadata.time ?? null]);
      const fromSnapshot = await replay(store, { at });
      expect([fromSnapshot.position, fromSnapshot.time, canonicalState(fromSnapshot.state)]).toEqual([full.position, full.time, canonicalState(full.state)]);
    }
    await store.close();
  });
});
