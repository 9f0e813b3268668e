import { defaultTopologyPath, loadTopology, runStress } from '@iommu-orch/orchestrator';
import { PostgresEventStore, SqliteEventStore, verifyChain, type EventStore } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ChildScript } from '../support/child.js';
import { cli } from '../support/cli.js';
import { freshDatabase } from '../support/postgres-server.js';
import { ev } from '../store/contract.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-ship-'));
let url = '';
let source = '';
beforeAll(async () => {
  url = await freshDatabase(inject('pgUrl'), 'ship');
  source = join(dir, 'host.sqlite');
  await runStress({ seed: 7, ops: 150, actors: 3, db: source, topology: loadTopology(defaultTopologyPath()) });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function withStore<T>(open: () => EventStore, fn: (s: EventStore) => Promise<T>): Promise<T> {
  const s = open();
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}
const central = <T>(host: string, fn: (s: EventStore) => Promise<T>) => withStore(() => PostgresEventStore.open(url, { host, readonly: true }), fn);
const local = <T>(db: string, fn: (s: EventStore) => Promise<T>) => withStore(() => SqliteEventStore.open(db, { readonly: true }), fn);

/** The central copy holds exactly the source's rows (positions, ids, bytes, hashes), and its chain verifies. */
async function expectSameLog(db: string, host: string): Promise<number> {
  const rows = await local(db, async (s) => ({ records: await s.readRecords(0, 1_000_000), logId: await s.logId(), report: await verifyChain(s) }));
  await central(host, async (s) => {
    expect(await s.logId()).toBe(rows.logId);
    expect(await s.readRecords(0, 1_000_000)).toEqual(rows.records);
    expect(await verifyChain(s)).toEqual(rows.report);
  });
  return rows.records.length;
}

const ship = (...args: string[]) => new ChildScript('support/ship-child.ts', ['--db', source, '--to', url, ...args]);
const batchHead = (line: string): number => Number(/central head (\d+)/.exec(line)?.[1] ?? -1);

describe('iommu-orch ship', () => {
  it('copies a log verbatim and its chain verifies centrally; a second run ships nothing', async () => {
    const first = await cli('ship', '--db', source, '--to', url, '--host', 'alpha', '--json');
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const count = await expectSameLog(source, 'alpha');
    expect(JSON.parse(first.out)).toMatchObject({ host: 'alpha', shipped: count, head: count });
    const again = await cli('ship', '--db', source, '--to', url, '--host', 'alpha', '--json');
    expect(JSON.parse(again.out)).toMatchObject({ shipped: 0, head: count, headHash: JSON.parse(first.out).headHash });
  });

  it('a shipper SIGKILLed mid-way and run again leaves no gap and no duplicate', async () => {
    const total = await local(source, (s) => s.head());
    const doomed = ship('--host', 'beta', '--batch', '1');
    const seen = await doomed.line((l) => batchHead(l) >= 40);
    doomed.kill();
    await doomed.exited;
    const killedAt = await central('beta', (s) => s.head());
    expect(killedAt).toBeGreaterThanOrEqual(batchHead(seen));
    expect(killedAt).toBeLessThan(total);
    const rerun = ship('--host', 'beta', '--batch', '7');
    expect(await rerun.line((l) => l.startsWith('exit'))).toBe('exit 0');
    expect(rerun.lines.find((l) => l.startsWith('beta:'))).toBe(`beta: shipped ${total - killedAt} events; central head ${total}:${(await local(source, (s) => s.readRecords(total - 1, 1)))[0]!.hash}`);
    expect(await expectSameLog(source, 'beta')).toBe(total);
  });

  it('--follow keeps shipping as the host appends, and stops cleanly on SIGTERM', async () => {
    const db = join(dir, 'growing.sqlite');
    const host = SqliteEventStore.open(db);
    await host.append('host', [ev('g1'), ev('g2')], { expectedVersion: 'any', commandId: 'g-1', commandResult: { ok: 1 } });
    const follower = new ChildScript('support/ship-child.ts', ['--db', db, '--to', url, '--host', 'gamma', '--follow']);
    await follower.line((l) => batchHead(l) === 2);
    for (let i = 3; i <= 12; i++) {
      const snapshot = i === 9 ? { snapshot: { format: 'f1', state: '{"at":9}' } } : {};
      await host.append('host', [ev(`g${i}`)], { expectedVersion: i - 1, commandId: `g-${i}`, commandResult: i, ...snapshot });
    }
    await follower.line((l) => batchHead(l) === 12);
    follower.kill('SIGTERM');
    expect(await follower.exited).toBe(0);
    await host.close();
    expect(await expectSameLog(db, 'gamma')).toBe(12);
    // The command records came along: an id the host recorded answers centrally, with its result.
    await central('gamma', async (s) => expect(await s.findCommand('g-7')).toMatchObject({ firstPosition: 7, lastPosition: 7, result: 7 }));
    const snapshot = await local(db, (s) => s.latestSnapshot('host', 12));
    expect(snapshot).toMatchObject({ position: 9, state: '{"at":9}' });
    await central('gamma', async (s) => expect(await s.latestSnapshot('host', 12)).toEqual(snapshot));
  });

  it('stops at an edited row of the source: exit 1 naming the position, the rows before it shipped and verified', async () => {
    const edited = join(dir, 'edited.sqlite');
    copyFileSync(source, edited);
    const db = new Database(edited);
    db.prepare('UPDATE events SET data = ? WHERE position = 30').run('{"forged":true}');
    db.close();
    const r = await cli('ship', '--db', edited, '--to', url, '--host', 'delta', '--batch', '8');
    expect(r.code).toBe(1);
    expect(r.err).toBe('iommu-orch: host delta: the shipped row at position 30 does not match the hash chain: it was edited, moved or inserted');
    // Batches of 8: rows 1..24 committed; the batch holding row 30 wrote nothing.
    await central('delta', async (s) => {
      expect(await verifyChain(s)).toMatchObject({ ok: true, count: 24 });
      expect(await s.readRecords(0, 100)).toEqual(await local(source, (l) => l.readRecords(0, 24)));
    });
  });

  it('refuses a host name that holds another log, and bad input, with one line and exit 2', async () => {
    const other = join(dir, 'other.sqlite');
    const s = SqliteEventStore.open(other, { logId: 'another log' });
    await s.append('host', [ev('o1')], { expectedVersion: 'any' });
    await s.close();
    const clash = await cli('ship', '--db', other, '--to', url, '--host', 'alpha');
    expect(clash.code).toBe(2);
    expect(clash.err).toMatch(/^iommu-orch: host alpha already holds another log/);
    expect((await cli('ship', '--db', other, '--to', 'mysql://x', '--host', 'x')).code).toBe(2);
    expect((await cli('ship', '--db', other, '--to', url, '--host', 'x', '--batch', '0')).code).toBe(2);
    const missing = await cli('ship', '--db', join(dir, 'nope.sqlite'), '--to', url, '--host', 'x');
    expect(missing.code).toBe(2);
    expect(missing.err.split('\n')).toHaveLength(1);
    expect(await PostgresEventStore.hosts(url)).toEqual(['alpha', 'beta', 'delta', 'gamma']);
  });
});
