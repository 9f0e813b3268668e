import { logicalClock, Orchestrator, subscribeFrom } from '@iommu-orch/orchestrator';
import { MemoryEventStore, type EventStore } from '@iommu-orch/store';
import { firstValueFrom, take, tap, toArray } from 'rxjs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { bootCommands } from '../support/arbitraries.js';
import { ev } from '../store/contract.js';

/** The store, recording each read: its limit, and how many reads were in flight at once. */
function watched(store: EventStore): { store: EventStore; limits: number[]; maxInFlight: () => number } {
  const limits: number[] = [];
  let inFlight = 0;
  let max = 0;
  const wrapped: EventStore = Object.create(store) as EventStore;
  wrapped.read = async (after, limit) => {
    limits.push(limit);
    max = Math.max(max, ++inFlight);
    try {
      await sleep(0);
      return await store.read(after, limit);
    } finally {
      inFlight--;
    }
  };
  return { store: wrapped, limits, maxInFlight: () => max };
}

describe('catch-up subscriptions', () => {
  it('pulls history in pages of pageSize, one read at a time, the next only after the last page was delivered', async () => {
    const log = new MemoryEventStore();
    for (let i = 1; i <= 50; i++) await log.append('a', [ev(`${i}`)], { expectedVersion: 'any' });
    const w = watched(log);
    const readsAtDelivery: number[] = [];
    const got = await firstValueFrom(
      subscribeFrom(w.store, 0, { pageSize: 8, pollMs: 5 }).pipe(
        tap(() => readsAtDelivery.push(w.limits.length)),
        take(50),
        toArray(),
      ),
    );
    expect(got.map((e) => e.position)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(new Set(w.limits)).toEqual(new Set([8]));
    expect(w.maxInFlight()).toBe(1);
    // Events handed over after each read: at most one page, so nothing piles up.
    const perRead = new Map<number, number>();
    for (const r of readsAtDelivery) perRead.set(r, (perRead.get(r) ?? 0) + 1);
    expect(Math.max(...perRead.values())).toBe(8);
    expect(w.limits.length).toBe(Math.ceil(50 / 8));
  });

  it('goes live on the orchestrator commit signal, without waiting for the poll', async () => {
    const orch = await Orchestrator.open(new MemoryEventStore(), { clock: logicalClock() });
    await orch.execute(bootCommands[0]!);
    const head = await orch.store.head();
    // A poll this slow would never fire during the test: only the wake-up can deliver.
    const live = firstValueFrom(orch.subscribe(0, { pollMs: 3_600_000 }).pipe(take(head + 3), toArray()));
    await sleep(5);
    for (const c of bootCommands.slice(1, 3)) await orch.execute(c);
    const got = await live;
    expect(got.map((e) => e.position)).toEqual(Array.from({ length: head + 3 }, (_, i) => i + 1));
  });

  it('stops reading when unsubscribed, and reports a log that skips a position instead of delivering it', async () => {
    const log = new MemoryEventStore();
    await log.append('a', [ev('1')], { expectedVersion: 'any' });
    const w = watched(log);
    const sub = subscribeFrom(w.store, 0, { pollMs: 2 }).subscribe();
    await sleep(20);
    sub.unsubscribe();
    await sleep(5);
    const reads = w.limits.length;
    await sleep(20);
    expect(w.limits.length).toBe(reads);

    const gappy: EventStore = Object.create(log) as EventStore;
    gappy.read = async (after, limit) => (await log.read(after, limit)).map((e) => ({ ...e, position: e.position + 1 }));
    await expect(firstValueFrom(subscribeFrom(gappy, 0))).rejects.toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/from position 0 to 2/) });
  });
});
