import { canonicalState } from '@iommu-orch/core';
import { MemoryEventStore, SqliteEventStore, type StoredEvent } from '@iommu-orch/store';
import { InputError, logicalClock, Orchestrator, replay } from '@iommu-orch/orchestrator';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bootCommands } from '../support/arbitraries.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-orch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Orchestrator', () => {
  it('publishes committed events on events$ in log order, and nothing for a refused command', async () => {
    const orch = await Orchestrator.open(new MemoryEventStore(), { clock: logicalClock() });
    const seen: StoredEvent[] = [];
    orch.events$.subscribe((e) => seen.push(e));
    for (const c of bootCommands) await orch.execute(c);
    const count = seen.length;
    const refused = await orch.execute({ type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.error.code).toBe('EPERM');
    expect(seen).toHaveLength(count);
    expect(seen.map((e) => e.position)).toEqual(seen.map((_, i) => i + 1));
    expect(await orch.store.head()).toBe(count);
  });

  it('takes raw JSON commands and refuses malformed ones with InputError before anything runs', async () => {
    const orch = await Orchestrator.open(new MemoryEventStore(), { clock: logicalClock() });
    const r = await orch.execute({ type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' });
    expect(r.ok).toBe(true);
    expect(() => orch.execute({ type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB4', colour: 'red' })).toThrow(InputError);
    expect(() => orch.execute({ type: 'frobnicate' })).toThrow(/unknown command type "frobnicate"/);
    expect(() => orch.execute({ type: 'mapPages', context: 'vm1', domain: 1, iova: '0xzz', paddr: 0, pgsize: 4096, pgcount: 1, prot: 'rw' })).toThrow(/iova/);
    expect(await orch.store.head()).toBe(1);
  });

  it('stamps events from the injected clock and the same inputs give the same log', async () => {
    const run = async () => {
      const store = new MemoryEventStore();
      const orch = await Orchestrator.open(store, { clock: logicalClock('2026-02-01T00:00:00.000Z') });
      for (const c of bootCommands) await orch.execute(c);
      return JSON.stringify(await store.read(0, 1000));
    };
    const a = await run();
    expect(a).toBe(await run());
    expect(a).toContain('"time":"2026-02-01T00:00:01.000Z"');
  });

  it('serialises concurrent execute calls', async () => {
    const orch = await Orchestrator.open(new MemoryEventStore(), { clock: logicalClock() });
    const results = await Promise.all(bootCommands.map((c) => orch.execute(c)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(canonicalState((await replay(orch.store)).state)).toBe(canonicalState(orch.state));
  });

  it('re-decides on fresh state when another writer appended first', async () => {
    const f = join(dir, 'two-writers.sqlite');
    const a = await Orchestrator.open(SqliteEventStore.open(f), { clock: logicalClock() });
    const b = await Orchestrator.open(SqliteEventStore.open(f), { clock: logicalClock() });
    await a.execute(bootCommands[0]!);
    // b has not seen PHB 0: its first decision conflicts, it catches up and decides again.
    const r = await b.execute({ type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('EEXIST');
    const r2 = await b.execute(bootCommands[1]!);
    expect(r2.ok).toBe(true);
    await a.catchUp();
    expect(canonicalState(a.state)).toBe(canonicalState(b.state));
    expect(canonicalState((await replay(a.store)).state)).toBe(canonicalState(a.state));
  });

  it('replays up to a position', async () => {
    const store = new MemoryEventStore();
    const orch = await Orchestrator.open(store, { clock: logicalClock() });
    await orch.execute(bootCommands[0]!);
    const mid = await store.head();
    const snapshot = canonicalState(orch.state);
    for (const c of bootCommands.slice(1)) await orch.execute(c);
    expect(canonicalState((await replay(store, { at: mid })).state)).toBe(snapshot);
  });

  it('a command id executes once: re-sending it appends nothing and returns the first output and events', async () => {
    const store = new MemoryEventStore();
    const orch = await Orchestrator.open(store, { clock: logicalClock() });
    for (const c of bootCommands) await orch.execute(c);
    const claim = { type: 'unbindDriver', bdf: '0001:01:00.0' } as const;
    const first = await orch.execute(claim, { commandId: 'op-1' });
    const head = await store.head();
    const again = await orch.execute(claim, { commandId: 'op-1' });
    expect(again).toEqual({ ...first, duplicate: true });
    expect(await store.head()).toBe(head);
    // Re-deciding would have been refused (the driver is already unbound): the original answer wins.
    expect((await orch.execute(claim)).ok).toBe(false);
    await expect(orch.execute({ type: 'unbindDriver', bdf: '0000:01:00.1' }, { commandId: 'op-1' })).rejects.toThrow(/already used for a different command/);
    // A refused command records nothing, so its id can be used again.
    const refused = await orch.execute(bootCommands[0]!, { commandId: 'op-2' });
    expect(refused.ok).toBe(false);
    expect(await store.findCommand('op-2')).toBeNull();
  });

  it('a command id sent to two writers at once appends once; the second gets the first result', async () => {
    const store = new MemoryEventStore();
    const a = await Orchestrator.open(store, { clock: logicalClock() });
    const b = await Orchestrator.open(store.connect(), { clock: logicalClock() });
    for (const c of bootCommands) await a.execute(c);
    await b.catchUp();
    const unbind = { type: 'unbindDriver', bdf: '0001:01:00.0' } as const;
    const head = await store.head();
    // Both look the id up before either appends; the store settles it inside the append.
    const [ra, rb] = await Promise.all([a.execute(unbind, { commandId: 'op' }), b.execute(unbind, { commandId: 'op' })]);
    expect([ra.ok && ra.duplicate, rb.ok && rb.duplicate]).toEqual([undefined, true]);
    expect(rb).toEqual({ ...ra, duplicate: true });
    expect(await store.head()).toBe(head + (ra.ok ? ra.events.length : 0));
    expect(canonicalState(b.state)).toBe(canonicalState(a.state));
  });
});
