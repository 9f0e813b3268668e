import { demoScenarioPath } from '@iommu-orch/orchestrator';
import { SqliteEventStore } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, spawnCli } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
let demo = '';
let head = 0;

beforeAll(async () => {
  demo = join(dir, 'demo.sqlite');
  expect((await cli('run', demoScenarioPath(), '--db', demo)).code).toBe(0);
  const s = SqliteEventStore.open(demo, { readonly: true });
  head = await s.head();
  await s.close();
});

/** A copy of the demo log with `edit` applied through plain SQL, as someone holding the file could. */
function tamperedCopy(edit: (db: Database.Database) => void): string {
  const f = join(dir, `t${n++}.sqlite`);
  copyFileSync(demo, f);
  const db = new Database(f);
  edit(db);
  db.close();
  return f;
}

async function verifyJson(f: string): Promise<{ code: number; report: Record<string, unknown> }> {
  const r = await cli('audit', 'verify', '--db', f, '--json');
  return { code: r.code, report: JSON.parse(r.out) as Record<string, unknown> };
}

describe('iommu-orch audit verify', () => {
  it('prints the event count and head hash of an intact log and exits 0', async () => {
    const r = await cli('audit', 'verify', '--db', demo);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`^${head} events verify \\(log scenario demo\\)\\nhead ${head}:[0-9a-f]{64}\\nsnapshots: 0 equal a full replay$`));
    const { report } = await verifyJson(demo);
    expect(report).toMatchObject({ ok: true, count: head, head: expect.stringMatching(/^[0-9a-f]{64}$/), snapshots: { matched: 0, foreign: 0, bad: [] } });
    // The printed head is what a later verify can be held to.
    const published = /head (\d+:[0-9a-f]{64})/.exec(r.out)![1]!;
    expect((await cli('audit', 'verify', '--db', demo, '--expect', published)).code).toBe(0);
  });

  it('the same scenario run twice gives byte-identical files, hash chain included', async () => {
    const again = join(dir, 'demo-again.sqlite');
    expect((await cli('run', demoScenarioPath(), '--db', again)).code).toBe(0);
    expect(readFileSync(again).equals(readFileSync(demo))).toBe(true);
  });

  const cases: [string, (db: Database.Database) => void, number | 'after head', RegExp][] = [
    ['an edited payload', (db) => db.prepare("UPDATE events SET data = json_set(data, '$.extra', 1) WHERE position = 12").run(), 12, /edited, moved or inserted/],
    ['a deleted row', (db) => db.prepare('DELETE FROM events WHERE position = 9').run(), 9, /position 9 is missing .* deleted/],
    [
      'two swapped rows',
      (db) => {
        db.prepare('UPDATE events SET position = -1 WHERE position = 20').run();
        db.prepare('UPDATE events SET position = 20 WHERE position = 21').run();
        db.prepare('UPDATE events SET position = 21 WHERE position = -1').run();
      },
      20,
      /reordered/,
    ],
    [
      'an inserted row',
      (db) => {
        db.prepare('UPDATE events SET position = position + 1000, stream_version = stream_version + 1000 WHERE position >= 15').run();
        db.prepare('UPDATE events SET position = position - 999, stream_version = stream_version - 999 WHERE position >= 1015').run();
        db.prepare("INSERT INTO events SELECT 15, stream_id, 15, 'forged', type, schema_version, data, metadata, hash FROM events WHERE position = 16").run();
      },
      15,
      /edited, moved or inserted/,
    ],
    ['a row appended with a made-up hash', (db) => db.prepare("INSERT INTO events SELECT position + 1, stream_id, stream_version + 1, 'tail', type, schema_version, data, metadata, zeroblob(32) FROM events ORDER BY position DESC LIMIT 1").run(), 'after head', /edited, moved or inserted/],
  ];

  for (const [what, edit, at, problem] of cases) {
    it(`catches ${what}: names position ${at} and exits 1`, async () => {
      const position = at === 'after head' ? head + 1 : at;
      const f = tamperedCopy(edit);
      const text = await cli('audit', 'verify', '--db', f);
      expect(text.code).toBe(1);
      expect(text.out).toMatch(new RegExp(`^TAMPERED: the log breaks at position ${position} \\(the ${position - 1} events before it verify\\)`));
      expect(text.out).toMatch(problem);
      const { code, report } = await verifyJson(f);
      expect(code).toBe(1);
      expect(report).toMatchObject({ ok: false, firstBadPosition: position, count: position - 1 });
    });
  }

  it('catches a tail cut off after its head was published (--expect), and a wrong --expect is bad input', async () => {
    const published = (await verifyJson(demo)).report;
    const f = tamperedCopy((db) => db.prepare(`DELETE FROM events WHERE position > ${head - 3}`).run());
    // Without the published head a clean cut cannot be told apart from a shorter log...
    expect((await cli('audit', 'verify', '--db', f)).code).toBe(1); // (the streams table still says the longer version)
    const r = await cli('audit', 'verify', '--db', f, '--expect', `${head}:${String(published.head)}`);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/the trusted head is at position \d+, but the log ends at \d+/);
    const bad = await cli('audit', 'verify', '--db', demo, '--expect', 'latest');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--expect wants <position>:<sha256 hex>/);
  });

  it('files that are not a usable log: one line, exit 2, file untouched (in a real process)', () => {
    const notDb = join(dir, 'notes.txt');
    writeFileSync(notDb, 'not a database\n'.repeat(500));
    const truncated = join(dir, 'truncated.sqlite');
    const whole = readFileSync(demo);
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2 / 4096) * 4096 + 512));
    const newer = join(dir, 'newer.sqlite');
    copyFileSync(demo, newer);
    const db = new Database(newer);
    db.pragma('user_version = 99');
    db.close();
    for (const [f, message] of [
      [notDb, /is not a SQLite database/],
      [truncated, /is truncated/],
      [newer, /schema 99; this build reads up to 2/],
      [join(dir, 'missing.sqlite'), /no database file/],
    ] as const) {
      const before = f.endsWith('missing.sqlite') ? null : readFileSync(f);
      for (const args of [['audit', 'verify', '--db', f], ['audit', 'replay', '--db', f], ['run', demoScenarioPath(), '--db', f, '--append']]) {
        if (before === null && args[0] === 'run') continue; // run creates a new log, which is right for a missing file
        const r = spawnCli(...args);
        expect(r.code, `${args.join(' ')}`).toBe(2);
        expect(r.err).toMatch(message);
        expect(r.err.trim().split('\n')).toHaveLength(1);
        expect(r.out).toBe('');
        if (before) expect(readFileSync(f).equals(before)).toBe(true);
      }
    }
  });

  it('exits 1 in a real process when the log was tampered with', () => {
    const f = tamperedCopy((db) => db.prepare('DELETE FROM events WHERE position = 3').run());
    const r = spawnCli('audit', 'verify', '--db', f);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/TAMPERED: the log breaks at position 3/);
  });
});
