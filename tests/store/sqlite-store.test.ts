import { SqliteEventStore, StoreError } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ev } from './contract.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = () => join(dir, `s${n++}.sqlite`);

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

describe('SQLite files that cannot be used are refused before anything is written', () => {
  function refusal(f: string, readonly: boolean): unknown {
    try {
      SqliteEventStore.open(f, { readonly });
    } catch (e) {
      return e;
    }
    throw new Error(`${f} opened`);
  }

  it('a truncated log: CORRUPT, for readers and writers, and the file stays byte-identical', async () => {
    const f = file();
    const s = SqliteEventStore.open(f);
    for (let i = 0; i < 40; i++) await s.append('a', [ev(`${i}`, { pad: 'x'.repeat(400) })], { expectedVersion: 'any' });
    await s.close();
    const whole = readFileSync(f);
    expect(whole.length).toBeGreaterThan(4 * 4096);
    writeFileSync(f, whole.subarray(0, 3 * 4096 + 100));
    const before = readFileSync(f);
    for (const readonly of [true, false]) expect(refusal(f, readonly)).toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/truncated/) });
    expect(readFileSync(f).equals(before)).toBe(true);
  });

  it('a file shorter than a SQLite header, and an empty directory path, are not databases', () => {
    const f = file();
    writeFileSync(f, 'SQLite format 3\0');
    expect(refusal(f, false)).toMatchObject({ code: 'NOT_A_DATABASE' });
    expect(readFileSync(f, 'latin1')).toBe('SQLite format 3\0');
    expect(refusal(dir, true)).toMatchObject({ code: 'NOT_A_DATABASE' });
  });

  it('a read-only connection refuses appends with READ_ONLY', async () => {
    const f = file();
    await SqliteEventStore.open(f).close();
    const r = SqliteEventStore.open(f, { readonly: true });
    await expect(r.append('a', [ev('1')], { expectedVersion: 'any' })).rejects.toMatchObject({ code: 'READ_ONLY' });
    await r.close();
  });

  it('a new log gets a log id (or the one given) and schema 2 in one step', async () => {
    const f = file();
    const s = SqliteEventStore.open(f, { logId: 'log-under-test' });
    expect(await s.logId()).toBe('log-under-test');
    expect(s.schemaVersion).toBe(2);
    await s.close();
    // Reopening keeps the id; a logId option only applies to a new file.
    const again = SqliteEventStore.open(f, { logId: 'other' });
    expect(await again.logId()).toBe('log-under-test');
    await again.close();
  });
});
