import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { checkExpectedVersion, StoreError } from './errors.js';
import type {
  AppendOptions, AppendResult, CommandRecord, EventMetadata, EventRecord, EventStore, FoldRow, NewEvent, Snapshot, StoredEvent,
} from './event-store.js';
import { jsonText, parseMetadata } from './event-store.js';
import { chainHash, genesisHash, sha256Hex } from './hash-chain.js';

/**
 * PostgreSQL event store on the `pg` driver: many host logs in one database, each keyed by its host
 * name, each with the same invariants as the SQLite engine (it runs the same contract suite).
 * - Every append (and every import of shipped rows) first takes `SELECT ... FOR UPDATE` on its log's
 *   row in `iommu_orch_logs`, which holds the head position and hash. Writers of one log therefore run
 *   one at a time, positions are assigned under that lock (dense, no sequence gaps, in commit order),
 *   and the command-id check, the expected-version check and the inserts all follow the lock: in READ
 *   COMMITTED each later statement sees what the previous lock holder committed. Logs of different hosts
 *   never wait on each other.
 * - Payloads are stored as `text`, the exact JSON bytes the hash chain covers (jsonb would re-encode them);
 *   the chain is hash-chain.ts, the same code and algorithm as SQLite's.
 * - Every refusal throws inside the transaction, which is rolled back: nothing half-done commits.
 * - A committed append sends `NOTIFY iommu_orch_events, '<host>'` (delivered at commit); `watch()` turns it
 *   into a "look again" hint for catch-up subscriptions, which still read every event from the table.
 */
const NOTIFY_CHANNEL = 'iommu_orch_events';
/** pg_advisory_xact_lock key that serialises schema creation between processes ("IOMU"). */
const SCHEMA_LOCK = 0x494f4d55;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS iommu_orch_logs (
  host      text   PRIMARY KEY,
  log_id    text   NOT NULL,
  head      bigint NOT NULL,
  head_hash text   NOT NULL
);
CREATE TABLE IF NOT EXISTS iommu_orch_events (
  host           text    NOT NULL REFERENCES iommu_orch_logs (host),
  position       bigint  NOT NULL,
  stream_id      text    NOT NULL,
  stream_version bigint  NOT NULL,
  event_id       text    NOT NULL,
  type           text    NOT NULL,
  schema_version integer NOT NULL,
  data           text    NOT NULL,
  metadata       text    NOT NULL,
  hash           bytea   NOT NULL,
  PRIMARY KEY (host, position),
  CONSTRAINT iommu_orch_events_event_id UNIQUE (host, event_id),
  UNIQUE (host, stream_id, stream_version)
);
CREATE TABLE IF NOT EXISTS iommu_orch_streams (
  host      text   NOT NULL,
  stream_id text   NOT NULL,
  version   bigint NOT NULL,
  PRIMARY KEY (host, stream_id)
);
CREATE TABLE IF NOT EXISTS iommu_orch_commands (
  host           text   NOT NULL,
  command_id     text   NOT NULL,
  stream_id      text   NOT NULL,
  first_position bigint NOT NULL,
  last_position  bigint NOT NULL,
  stream_version bigint NOT NULL,
  result         text   NOT NULL,
  PRIMARY KEY (host, command_id)
);
CREATE TABLE IF NOT EXISTS iommu_orch_snapshots (
  host           text   NOT NULL,
  stream_id      text   NOT NULL,
  position       bigint NOT NULL,
  stream_version bigint NOT NULL,
  format         text   NOT NULL,
  state_hash     bytea  NOT NULL,
  log_hash       bytea  NOT NULL,
  state          text   NOT NULL,
  PRIMARY KEY (host, stream_id, position)
);`;

const COLUMNS = 'position, stream_id, stream_version, event_id, type, schema_version, data, metadata';

export interface PostgresStoreOptions {
  /** The host whose log this connection reads and writes. */
  readonly host: string;
  /** Id that a new log's hash chain starts from; a random UUID by default. An existing log keeps its own. */
  readonly logId?: string;
  /** Never creates the schema or the log: a host with no log is NOT_FOUND. */
  readonly readonly?: boolean;
  /** Connections this store may open at once (default 2). */
  readonly maxConnections?: number;
}

/** Rows shipped from another engine, written verbatim (positions, ids, bytes and hashes kept). */
export interface ImportBatch {
  readonly records: readonly EventRecord[];
  /** Commands whose last position is among the records (or before them). */
  readonly commands: readonly CommandRecord[];
  readonly snapshots: readonly Snapshot[];
}

export class PostgresEventStore implements EventStore {
  private readonly pool: pg.Pool;
  private ready: Promise<string> | undefined;
  private listener: pg.Client | undefined;
  private readonly watchers = new Set<() => void>();
  private closed = false;

  private constructor(
    private readonly url: string,
    private readonly options: PostgresStoreOptions,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 2 });
    // An idle pooled connection that the server drops must not crash the process; the next query reconnects.
    this.pool.on('error', () => {});
  }

  /** Opens the log of `options.host` in the database at `url` (connections are made on first use). */
  static open(url: string, options: PostgresStoreOptions): PostgresEventStore {
    if (options.host === '') throw new StoreError('NOT_FOUND', 'a host name is required');
    return new PostgresEventStore(url, options);
  }

  /** Host names that have a log in the database at `url`, sorted. */
  static async hosts(url: string): Promise<string[]> {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      const exists = await client.query<{ t: string | null }>("SELECT to_regclass('iommu_orch_logs')::text AS t");
      if (exists.rows[0]?.t == null) return [];
      return (await client.query<{ host: string }>('SELECT host FROM iommu_orch_logs ORDER BY host')).rows.map((r) => r.host);
    } catch (e) {
      // Not the URL in the message: it may hold a password.
      throw asStoreError(e, 'hosts');
    } finally {
      await client.end().catch(() => {});
    }
  }

  get host(): string {
    return this.options.host;
  }

  async append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> {
    // Encoded before the transaction: a payload JSON cannot hold throws here and nothing starts.
    let metaOf: EventMetadata | undefined;
    let metadata = '';
    const encoded = events.map((e) => {
      if (e.metadata !== metaOf) {
        metaOf = e.metadata;
        metadata = JSON.stringify(e.metadata);
      }
      return { e, data: jsonText(e.data), metadata };
    });
    const commandResult = options.commandId === undefined ? '' : jsonText(options.commandResult ?? null);
    return this.transaction('append', async (c, head, headHash) => {
      // After the lock, so both see what the previous holder committed (READ COMMITTED: a fresh snapshot per statement).
      const before = (await c.query<{ version: string | null; first_position: string | null; last_position: string; stream_version: string }>(
        `SELECT (SELECT version FROM iommu_orch_streams WHERE host = $1 AND stream_id = $2) AS version, c.first_position, c.last_position, c.stream_version
         FROM (SELECT 1) AS one LEFT JOIN iommu_orch_commands c ON c.host = $1 AND c.command_id = $3`,
        [this.host, streamId, options.commandId ?? null],
      )).rows[0]!;
      if (before.first_position !== null) {
        return { firstPosition: Number(before.first_position), lastPosition: Number(before.last_position), nextExpectedVersion: Number(before.stream_version), duplicate: true };
      }
      const actual = Number(before.version ?? 0);
      checkExpectedVersion(streamId, options.expectedVersion, actual);
      let position = head;
      let hash = headHash;
      let version = actual;
      const records: EventRecord[] = encoded.map(({ e, data, metadata: meta }) => {
        const row = { position: ++position, streamId, streamVersion: ++version, eventId: e.eventId, type: e.type, schemaVersion: e.schemaVersion, data, metadata: meta };
        hash = chainHash(hash, row);
        return { ...row, hash };
      });
      const result = { firstPosition: head + 1, lastPosition: position, nextExpectedVersion: version, duplicate: false };
      if (records.length === 0) return result;
      const snapshot = options.snapshot;
      await this.write(c, {
        records,
        versions: new Map([[streamId, version]]),
        commands: options.commandId === undefined ? [] : [{ commandId: options.commandId, streamId, firstPosition: head + 1, lastPosition: position, nextExpectedVersion: version, result: commandResult }],
        snapshots: snapshot ? [{ streamId, position, streamVersion: version, format: snapshot.format, stateHash: sha256Hex(snapshot.state), logHash: hash, state: snapshot.state }] : [],
        imported: false,
      });
      return result;
    });
  }

  /**
   * Writes rows shipped from another engine exactly as they are, checking them as the chain's verifier
   * would: rows at or below the head must be the ones already stored (a shipper that re-sends them, or
   * two shippers racing, add nothing); the rest must continue the positions, the hash chain and every
   * stream's versions. A row that does not is CHAIN_BROKEN and nothing of the batch is written.
   * Returns the head after the batch and how many rows were new.
   */
  async importBatch(batch: ImportBatch): Promise<{ head: number; imported: number }> {
    return this.transaction('import', async (c, head, headHash) => {
      const known = batch.records.filter((r) => r.position <= head);
      if (known.length > 0) {
        const stored = await c.query<{ position: string; hash: Buffer }>(
          'SELECT position, hash FROM iommu_orch_events WHERE host = $1 AND position = ANY($2::bigint[])',
          [this.host, known.map((r) => r.position)],
        );
        const hashes = new Map(stored.rows.map((r) => [Number(r.position), r.hash.toString('hex')]));
        for (const r of known) {
          if (hashes.get(r.position) !== r.hash) throw chainBroken(this.host, r.position, 'differs from the row already stored there: the logs diverged');
        }
      }
      const fresh = batch.records.filter((r) => r.position > head);
      const versions = new Map<string, number>();
      let position = head;
      let hash = headHash;
      for (const r of fresh) {
        if (r.position !== position + 1) throw chainBroken(this.host, position + 1, `is missing (the next row is ${r.position})`);
        if (chainHash(hash, r) !== r.hash) throw chainBroken(this.host, r.position, 'does not match the hash chain: it was edited, moved or inserted');
        const last = versions.get(r.streamId) ?? (await this.versionOf(c, r.streamId));
        if (r.streamVersion !== last + 1) throw chainBroken(this.host, r.position, `takes stream ${r.streamId} from version ${last} to ${r.streamVersion}`);
        versions.set(r.streamId, r.streamVersion);
        position = r.position;
        hash = r.hash;
      }
      const through = position;
      await this.write(c, {
        records: fresh,
        versions,
        commands: batch.commands.filter((x) => x.lastPosition <= through).map((x) => ({ ...x, result: jsonText(x.result) })),
        snapshots: batch.snapshots.filter((x) => x.position <= through),
        imported: true,
      });
      return { head: through, imported: fresh.length };
    });
  }

  async read(after: number, limit: number): Promise<StoredEvent[]> {
    const rows = await this.rows<EventRow>(`SELECT ${COLUMNS} FROM iommu_orch_events WHERE host = $1 AND position > $2 ORDER BY position LIMIT $3`, [this.host, after, limit]);
    let text = '';
    let metadata = undefined as unknown as EventMetadata;
    return rows.map((r): StoredEvent => {
      if (r.metadata !== text) {
        text = r.metadata;
        metadata = parseMetadata(r.metadata);
      }
      return {
        position: Number(r.position), streamId: r.stream_id, streamVersion: Number(r.stream_version), eventId: r.event_id, type: r.type,
        schemaVersion: r.schema_version, data: JSON.parse(r.data) as unknown, metadata,
      };
    });
  }

  async readFold(after: number, limit: number): Promise<FoldRow[]> {
    const rows = await this.rows<Pick<EventRow, 'position' | 'stream_id' | 'type' | 'schema_version' | 'data' | 'metadata'>>(
      'SELECT position, stream_id, type, schema_version, data, metadata FROM iommu_orch_events WHERE host = $1 AND position > $2 ORDER BY position LIMIT $3',
      [this.host, after, limit],
    );
    return rows.map((r) => ({
      position: Number(r.position), streamId: r.stream_id, type: r.type, schemaVersion: r.schema_version, data: JSON.parse(r.data) as unknown, metadataText: r.metadata,
    }));
  }

  async readRecords(after: number, limit: number): Promise<EventRecord[]> {
    const rows = await this.rows<EventRow & { hash: Buffer }>(
      `SELECT ${COLUMNS}, hash FROM iommu_orch_events WHERE host = $1 AND position > $2 ORDER BY position LIMIT $3`, [this.host, after, limit],
    );
    return rows.map((r) => ({
      position: Number(r.position), streamId: r.stream_id, streamVersion: Number(r.stream_version), eventId: r.event_id, type: r.type,
      schemaVersion: r.schema_version, data: r.data, metadata: r.metadata, hash: r.hash.toString('hex'),
    }));
  }

  async head(): Promise<number> {
    const rows = await this.rows<{ head: string }>('SELECT head FROM iommu_orch_logs WHERE host = $1', [this.host]);
    return Number(rows[0]?.head ?? 0);
  }

  async streamVersion(streamId: string): Promise<number> {
    const rows = await this.rows<{ version: string }>('SELECT version FROM iommu_orch_streams WHERE host = $1 AND stream_id = $2', [this.host, streamId]);
    return Number(rows[0]?.version ?? 0);
  }

  async findCommand(commandId: string): Promise<CommandRecord | null> {
    const rows = await this.rows<{ stream_id: string; first_position: string; last_position: string; stream_version: string; result: string }>(
      'SELECT stream_id, first_position, last_position, stream_version, result FROM iommu_orch_commands WHERE host = $1 AND command_id = $2',
      [this.host, commandId],
    );
    const row = rows[0];
    if (!row) return null;
    return {
      commandId, streamId: row.stream_id, firstPosition: Number(row.first_position), lastPosition: Number(row.last_position),
      nextExpectedVersion: Number(row.stream_version), result: JSON.parse(row.result) as unknown,
    };
  }

  async logId(): Promise<string | null> {
    return this.init();
  }

  async latestSnapshot(streamId: string, position: number): Promise<Snapshot | null> {
    const rows = await this.rows<{ position: string; stream_version: string; format: string; state_hash: Buffer; log_hash: Buffer; state: string }>(
      `SELECT position, stream_version, format, state_hash, log_hash, state FROM iommu_orch_snapshots
       WHERE host = $1 AND stream_id = $2 AND position <= $3 ORDER BY position DESC LIMIT 1`,
      [this.host, streamId, position],
    );
    const row = rows[0];
    if (!row) return null;
    return {
      streamId, position: Number(row.position), streamVersion: Number(row.stream_version), format: row.format,
      stateHash: row.state_hash.toString('hex'), logHash: row.log_hash.toString('hex'), state: row.state,
    };
  }

  /**
   * Calls `listener` whenever an append to this host's log commits, from any connection or process
   * (LISTEN/NOTIFY), and once as soon as listening has begun, so that nothing committed before then is
   * waited for. A hint to read again, never a source of events. Returns a function that stops it.
   */
  watch(listener: () => void): () => void {
    this.watchers.add(listener);
    if (!this.listener && !this.closed) {
      const client = new pg.Client({ connectionString: this.url });
      this.listener = client;
      client.on('error', () => {});
      client.on('notification', (n) => {
        if (n.payload === this.host) for (const w of this.watchers) w();
      });
      client
        .connect()
        .then(() => client.query(`LISTEN ${NOTIFY_CHANNEL}`))
        .then(() => {
          for (const w of this.watchers) w();
        })
        .catch(() => {}); // without LISTEN, subscribers fall back on their poll
    } else {
      queueMicrotask(listener);
    }
    return () => {
      this.watchers.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    await Promise.all([this.listener?.end().catch(() => {}), this.pool.end()]);
  }

  /** Creates the schema and this host's log once per store; the log's id. */
  private init(): Promise<string> {
    this.ready ??= this.withClient('open', async (c) => {
      if (this.options.readonly) {
        const row = (await c.query<{ t: string | null }>("SELECT to_regclass('iommu_orch_logs')::text AS t")).rows[0];
        const log = row?.t == null ? undefined : (await c.query<{ log_id: string }>('SELECT log_id FROM iommu_orch_logs WHERE host = $1', [this.host])).rows[0];
        if (!log) throw new StoreError('NOT_FOUND', `no event log for host ${this.host} in the database`);
        return log.log_id;
      }
      const logId = this.options.logId ?? randomUUID();
      await c.query('BEGIN');
      try {
        await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await c.query(SCHEMA);
        await c.query('INSERT INTO iommu_orch_logs (host, log_id, head, head_hash) VALUES ($1, $2, 0, $3) ON CONFLICT (host) DO NOTHING', [this.host, logId, genesisHash(logId)]);
        const row = (await c.query<{ log_id: string }>('SELECT log_id FROM iommu_orch_logs WHERE host = $1', [this.host])).rows[0]!;
        await c.query('COMMIT');
        return row.log_id;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        throw e;
      }
    });
    // A failed open is retried by the next call rather than remembered.
    this.ready.catch(() => (this.ready = undefined));
    return this.ready;
  }

  private async rows<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    await this.init();
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (e) {
      throw asStoreError(e, 'read');
    }
  }

  private async withClient<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError('NOT_FOUND', 'this store is closed');
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (e) {
      throw asStoreError(e, what);
    }
    let broken: Error | undefined;
    try {
      return await fn(c);
    } catch (e) {
      // An error the server did not send (a dropped connection) leaves the client unusable: drop it from the pool.
      if (!StoreError.is(e) && !(e instanceof TypeError) && !(e instanceof pg.DatabaseError)) broken = e instanceof Error ? e : new Error(String(e));
      throw asStoreError(e, what);
    } finally {
      c.release(broken);
    }
  }

  /** Runs `fn` in a transaction holding this log's row lock, with the head as it stands under the lock. */
  private async transaction<T>(what: string, fn: (c: pg.PoolClient, head: number, headHash: string) => Promise<T>): Promise<T> {
    if (this.options.readonly) throw new StoreError('READ_ONLY', 'this log is open read-only');
    await this.init();
    return this.withClient(what, async (c) => {
      await c.query('BEGIN');
      try {
        const log = (await c.query<{ head: string; head_hash: string }>('SELECT head, head_hash FROM iommu_orch_logs WHERE host = $1 FOR UPDATE', [this.host])).rows[0];
        if (!log) throw new StoreError('NOT_FOUND', `no event log for host ${this.host} in the database`);
        const result = await fn(c, Number(log.head), log.head_hash);
        await c.query('COMMIT');
        return result;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        throw e;
      }
    });
  }

  private async versionOf(c: pg.PoolClient, streamId: string): Promise<number> {
    const row = (await c.query<{ version: string }>('SELECT version FROM iommu_orch_streams WHERE host = $1 AND stream_id = $2', [this.host, streamId])).rows[0];
    return Number(row?.version ?? 0);
  }

  /**
   * Writes everything of one append or import in one statement (data-modifying CTEs): the chained rows,
   * the streams' new versions, the log's new head, command records, snapshots, and the NOTIFY. One round
   * trip instead of six; the statement runs under the log lock taken before it.
   */
  private async write(c: pg.PoolClient, w: Write): Promise<void> {
    const { records, commands, snapshots } = w;
    const last = records[records.length - 1];
    if (!last && commands.length === 0 && snapshots.length === 0) return;
    const col = <T, K extends keyof T>(rows: readonly T[], k: K): T[K][] => rows.map((r) => r[k]);
    const ignore = w.imported ? 'ON CONFLICT DO NOTHING' : '';
    await c.query(
      `WITH ev AS (
         INSERT INTO iommu_orch_events (host, ${COLUMNS}, hash)
         SELECT $1, p, s, v, e, t, sv, d, m, decode(h, 'hex')
         FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::int[], $8::text[], $9::text[], $10::text[]) AS u(p, s, v, e, t, sv, d, m, h)
       ), st AS (
         INSERT INTO iommu_orch_streams (host, stream_id, version) SELECT $1, s, v FROM unnest($11::text[], $12::bigint[]) AS u(s, v)
         ON CONFLICT (host, stream_id) DO UPDATE SET version = excluded.version
       ), lg AS (
         UPDATE iommu_orch_logs SET head = $13, head_hash = $14 WHERE host = $1 AND $15
       ), cm AS (
         INSERT INTO iommu_orch_commands (host, command_id, stream_id, first_position, last_position, stream_version, result)
         SELECT $1, * FROM unnest($16::text[], $17::text[], $18::bigint[], $19::bigint[], $20::bigint[], $21::text[]) ${ignore}
       ), sn AS (
         INSERT INTO iommu_orch_snapshots (host, stream_id, position, stream_version, format, state_hash, log_hash, state)
         SELECT $1, s, p, v, f, decode(sh, 'hex'), decode(lh, 'hex'), st
         FROM unnest($22::text[], $23::bigint[], $24::bigint[], $25::text[], $26::text[], $27::text[], $28::text[]) AS u(s, p, v, f, sh, lh, st) ${ignore}
       )
       SELECT pg_notify($29, $1) WHERE $15`,
      [
        this.host,
        col(records, 'position'), col(records, 'streamId'), col(records, 'streamVersion'), col(records, 'eventId'), col(records, 'type'),
        col(records, 'schemaVersion'), col(records, 'data'), col(records, 'metadata'), col(records, 'hash'),
        [...w.versions.keys()], [...w.versions.values()],
        last?.position ?? 0, last?.hash ?? '', last !== undefined,
        col(commands, 'commandId'), col(commands, 'streamId'), col(commands, 'firstPosition'), col(commands, 'lastPosition'),
        col(commands, 'nextExpectedVersion'), col(commands, 'result'),
        col(snapshots, 'streamId'), col(snapshots, 'position'), col(snapshots, 'streamVersion'), col(snapshots, 'format'),
        col(snapshots, 'stateHash'), col(snapshots, 'logHash'), col(snapshots, 'state'),
        NOTIFY_CHANNEL,
      ],
    );
  }
}

/** One append's or import's writes; command results as JSON text. Imported commands and snapshots may be there already. */
interface Write {
  readonly records: readonly EventRecord[];
  readonly versions: ReadonlyMap<string, number>;
  readonly commands: readonly (CommandRecord & { readonly result: string })[];
  readonly snapshots: readonly Snapshot[];
  readonly imported: boolean;
}

interface EventRow {
  position: string;
  stream_id: string;
  stream_version: string;
  event_id: string;
  type: string;
  schema_version: number;
  data: string;
  metadata: string;
}

function chainBroken(host: string, position: number, what: string): StoreError {
  return new StoreError('CHAIN_BROKEN', `host ${host}: the shipped row at position ${position} ${what}`);
}

function asStoreError(e: unknown, what: string): unknown {
  if (StoreError.is(e) || e instanceof TypeError) return e;
  const err = e as { code?: unknown; constraint?: unknown; message?: unknown };
  if (err.code === '23505' && err.constraint === 'iommu_orch_events_event_id') {
    return new StoreError('DUPLICATE_EVENT_ID', `${what}: an event id is already in the log`, { cause: e });
  }
  const message = typeof err.message === 'string' ? err.message : String(e);
  if (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === '3D000' || err.code === '28P01' || err.code === '28000') {
    return new StoreError('NOT_FOUND', `${what}: cannot reach the PostgreSQL database: ${message}`, { cause: e });
  }
  return e;
}
