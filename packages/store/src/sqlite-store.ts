import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { StoreError, WrongExpectedVersionError, type ExpectedVersion } from './errors.js';
import type { AppendOptions, AppendResult, EventMetadata, EventStore, NewEvent, StoredEvent } from './event-store.js';

/**
 * SQLite event store on better-sqlite3.
 * - WAL journal, synchronous=FULL: a committed append survives a crash of the process and the OS.
 * - Appends run in BEGIN IMMEDIATE transactions, so the expected-version check and the insert see the
 *   same snapshot and a second writer waits on the busy timeout instead of failing on upgrade.
 * - Positions are assigned inside the write transaction: dense, no gaps.
 * - Payloads are stored as the exact JSON text that readers parse.
 */
export const SQLITE_SCHEMA_VERSION = 1;
const APP_ID = 0x494f4d55; // "IOMU": marks files written by this store

export interface SqliteStoreOptions {
  /** Open an existing file for reading only; never creates or migrates. */
  readonly readonly?: boolean;
  /** Milliseconds to wait for another writer's lock. */
  readonly busyTimeoutMs?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position       INTEGER PRIMARY KEY,
  stream_id      TEXT    NOT NULL,
  stream_version INTEGER NOT NULL,
  event_id       TEXT    NOT NULL UNIQUE,
  type           TEXT    NOT NULL,
  schema_version INTEGER NOT NULL,
  data           TEXT    NOT NULL,
  metadata       TEXT    NOT NULL,
  UNIQUE (stream_id, stream_version)
);
CREATE TABLE IF NOT EXISTS streams (
  stream_id TEXT PRIMARY KEY,
  version   INTEGER NOT NULL
) WITHOUT ROWID;
`;

export class SqliteEventStore implements EventStore {
  private readonly db: Database.Database;
  private readonly stmts: ReturnType<SqliteEventStore['prepare']>;

  private constructor(db: Database.Database) {
    this.db = db;
    this.stmts = this.prepare();
  }

  static open(file: string, options: SqliteStoreOptions = {}): SqliteEventStore {
    const readonly = options.readonly ?? false;
    if (readonly && file !== ':memory:' && !existsSync(file)) throw new StoreError('NOT_FOUND', `no database file at ${file}`);
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { readonly, fileMustExist: readonly, timeout: options.busyTimeoutMs ?? 5000 });
      checkFile(db, file, readonly);
      if (!readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        db.exec(SCHEMA);
        db.pragma(`application_id = ${APP_ID}`);
        db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION}`);
      }
      return new SqliteEventStore(db);
    } catch (e) {
      db?.close();
      throw asStoreError(e, file);
    }
  }

  private prepare() {
    return {
      streamVersion: this.db.prepare<[string], { version: number }>('SELECT version FROM streams WHERE stream_id = ?'),
      head: this.db.prepare<[], { p: number | null }>('SELECT MAX(position) AS p FROM events'),
      insert: this.db.prepare(
        'INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      upsertStream: this.db.prepare(
        'INSERT INTO streams (stream_id, version) VALUES (?, ?) ON CONFLICT(stream_id) DO UPDATE SET version = excluded.version',
      ),
      read: this.db.prepare<[number, number], EventRow>(
        'SELECT position, stream_id, stream_version, event_id, type, schema_version, data, metadata FROM events WHERE position > ? ORDER BY position LIMIT ?',
      ),
    };
  }

  async append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> {
    return this.appendSync(streamId, events, options);
  }

  /** The synchronous core of append, for callers that own the connection (the stress runner, benches). */
  appendSync(streamId: string, events: readonly NewEvent[], options: AppendOptions): AppendResult {
    const txn = this.db.transaction((): AppendResult => {
      const actual = this.stmts.streamVersion.get(streamId)?.version ?? 0;
      checkExpected(streamId, options.expectedVersion, actual);
      let position = this.stmts.head.get()?.p ?? 0;
      const firstPosition = position + 1;
      let version = actual;
      for (const e of events) {
        position++;
        version++;
        this.stmts.insert.run(position, streamId, version, e.eventId, e.type, e.schemaVersion, JSON.stringify(e.data), JSON.stringify(e.metadata));
      }
      if (events.length > 0) this.stmts.upsertStream.run(streamId, version);
      return { firstPosition, lastPosition: position, nextExpectedVersion: version };
    });
    try {
      return txn.immediate();
    } catch (e) {
      throw asStoreError(e, 'append');
    }
  }

  async read(after: number, limit: number): Promise<StoredEvent[]> {
    return this.readSync(after, limit);
  }

  readSync(after: number, limit: number): StoredEvent[] {
    try {
      return this.stmts.read.all(after, limit).map(toStored);
    } catch (e) {
      throw asStoreError(e, 'read');
    }
  }

  async head(): Promise<number> {
    return this.stmts.head.get()?.p ?? 0;
  }

  async streamVersion(streamId: string): Promise<number> {
    return this.stmts.streamVersion.get(streamId)?.version ?? 0;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

interface EventRow {
  position: number;
  stream_id: string;
  stream_version: number;
  event_id: string;
  type: string;
  schema_version: number;
  data: string;
  metadata: string;
}

function toStored(row: EventRow): StoredEvent {
  return {
    position: row.position,
    streamId: row.stream_id,
    streamVersion: row.stream_version,
    eventId: row.event_id,
    type: row.type,
    schemaVersion: row.schema_version,
    data: JSON.parse(row.data) as unknown,
    metadata: JSON.parse(row.metadata) as EventMetadata,
  };
}

function checkExpected(streamId: string, expected: ExpectedVersion, actual: number): void {
  const ok =
    expected === 'any' ||
    (expected === 'no_stream' && actual === 0) ||
    (expected === 'stream_exists' && actual > 0) ||
    expected === actual;
  if (!ok) throw new WrongExpectedVersionError(streamId, expected, actual);
}

/** Refuses files this store did not write, or wrote with a newer schema, before anything is changed. */
function checkFile(db: Database.Database, file: string, readonly: boolean): void {
  // Reading the header is the first access; a non-database file fails here with SQLITE_NOTADB.
  const appId = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  const tables = db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number };
  if (tables.n === 0 && appId === 0) {
    if (readonly) throw new StoreError('NOT_FOUND', `${file} holds no event log`);
    return; // a new, empty file: ours to initialise
  }
  if (appId !== APP_ID) throw new StoreError('NOT_A_DATABASE', `${file} is a SQLite database, but not an iommu-orch event log`);
  if (version > SQLITE_SCHEMA_VERSION) {
    throw new StoreError('SCHEMA_TOO_NEW', `${file} has event-log schema ${version}; this build reads up to ${SQLITE_SCHEMA_VERSION}`);
  }
}

function asStoreError(e: unknown, what: string): unknown {
  if (StoreError.is(e)) return e;
  const code = (e as { code?: unknown }).code;
  if (code === 'SQLITE_NOTADB') return new StoreError('NOT_A_DATABASE', `${what} is not a SQLite database`, { cause: e });
  if (code === 'SQLITE_CORRUPT') return new StoreError('CORRUPT', `${what}: the database file is corrupt`, { cause: e });
  if (code === 'SQLITE_BUSY') return new StoreError('BUSY', `${what}: the database is locked by another writer`, { cause: e });
  return e;
}
