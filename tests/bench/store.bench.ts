/**
 * Event store throughput (`pnpm bench store`), each figure against a baseline measured in the same run:
 * - append: commands of 1, 10 and 100 events through SqliteEventStore.append (expected version, command
 *   id, hash chain, WAL + synchronous=FULL) vs a raw better-sqlite3 loop inserting the same rows in
 *   transactions of the same size into a plain table with the same durability;
 * - replay: events/s folded into state by replay() vs a raw paged SELECT + JSON.parse of the same rows,
 *   and its two halves: the store's read path as replay reads it (readFold) and the fold alone;
 * - chain verification vs the same raw read;
 * - the same append and replay workloads on @event-driven-io/emmett-sqlite 0.42.4, when its comparison
 *   install exists (`pnpm --dir tests/bench/emmett install`; sqlite3 compiles from source, ~90 s).
 */
import { EVENT_SCHEMA_VERSION, evolve, initialState, toHex, withTransientTables, type IommuEvent, type State } from '@iommu-orch/core';
import { replay, snapshotOf, toDomainEvent } from '@iommu-orch/orchestrator';
import { SqliteEventStore, verifyChain, type NewEvent } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { measureTogether, report } from './harness.js';
import { eventsOf, replayWorkloads } from './workloads.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-bench-store-'));
let files = 0;
const fresh = (): string => join(dir, `b${files++}.sqlite`);
const ROUNDS = 3;

/** A command's worth of events shaped like the orchestrator's (TcesMapped payloads, shared metadata). */
function command(size: number, first: number): NewEvent[] {
  const metadata = { time: new Date(Date.UTC(2026, 0, 1) + first * 1000).toISOString(), commandId: `cmd-${first}`, commandType: 'mapPages' };
  return Array.from({ length: size }, (_, k) => {
    const i = first + k;
    return {
      eventId: `host:${i + 1}`,
      type: 'TcesMapped',
      schemaVersion: EVENT_SCHEMA_VERSION,
      data: { domain: 1, iova: toHex(BigInt(i) << 12n), paddr: toHex(0x4000_0000n + (BigInt(i) << 12n)), pgsize: '0x1000', pgcount: 1, perm: 'rw' },
      metadata,
    };
  });
}

// ---------------------------------------------------------------- append

async function appendOurs(size: number, total: number): Promise<number> {
  const store = SqliteEventStore.open(fresh());
  for (let v = 0; v < total; v += size) {
    await store.append('host', command(size, v), { expectedVersion: v, commandId: `cmd-${v}`, commandResult: { mapped: 4096 * size } });
  }
  await store.close();
  return total;
}

const RAW_TABLE = `CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, stream_version INTEGER NOT NULL,
  event_id TEXT NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL)`;

function appendRaw(size: number, total: number): number {
  const db = new Database(fresh());
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(RAW_TABLE);
  const insert = db.prepare('INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const txn = db.transaction((events: NewEvent[], first: number) => {
    events.forEach((e, k) => insert.run(first + k, 'host', first + k, e.eventId, e.type, e.schemaVersion, JSON.stringify(e.data), JSON.stringify(e.metadata)));
  });
  for (let v = 0; v < total; v += size) txn(command(size, v), v + 1);
  db.close();
  return total;
}

// ---------------------------------------------------------------- emmett (optional)

interface EmmettStore {
  appendToStream(stream: string, events: { type: string; data: unknown; metadata?: unknown }[], options: { expectedStreamVersion: bigint }): Promise<{ nextExpectedStreamVersion: bigint }>;
  aggregateStream<S>(stream: string, options: { evolve: (s: S, e: { type: string; data: unknown }) => S; initialState: () => S }): Promise<{ state: S }>;
}
interface EmmettConnection {
  close(): void;
  query(sql: string): Promise<unknown>;
}
interface Emmett {
  sqliteConnection(options: { fileName: string }): EmmettConnection;
  getSQLiteEventStore(options: { fileName: string; connectionOptions: { singleton: true; connection: EmmettConnection } }): EmmettStore;
}

function loadEmmett(): Emmett | string {
  const require = createRequire(fileURLToPath(new URL('./emmett/package.json', import.meta.url)));
  try {
    return require('@event-driven-io/emmett-sqlite') as Emmett;
  } catch (e) {
    return (e as Error).message.split('\n')[0]!;
  }
}

/**
 * One reused connection (its default opens one per operation and hits SQLITE_BUSY); FULL sync is
 * node-sqlite3's default. The connection fires `PRAGMA journal_mode = WAL` without awaiting it, and a
 * first COMMIT racing that statement fails with "SQLITE_BUSY: cannot commit transaction - SQL
 * statements in progress": an awaited query first lets it finish.
 */
async function withEmmett<T>(emmett: Emmett, file: string, fn: (store: EmmettStore) => Promise<T>): Promise<T> {
  const connection = emmett.sqliteConnection({ fileName: file });
  await connection.query('SELECT 1');
  try {
    return await fn(emmett.getSQLiteEventStore({ fileName: file, connectionOptions: { singleton: true, connection } }));
  } finally {
    connection.close();
    // close() returns before node-sqlite3 has checkpointed and removed the WAL on its thread pool; that
    // I/O would land in the next measurement (often ours), so wait for it.
    for (let i = 0; i < 500 && existsSync(`${file}-wal`); i++) await sleep(10);
  }
}

async function appendEmmett(emmett: Emmett, size: number, total: number): Promise<number> {
  return withEmmett(emmett, fresh(), async (store) => {
    let version = 0n;
    for (let v = 0; v < total; v += size) {
      const events = command(size, v).map((e) => ({ type: e.type, data: e.data, metadata: { ...e.metadata } }));
      version = (await store.appendToStream('host-1', events, { expectedStreamVersion: version })).nextExpectedStreamVersion;
    }
    return total;
  });
}

// ---------------------------------------------------------------- replay

function rawRead(file: string): number {
  const db = new Database(file, { readonly: true });
  const page = db.prepare<[number], { position: number; data: string; metadata: string }>('SELECT position, data, metadata FROM events WHERE position > ? ORDER BY position LIMIT 1000');
  let n = 0;
  for (let after = 0; ; ) {
    const rows = page.all(after);
    for (const r of rows) {
      JSON.parse(r.data);
      JSON.parse(r.metadata);
      n++;
    }
    if (rows.length < 1000) break;
    after = rows[rows.length - 1]!.position;
  }
  db.close();
  return n;
}

// ---------------------------------------------------------------- run

const results: boolean[] = [];
const line = (ok: boolean): void => void results.push(ok);
const emmett = loadEmmett();
if (typeof emmett === 'string') console.log(`emmett-sqlite: not installed (${emmett}); run \`pnpm --dir tests/bench/emmett install\` to compare`);

console.log('append (WAL, synchronous=FULL; events/s)');
for (const [size, total] of [[1, 2000], [10, 10000], [100, 40000]] as const) {
  const runs = [() => appendOurs(size, total), () => appendRaw(size, total)];
  if (typeof emmett !== 'string') runs.push(() => appendEmmett(emmett, size, total));
  const [ours, raw, theirs] = await measureTogether(runs, ROUNDS);
  line(report(`  ${size} event(s)/command: store vs raw insert loop`, ours!, raw!, { atLeast: 0.5 }, 'ev/s'));
  if (theirs) line(report(`  ${size} event(s)/command: store vs emmett-sqlite`, ours!, theirs, { atLeast: 1 }, 'ev/s'));
}

const fold = (state: State, e: { type: string; data: unknown }): State => evolve(state, e as IommuEvent);
for (const [name, commands] of replayWorkloads()) {
  const events = eventsOf(commands);
  const logFile = fresh();
  const store = SqliteEventStore.open(logFile);
  // Appended 1000 at a time, each batch with a snapshot of the state after it, as snapshotEvery: 1000 does.
  let folded = initialState;
  for (let i = 0; i < events.length; i += 1000) {
    const batch = events.slice(i, i + 1000);
    folded = batch.reduce((st, e) => evolve(st, e as unknown as IommuEvent), folded);
    await store.append('host', batch, { expectedVersion: i, snapshot: snapshotOf(folded) });
  }
  const domainEvents = (await store.read(0, 1e6)).map(toDomainEvent);
  const runs = [
    () => rawRead(logFile),
    async () => (await replay(store, { snapshots: false })).state.version,
    async () => {
      const r = await verifyChain(store);
      return r.ok ? r.count : 0;
    },
    // The two halves of replay: the store's read path as replay reads it (readFold pages, JSON.parse of
    // the payloads, toDomainEvent; the metadata stays text) and the fold alone.
    async () => {
      let n = 0;
      for (let page = await store.readFold(0, 1000); page.length > 0; page = await store.readFold(page[page.length - 1]!.position, 1000)) {
        for (const e of page) toDomainEvent(e);
        n += page.length;
      }
      return n;
    },
    // In pages of 1000 inside one transient scope each, as replay folds (the persistent reduce would
    // leave ~80 MB of discarded leaf copies per round for the next runs' garbage collector).
    () => {
      let state = initialState;
      for (let i = 0; i < domainEvents.length; i += 1000) {
        const page = domainEvents.slice(i, i + 1000);
        state = withTransientTables(() => page.reduce(evolve, state));
      }
      return state.version;
    },
    // The full rows (event ids, versions, metadata parsed) that subscriptions and audits read.
    async () => {
      let n = 0;
      for (let page = await store.read(0, 1000); page.length > 0; page = await store.read(page[page.length - 1]!.position, 1000)) n += page.length;
      return n;
    },
    // What opening the log costs in practice: the newest snapshot plus the tail (rate over the whole log).
    async () => (await replay(store)).state.version,
  ];
  if (typeof emmett !== 'string') {
    const emmettFile = fresh();
    await withEmmett(emmett, emmettFile, async (s) => {
      for (let i = 0; i < events.length; i += 1000) {
        const batch = events.slice(i, i + 1000).map((e) => ({ type: e.type, data: e.data, metadata: { ...e.metadata } }));
        await s.appendToStream('host-1', batch, { expectedStreamVersion: BigInt(i) });
      }
    });
    runs.push(() => withEmmett(emmett, emmettFile, async (s) => (await s.aggregateStream<State>('host-1', { evolve: fold, initialState: () => initialState })).state.version));
  }
  console.log(`replay, ${name} (${events.length} events; events/s)`);
  const [raw, full, verified, readPath, foldOnly, fullRows, fromSnapshot, theirs] = await measureTogether(runs, ROUNDS);
  line(report('  replay into state vs raw SELECT + JSON.parse', full!, raw!, { atLeast: 0.5 }, 'ev/s'));
  line(report('    of which the store read path (readFold, parse, upcast) vs raw', readPath!, raw!, { atLeast: 0.9 }, 'ev/s'));
  console.log(`    (store.read, full rows with parsed metadata, as subscriptions and audits read: ${Math.round(fullRows!.perSecond / 1000)}k ev/s = ${(fullRows!.perSecond / raw!.perSecond).toFixed(2)}x raw)`);
  console.log(`    of which the fold alone (core evolve, no I/O): ${Math.round(foldOnly!.perSecond / 1000)}k ev/s = ${(foldOnly!.perSecond / raw!.perSecond).toFixed(2)}x raw`);
  const ms = (m: { perSecond: number }): string => ((events.length / m.perSecond) * 1000).toFixed(1);
  console.log(`  opening the log from the newest snapshot (one per 1000 events): ${ms(fromSnapshot!)} ms, against ${ms(full!)} ms for the full fold`);
  line(report('  hash chain verification vs raw SELECT + JSON.parse', verified!, raw!, { atLeast: 0.25 }, 'ev/s'));
  if (theirs) line(report('  replay into state: store vs emmett-sqlite aggregateStream', full!, theirs, { atLeast: 1 }, 'ev/s'));
  await store.close();
}

rmSync(dir, { recursive: true, force: true });
console.log(`${results.filter(Boolean).length}/${results.length} targets met`);
