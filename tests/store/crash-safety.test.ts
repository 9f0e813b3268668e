import { canonicalState } from '@iommu-orch/core';
import { Orchestrator, replay, subscribeFrom } from '@iommu-orch/orchestrator';
import { MemoryEventStore, SqliteEventStore, verifyChain, type StoredEvent } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { ChildScript } from '../support/child.js';
import { commandId, indexClock, writerCommands } from '../support/log-writer-commands.js';
import { seededRandom } from '../support/workload.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KILLS = 20;
const COMMANDS = 1500;

/** The kill delays come from a printed seed, so a failing run can be repeated. */
const prng = seededRandom;

/** The log an uninterrupted run of the same commands writes, and the state after each accepted command. */
async function uninterrupted(seed: number): Promise<{ rows: StoredEvent[]; stateAt: Map<number, string> }> {
  const store = new MemoryEventStore();
  const clock = indexClock();
  const orch = await Orchestrator.open(store, { clock });
  const stateAt = new Map([[0, canonicalState(orch.state)]]);
  const commands = writerCommands(seed, COMMANDS);
  for (let i = 0; i < commands.length; i++) {
    clock.index = i;
    const r = await orch.execute(commands[i], { commandId: commandId('w', i) });
    if (r.ok && r.events.length > 0) stateAt.set(r.events[r.events.length - 1]!.position, canonicalState(orch.state));
  }
  return { rows: await store.read(0, 1e6), stateAt };
}

const writer = (db: string, seed: number) =>
  new ChildScript('support/log-writer.ts', [db, 'w', String(seed), String(COMMANDS), '--snapshot-every', '16']);

describe('crash safety', () => {
  it(`SIGKILLs a writing process ${KILLS} times at random moments: the log stays a verified prefix of the commands`, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const why = `seed ${seed} (rerun with CRASH_SEED=${seed})`;
    const random = prng(seed);
    const expected = await uninterrupted(seed);
    expect(expected.rows.length, why).toBeGreaterThan(200);

    const db = join(dir, `crash-${seed}.sqlite`);
    await SqliteEventStore.open(db).close();
    // A reader in this process follows the log across every kill and restart.
    const reader = SqliteEventStore.open(db, { readonly: true });
    const followed: StoredEvent[] = [];
    let followError: unknown;
    const follow = subscribeFrom(reader, 0, { pageSize: 64, pollMs: 10 }).subscribe({ next: (e) => followed.push(e), error: (e: unknown) => (followError = e) });

    let kills = 0;
    for (; kills < KILLS; kills++) {
      const child = writer(db, seed);
      const ready = await child.line((l) => l.startsWith('ready '));
      const resume = Number(ready.split(' ')[1]);
      await sleep(Math.floor(random() * 40));
      child.kill();
      await child.exited;
      if (child.lines.some((l) => l.startsWith('done '))) break;
      // The command the restart re-sent first was committed before: it must come back as a duplicate.
      const firstOk = child.lines.find((l) => l.startsWith('ok '));
      if (resume > 0 && firstOk) expect(firstOk, why).toMatch(new RegExp(`^ok ${resume - 1} accepted [\\d,]+ dup$`));
      const reported = Math.max(0, ...child.lines.filter((l) => / accepted \d/.test(l)).map((l) => Number(l.split(' ')[3]!.split(',').pop())));

      const store = SqliteEventStore.open(db, { readonly: true });
      const rows = await store.read(0, 1e6);
      expect(rows.length, `${why}: a committed command was lost`).toBeGreaterThanOrEqual(reported);
      expect(expected.stateAt.has(rows.length), `${why}: the log ends inside a command (${rows.length})`).toBe(true);
      expect(rows, why).toEqual(expected.rows.slice(0, rows.length));
      expect((await verifyChain(store)).ok, why).toBe(true);
      expect(canonicalState((await replay(store)).state), why).toBe(expected.stateAt.get(rows.length));
      await store.close();
      const raw = new Database(db, { readonly: true });
      expect(raw.pragma('integrity_check', { simple: true }), why).toBe('ok');
      raw.close();
    }
    expect(kills, `${why}: the writer finished before it could be killed often`).toBeGreaterThanOrEqual(KILLS / 2);

    const last = writer(db, seed);
    expect(await last.exited, last.errors).toBe(0);
    expect(last.lines.at(-1), why).toMatch(/^done 0 /);
    const store = SqliteEventStore.open(db, { readonly: true });
    expect(await store.read(0, 1e6), why).toEqual(expected.rows);
    expect((await verifyChain(store)).ok).toBe(true);
    await store.close();

    for (let waited = 0; followed.length < expected.rows.length && waited < 200 && !followError; waited++) await sleep(25);
    follow.unsubscribe();
    await reader.close();
    expect(followError).toBeUndefined();
    expect(followed, `${why}: the follower missed or repeated events`).toEqual(expected.rows);
  });
});
