import { MemoryEventStore, SqliteEventStore, StoreError, WrongExpectedVersionError, type EventStore, type NewEvent } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = () => join(dir, `s${n++}.sqlite`);

function ev(id: string, data: unknown = { x: id }): NewEvent {
  return { eventId: id, type: 'T', schemaVersion: 1, data, metadata: { time: '2026-01-01T00:00:00.000Z', commandId: `c-${id}`, commandType: 't' } };
}

const engines: [string, () => EventStore][] = [
  ['memory', () => new MemoryEventStore()],
  ['sqlite', () => SqliteEventStore.open(file())],
];

describe.each(engines)('event store contract (%s)', (_name, make) => {
  it('assigns dense global positions and per-stream versions', async () => {
    const s = make();
    expect(await s.append('a', [ev('1'), ev('2')], { expectedVersion: 'no_stream' })).toEqual({ firstPosition: 1, lastPosition: 2, nextExpectedVersion: 2 });
    expect(await s.append('b', [ev('3')], { expectedVersion: 0 })).toEqual({ firstPosition: 3, lastPosition: 3, nextExpectedVersion: 1 });
    expect(await s.append('a', [ev('4')], { expectedVersion: 2 })).toEqual({ firstPosition: 4, lastPosition: 4, nextExpectedVersion: 3 });
    const all = await s.read(0, 10);
    expect(all.map((e) => [e.position, e.streamId, e.streamVersion])).toEqual([[1, 'a', 1], [2, 'a', 2], [3, 'b', 1], [4, 'a', 3]]);
    expect(all[0]!.data).toEqual({ x: '1' });
    expect(await s.head()).toBe(4);
    expect(await s.read(2, 1)).toHaveLength(1);
    await s.close();
  });

  it('a wrong expected version names expected and actual and writes nothing', async () => {
    const s = make();
    await s.append('a', [ev('1')], { expectedVersion: 'any' });
    const err = await s.append('a', [ev('2')], { expectedVersion: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongExpectedVersionError);
    expect(err).toMatchObject({ code: 'WRONG_EXPECTED_VERSION', expected: 0, actual: 1 });
    await expect(s.append('a', [ev('2')], { expectedVersion: 'no_stream' })).rejects.toThrow(WrongExpectedVersionError);
    await expect(s.append('z', [ev('2')], { expectedVersion: 'stream_exists' })).rejects.toThrow(WrongExpectedVersionError);
    expect(await s.head()).toBe(1);
    expect(await s.streamVersion('a')).toBe(1);
    // The stream is not wedged: the right version still appends.
    await s.append('a', [ev('2')], { expectedVersion: 1 });
    expect(await s.streamVersion('a')).toBe(2);
    await s.close();
  });

  it('commits all events of an append or none of them', async () => {
    const s = make();
    await s.append('a', [ev('1')], { expectedVersion: 'any' });
    // The duplicate event id fails the second row: the first row of the batch must not stay.
    await expect(s.append('a', [ev('2'), ev('1')], { expectedVersion: 1 })).rejects.toThrow();
    expect(await s.head()).toBe(1);
    expect(await s.streamVersion('a')).toBe(1);
    await s.close();
  });
});

describe('SQLite specifics', () => {
  it('runs in WAL mode with synchronous=FULL', async () => {
    const f = file();
    (await SqliteEventStore.open(f).append('a', [ev('1')], { expectedVersion: 'any' }));
    const db = new Database(f, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('a second connection sees committed events; a read-only open never creates a file', async () => {
    const f = file();
    const w = SqliteEventStore.open(f);
    await w.append('a', [ev('1')], { expectedVersion: 'any' });
    const r = SqliteEventStore.open(f, { readonly: true });
    expect(await r.head()).toBe(1);
    await Promise.all([w.close(), r.close()]);
    expect(() => SqliteEventStore.open(join(dir, 'missing.sqlite'), { readonly: true })).toThrowError(expect.objectContaining({ code: 'NOT_FOUND' }));
  });

  it('refuses a file that is not a database, and leaves it byte-identical', () => {
    const f = file();
    writeFileSync(f, 'this is not sqlite, just some text that must survive\n'.repeat(100));
    const before = readFileSync(f);
    for (const readonly of [true, false]) {
      let err: unknown;
      try {
        SqliteEventStore.open(f, { readonly });
      } catch (e) {
        err = e;
      }
      expect(StoreError.is(err) && err.code).toBe('NOT_A_DATABASE');
    }
    expect(readFileSync(f).equals(before)).toBe(true);
  });

  it('refuses a SQLite database that is not an event log, and one from a newer schema', () => {
    const foreign = file();
    const db = new Database(foreign);
    db.exec('CREATE TABLE t (x)');
    db.close();
    expect(() => SqliteEventStore.open(foreign)).toThrowError(expect.objectContaining({ code: 'NOT_A_DATABASE' }));
    const newer = file();
    SqliteEventStore.open(newer).close();
    const db2 = new Database(newer);
    db2.pragma('user_version = 99');
    db2.close();
    expect(() => SqliteEventStore.open(newer)).toThrowError(expect.objectContaining({ code: 'SCHEMA_TOO_NEW' }));
    expect(() => SqliteEventStore.open(newer, { readonly: true })).toThrowError(expect.objectContaining({ code: 'SCHEMA_TOO_NEW' }));
  });
});
