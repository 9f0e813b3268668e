import { canonicalState, encodeState } from '@iommu-orch/core';
import { auditLog, logicalClock, Orchestrator, replay, SNAPSHOT_FORMAT_ID } from '@iommu-orch/orchestrator';
import { MemoryEventStore, sha256Hex, SqliteEventStore } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bootCommands, commandsArb } from '../support/arbitraries.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-snap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A log of the boot commands plus a mapping flow, snapshotted every 5 events. */
async function snapshottedLog(): Promise<{ file: string; head: number; live: string }> {
  const file = join(dir, `snap${n++}.sqlite`);
  const store = SqliteEventStore.open(file);
  const orch = await Orchestrator.open(store, { clock: logicalClock(), snapshotEvery: 5 });
  for (const c of bootCommands) await orch.executeOrThrow(c);
  await orch.executeOrThrow({ type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
  await orch.executeOrThrow({ type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.1' });
  await orch.executeOrThrow({ type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 12 });
  await orch.executeOrThrow({ type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' });
  for (let i = 0; i < 12; i++) {
    await orch.executeOrThrow({ type: 'mapPages', context: 'vm1', domain: 1, iova: BigInt(i) << 20n, paddr: 0x4000_0000n, pgsize: 0x1000n, pgcount: 8, prot: { read: true, write: i % 2 === 0 } });
  }
  const head = await store.head();
  await store.close();
  return { file, head, live: canonicalState(orch.state) };
}

function snapshotPositions(file: string): number[] {
  const db = new Database(file, { readonly: true });
  const rows = db.prepare('SELECT position FROM snapshots ORDER BY position').pluck().all() as number[];
  db.close();
  return rows;
}

function sql(file: string, statement: string, ...params: unknown[]): void {
  const db = new Database(file);
  db.prepare(statement).run(...params);
  db.close();
}

describe('snapshots', () => {
  it('snapshot replay and full replay give byte-identical canonical state, at every position (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(commandsArb, fc.integer({ min: 1, max: 9 }), async (commands, every) => {
        const store = new MemoryEventStore();
        const orch = await Orchestrator.open(store, { clock: logicalClock(), snapshotEvery: every });
        for (const c of [...bootCommands, ...commands]) await orch.execute(c);
        const head = await store.head();
        const fromSnapshot = await replay(store);
        const full = await replay(store, { snapshots: false });
        expect(canonicalState(fromSnapshot.state)).toBe(canonicalState(full.state));
        expect(encodeState(fromSnapshot.state)).toBe(encodeState(full.state));
        expect(canonicalState(fromSnapshot.state)).toBe(canonicalState(orch.state));
        // The newest snapshot ends the command that crossed the last multiple of `every` (one stream: position = version).
        expect(fromSnapshot.from).toBeGreaterThanOrEqual(Math.floor(head / every) * every);
        expect(fromSnapshot.from).toBeLessThanOrEqual(head);
        for (let at = 0; at <= head; at++) {
          expect(canonicalState((await replay(store, { at })).state)).toBe(canonicalState((await replay(store, { at, snapshots: false })).state));
        }
        // Reopening starts from the snapshot and ends in the same state.
        expect(canonicalState((await Orchestrator.open(store)).state)).toBe(canonicalState(orch.state));
      }),
      { numRuns: 40 },
    );
  });

  it('writes one snapshot each time the stream version crosses a multiple of N, in the append transaction', async () => {
    const { file, head, live } = await snapshottedLog();
    const positions = snapshotPositions(file);
    expect(positions.length).toBe(Math.floor(head / 5));
    const store = SqliteEventStore.open(file, { readonly: true });
    const r = await replay(store);
    expect(r.from).toBe(positions[positions.length - 1]);
    expect(r.rejectedSnapshots).toEqual([]);
    expect(canonicalState(r.state)).toBe(live);
    expect((await auditLog(store)).snapshots).toEqual({ matched: positions.length, foreign: 0, bad: [] });
    await store.close();
  });

  it('a corrupted snapshot fails its hash check and is skipped: replay falls back to an older one', async () => {
    const { file, live } = await snapshottedLog();
    const positions = snapshotPositions(file);
    const newest = positions[positions.length - 1]!;
    sql(file, "UPDATE snapshots SET state = replace(state, '\"valid\":', '\"valid\":1') WHERE position = ?", newest);
    const store = SqliteEventStore.open(file, { readonly: true });
    const r = await replay(store);
    expect(r.rejectedSnapshots).toEqual([{ position: newest, reason: expect.stringMatching(/does not match its hash/) }]);
    expect(r.from).toBe(positions[positions.length - 2]);
    expect(canonicalState(r.state)).toBe(live);
    expect((await auditLog(store)).ok).toBe(false);
    await store.close();
  });

  it('a forged snapshot with a recomputed hash is caught by audit verify against a full replay', async () => {
    const { file } = await snapshottedLog();
    const positions = snapshotPositions(file);
    const target = positions[positions.length - 1]!;
    const db = new Database(file);
    const state = (db.prepare('SELECT state FROM snapshots WHERE position = ?').pluck().get(target) as string).replace('"owner":"vm1"', '"owner":"vm2"');
    expect(state).toContain('"owner":"vm2"');
    db.prepare('UPDATE snapshots SET state = ?, state_hash = ? WHERE position = ?').run(state, Buffer.from(sha256Hex(state), 'hex'), target);
    db.close();
    const store = SqliteEventStore.open(file, { readonly: true });
    const report = await auditLog(store);
    expect(report.ok).toBe(false);
    expect(report.chain.ok).toBe(true);
    expect(report.snapshots?.bad).toEqual([{ position: target, reason: expect.stringMatching(/differs from a full replay/) }]);
    expect(report.snapshots?.matched).toBe(positions.length - 1);
    await store.close();
  });

  it('a snapshot from another format, or carried onto a different log, is never used', async () => {
    const { file, live } = await snapshottedLog();
    const positions = snapshotPositions(file);
    const [a, b] = positions.slice(-2) as [number, number];
    sql(file, "UPDATE snapshots SET format = 'other-build' WHERE position = ?", b);
    sql(file, 'UPDATE snapshots SET log_hash = zeroblob(32) WHERE position = ?', a);
    const store = SqliteEventStore.open(file, { readonly: true });
    const r = await replay(store);
    expect(r.rejectedSnapshots).toEqual([
      { position: b, reason: expect.stringMatching(/another snapshot format/) },
      { position: a, reason: expect.stringMatching(/not the log it was taken from/) },
    ]);
    expect(r.from).toBe(positions[positions.length - 3]);
    expect(canonicalState(r.state)).toBe(live);
    expect(SNAPSHOT_FORMAT_ID).toMatch(/^[0-9a-f]{64}$/);
    const audit = await auditLog(store);
    expect(audit.snapshots).toMatchObject({ foreign: 1, bad: [{ position: a }] });
    await store.close();
  });
});
