import { auditHistory, indexedHistory, logicalClock, Orchestrator, type Entity } from '@iommu-orch/orchestrator';
import { SqliteEventStore } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';
import { runWorkload, WORKLOAD_CONTEXTS, WORKLOAD_ENDPOINTS, type WorkloadStep } from '../support/workload.js';

/**
 * The sidecar history index gives exactly the answers of the one-pass history: built in several chunks,
 * extended after the log grew, shared by two auditors building it at once, and rebuilt when it belongs to
 * another log.
 */
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-index-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const db = join(dir, 'log.sqlite');
let steps: WorkloadStep[];

async function grow(file: string, seed: number, commands: number): Promise<WorkloadStep[]> {
  const store = SqliteEventStore.open(file);
  try {
    const head = await store.head();
    const orch = await Orchestrator.open(store, { clock: logicalClock(new Date(Date.parse('2026-06-01T00:00:00.000Z') + head * 1000).toISOString(), 1000) });
    return await runWorkload(orch, { seed, commands });
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  steps = await grow(db, 5, 800);
});

function entities(): Entity[] {
  const groups = [...new Set(steps.flatMap((s) => (s.command.type === 'addDevice' && typeof s.output?.group === 'number' ? [s.output.group] : [])))];
  return [
    ...WORKLOAD_ENDPOINTS.map((e): Entity => ({ kind: 'device', bdf: e.bdf })),
    { kind: 'device', bdf: '0000:00:00.0' },
    ...groups.slice(0, 12).map((id): Entity => ({ kind: 'group', id })),
    ...WORKLOAD_CONTEXTS.map((name): Entity => ({ kind: 'context', name })),
  ];
}

async function withStore<T>(file: string, fn: (s: SqliteEventStore) => Promise<T>): Promise<T> {
  const store = SqliteEventStore.open(file, { readonly: true });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

describe('history from the sidecar index', () => {
  it('equals the one-pass history for every entity, at the head and at earlier positions and times', async () => {
    const index = join(dir, 'chunks.idx');
    await withStore(db, async (store) => {
      const head = await store.head();
      const times = steps.filter((s) => s.time).map((s) => s.time!);
      const bounds = [undefined, { position: 1 }, { position: Math.floor(head / 3) }, { position: head - 1 }, { time: times[Math.floor(times.length / 2)]! }, { time: '2020-01-01T00:00:00Z' }];
      let first = true;
      const kinds = [undefined, new Set(['ownership', 'hotplug'] as const), new Set(['mapping'] as const)];
      for (const entity of entities()) {
        for (const [i, to] of bounds.entries()) {
          const only = kinds[i % kinds.length];
          const opts = { ...(to ? { to } : {}), ...(only ? { kinds: only } : {}) };
          // The first call builds the index in chunks of 150 events; the others read it.
          const indexed = await indexedHistory(store, index, entity, { ...opts, chunk: first ? 150 : 50_000 });
          first = false;
          expect(indexed, `${JSON.stringify(entity)} ${JSON.stringify(to)}`).toEqual(await auditHistory(store, entity, opts));
        }
      }
    });
  });

  it('is extended, not rebuilt, after the log grows; and still equals the one-pass history', async () => {
    const file = join(dir, 'grow.sqlite');
    await grow(file, 8, 300);
    const index = join(dir, 'grow.idx');
    const entity: Entity = { kind: 'context', name: 'vm2' };
    await withStore(file, (store) => indexedHistory(store, index, entity, { chunk: 100 }));
    // A marker in the index's meta table: a rebuild empties that table, an extension keeps it.
    const idx = new Database(index);
    idx.prepare("INSERT INTO meta (key, value) VALUES ('marker', 'kept')").run();
    idx.close();
    await grow(file, 9, 300);
    await withStore(file, async (store) => {
      const h = await indexedHistory(store, index, entity);
      expect(h.head).toBe(await store.head());
      expect(h).toEqual(await auditHistory(store, entity));
    });
    const after = new Database(index, { readonly: true });
    expect(after.prepare("SELECT value FROM meta WHERE key = 'marker'").get()).toEqual({ value: 'kept' });
    after.close();
  });

  it('two auditors building one index at once both answer right', async () => {
    const index = join(dir, 'shared.idx');
    const [a, b]: Entity[] = [{ kind: 'device', bdf: '0000:02:00.0' }, { kind: 'context', name: 'vm1' }];
    const [ha, hb] = await Promise.all([
      withStore(db, (store) => indexedHistory(store, index, a!, { chunk: 120 })),
      withStore(db, (store) => indexedHistory(store, index, b!, { chunk: 90 })),
    ]);
    await withStore(db, async (store) => {
      expect(ha).toEqual(await auditHistory(store, a!));
      expect(hb).toEqual(await auditHistory(store, b!));
      expect(await indexedHistory(store, index, a!)).toEqual(ha);
    });
  });

  it('an index built from another log is rebuilt for this one', async () => {
    const other = join(dir, 'other.sqlite');
    await grow(other, 77, 200);
    const index = join(dir, 'moved.idx');
    const entity: Entity = { kind: 'device', bdf: '0000:01:00.0' };
    await withStore(other, (store) => indexedHistory(store, index, entity));
    const idx = new Database(index);
    idx.prepare("INSERT INTO meta (key, value) VALUES ('marker', 'other log')").run();
    idx.close();
    await withStore(db, async (store) => expect(await indexedHistory(store, index, entity)).toEqual(await auditHistory(store, entity)));
    const after = new Database(index, { readonly: true });
    expect(after.prepare("SELECT value FROM meta WHERE key = 'marker'").get()).toBeUndefined();
    after.close();
  });
});

describe('an index of an older format', () => {
  it('is dropped and re-created, and answers right', async () => {
    const index = join(dir, 'old-format.idx');
    const entity: Entity = { kind: 'context', name: 'vm3' };
    await withStore(db, (store) => indexedHistory(store, index, entity));
    const idx = new Database(index);
    idx.prepare("UPDATE meta SET value = '0' WHERE key = 'format'").run();
    idx.exec('ALTER TABLE commands RENAME TO commands_v0');
    idx.exec('CREATE TABLE commands (first INTEGER PRIMARY KEY)');
    idx.close();
    await withStore(db, async (store) => expect(await indexedHistory(store, index, entity)).toEqual(await auditHistory(store, entity)));
    const after = new Database(index, { readonly: true });
    expect(after.prepare("SELECT name FROM sqlite_master WHERE name = 'commands_v0'").get()).toBeUndefined();
    after.close();
  });
});

describe('audit history --index on the command line', () => {
  it('prints what the one-pass history prints, and leaves the log untouched', async () => {
    const hash = createHash('sha256').update(readFileSync(db)).digest('hex');
    const index = join(dir, 'cli.idx');
    for (const argv of [['--device', '0001:01:00.1'], ['--context', 'vm3', '--kind', 'ownership,hotplug'], ['--group', '3', '--at', '200']]) {
      const plain = await cli('audit', 'history', '--db', db, ...argv);
      const indexed = await cli('audit', 'history', '--db', db, '--index', index, ...argv);
      expect(indexed.code).toBe(0);
      expect(indexed.out).toBe(plain.out);
    }
    expect(createHash('sha256').update(readFileSync(db)).digest('hex')).toBe(hash);
  });

  it('refuses an index path that is the log, or a file that is not an index', async () => {
    for (const target of [db, `${db}-wal`]) {
      const r = await cli('audit', 'history', '--db', db, '--device', '0000:01:00.0', '--index', target);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--index .* would overwrite the audited log/);
    }
    const junk = join(dir, 'junk.idx');
    writeFileSync(junk, 'not an index'.repeat(400));
    const r = await cli('audit', 'history', '--db', db, '--device', '0000:01:00.0', '--index', junk);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).toMatch(/cannot use .*junk\.idx as a history index: it is not a SQLite database/);
    // Another SQLite file (here another event log) is not taken over as an index.
    const other = join(dir, 'other-log.sqlite');
    await grow(other, 3, 20);
    const before = createHash('sha256').update(readFileSync(other)).digest('hex');
    const o = await cli('audit', 'history', '--db', db, '--device', '0000:01:00.0', '--index', other);
    expect(o.code).toBe(2);
    expect(o.err).toMatch(/other-log\.sqlite is a SQLite database but not a history index/);
    expect(createHash('sha256').update(readFileSync(other)).digest('hex')).toBe(before);
    const k = await cli('audit', 'history', '--db', db, '--device', '0000:01:00.0', '--kind', 'mappings');
    expect(k.code).toBe(2);
    expect(k.err).toMatch(/--kind wants kinds among/);
  });
});
