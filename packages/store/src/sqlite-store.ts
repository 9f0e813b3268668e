import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { checkExpectedVersion, StoreError } from './errors.js';
import type {
  AppendOptions, AppendResult, CommandRecord, EventMetadata, EventRecord, EventStore, FoldRow, NewEvent, Snapshot, StoredEvent,
} from './event-store.js';
import { jsonText, parseMetadata } from './event-store.js';
import { chainHash, genesisHash, sha256Hex } from './hash-chain.js';

/**
 * SQLite event store on better-sqlite3.
 * - WAL journal, synchronous=FULL: a committed append survives a crash of the process and the OS.
 * - Appends run in BEGIN IMMEDIATE transactions, so the checks and the inserts see one snapshot and a
 *   second writer (another connection or process) waits on the busy timeout instead of failing on upgrade.
 *   Every refusal throws inside the transaction, which rolls it back: nothing half-done can commit.
 * - Positions are assigned inside the write transaction: dense, no gaps, in commit order.
 * - Payloads are stored as the exact JSON text that readers parse and the hash chain covers.
 * - A file is checked before anything is written to it (header, truncation, owner, schema); a file that
 *   fails is left byte-identical.
 *
 * Schema history: 1 = events and streams; 2 = + hash column, log id, commands, snapshots. A writable
 * open migrates 1 to 2 in one transaction (hashing the existing rows); a read-only open reads 1 as is.
 */
export const SQLITE_SCHEMA_VERSION = 2;
const APP_ID = 0x494f4d55; // "IOMU": marks files written by this store

export interface SqliteStoreOptions {
  /** Open an existing file for reading only; never creates or migrates. */
  readonly readonly?: boolean;
  /** Milliseconds to wait for another writer's lock. */
  readonly busyTimeoutMs?: number;
  /** Id that a new (or migrated) log's hash chain starts from; a random UUID by default. */
  readonly logId?: string;
}

const eventsTable = (name: string): string => `
CREATE TABLE ${name} (
  position       INTEGER PRIMARY KEY,
  stream_id      TEXT    NOT NULL,
  stream_version INTEGER NOT NULL,
  event_id       TEXT    NOT NULL UNIQUE,
  type           TEXT    NOT NULL,
  schema_version INTEGER NOT NULL,
  data           TEXT    NOT NULL,
  metadata       TEXT    NOT NULL,
  hash           BLOB    NOT NULL,
  UNIQUE (stream_id, stream_version)
);`;

/** Every table but events (schema 1 had streams already). */
const SCHEMA_2_TABLES = `
CREATE TABLE IF NOT EXISTS streams (
  stream_id TEXT PRIMARY KEY,
  version   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE log (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE commands (
  command_id     TEXT PRIMARY KEY,
  stream_id      TEXT    NOT NULL,
  first_position INTEGER NOT NULL,
  last_position  INTEGER NOT NULL,
  stream_version INTEGER NOT NULL,
  result         TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE snapshots (
  stream_id      TEXT    NOT NULL,
  position       INTEGER NOT NULL,
  stream_version INTEGER NOT NULL,
  format         TEXT    NOT NULL,
  state_hash     BLOB    NOT NULL,
  log_hash       BLOB    NOT NULL,
  state          TEXT    NOT NULL,
  UNIQUE (stream_id, position)
);`;

const COLUMNS = 'position, stream_id, stream_version, event_id, type, schema_version, data, metadata';

export class SqliteEventStore implements EventStore {
  private readonly stmts: ReturnType<typeof prepare>;
  private readonly genesis: string | null;

  private constructor(
    private readonly db: Database.Database,
    /** The file's schema: SQLITE_SCHEMA_VERSION, or 1 for a legacy file opened read-only. */
    readonly schemaVersion: number,
  ) {
    this.stmts = prepare(db, schemaVersion);
    const logId = this.stmts.logId?.get()?.value;
    this.genesis = logId === undefined ? null : genesisHash(logId);
  }

  static open(file: string, options: SqliteStoreOptions = {}): SqliteEventStore {
    const readonly = options.readonly ?? false;
    if (file !== ':memory:') inspectFile(file, readonly);
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { readonly, fileMustExist: readonly, timeout: options.busyTimeoutMs ?? 5000 });
      let version = checkFile(db, file, readonly);
      if (!readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        version = initialise(db, options.logId ?? randomUUID());
      }
      return new SqliteEventStore(db, version);
    } catch (e) {
      db?.close();
      throw asStoreError(e, file);
    }
  }

  async append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> {
    return this.appendSync(streamId, events, options);
  }

  /** The synchronous core of append, for callers that own the connection (the stress runner, benches). */
  appendSync(streamId: string, events: readonly NewEvent[], options: AppendOptions): AppendResult {
    const s = this.stmts;
    const txn = this.db.transaction((): AppendResult => {
      const genesis = this.genesis;
      if (!s.append || !genesis) throw new StoreError('READ_ONLY', 'this log is open read-only');
      if (options.commandId !== undefined) {
        const prior = s.append.findCommand.get(options.commandId);
        if (prior) return { firstPosition: prior.first_position, lastPosition: prior.last_position, nextExpectedVersion: prior.stream_version, duplicate: true };
      }
      const actual = s.streamVersion.get(streamId)?.version ?? 0;
      checkExpectedVersion(streamId, options.expectedVersion, actual);
      const last = s.append.last.get();
      let position = last?.position ?? 0;
      let hash = last?.hash.toString('hex') ?? genesis;
      const firstPosition = position + 1;
      let version = actual;
      // The orchestrator gives every event of a command the same metadata object: encode it once.
      let metaOf: EventMetadata | undefined;
      let metadata = '';
      for (const e of events) {
        position++;
        version++;
        if (e.metadata !== metaOf) {
          metaOf = e.metadata;
          metadata = JSON.stringify(e.metadata);
        }
        const row = { position, streamId, streamVersion: version, eventId: e.eventId, type: e.type, schemaVersion: e.schemaVersion, data: jsonText(e.data), metadata };
        hash = chainHash(hash, row);
        s.append.insert.run(position, streamId, version, e.eventId, e.type, e.schemaVersion, row.data, metadata, Buffer.from(hash, 'hex'));
      }
      const result = { firstPosition, lastPosition: position, nextExpectedVersion: version, duplicate: false };
      if (events.length === 0) return result;
      s.append.upsertStream.run(streamId, version);
      if (options.commandId !== undefined) {
        s.append.insertCommand.run(options.commandId, streamId, firstPosition, position, version, jsonText(options.commandResult ?? null));
      }
      if (options.snapshot) {
        const { format, state } = options.snapshot;
        s.append.insertSnapshot.run(streamId, position, version, format, Buffer.from(sha256Hex(state), 'hex'), Buffer.from(hash, 'hex'), state);
      }
      return result;
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
    return this.run('read', () => {
      // The events of one command share their metadata text: parse it once and share the (read-only) object.
      let text = '';
      let metadata = undefined as unknown as EventMetadata;
      return this.stmts.read.all(after, limit).map(([position, streamId, streamVersion, eventId, type, schemaVersion, data, meta]): StoredEvent => {
        if (meta !== text) {
          text = meta;
          metadata = parseMetadata(meta);
        }
        return { position, streamId, streamVersion, eventId, type, schemaVersion, data: JSON.parse(data) as unknown, metadata };
      });
    });
  }

  async readFold(after: number, limit: number): Promise<FoldRow[]> {
    return this.run('read', () =>
      this.stmts.readFold.all(after, limit).map(([position, streamId, type, schemaVersion, data, metadataText]): FoldRow => ({
        position, streamId, type, schemaVersion, data: JSON.parse(data) as unknown, metadataText,
      })),
    );
  }

  async readRecords(after: number, limit: number): Promise<EventRecord[]> {
    return this.run('read', () => this.stmts.readRecords.all(after, limit).map(toRecord));
  }

  async head(): Promise<number> {
    return this.run('read', () => this.stmts.head.get()?.p ?? 0);
  }

  async streamVersion(streamId: string): Promise<number> {
    return this.run('read', () => this.stmts.streamVersion.get(streamId)?.version ?? 0);
  }

  async findCommand(commandId: string): Promise<CommandRecord | null> {
    const row = this.run('read', () => this.stmts.findCommand?.get(commandId));
    if (!row) return null;
    return {
      commandId, streamId: row.stream_id, firstPosition: row.first_position, lastPosition: row.last_position,
      nextExpectedVersion: row.stream_version, result: JSON.parse(row.result) as unknown,
    };
  }

  async logId(): Promise<string | null> {
    return this.run('read', () => this.stmts.logId?.get()?.value ?? null);
  }

  async latestSnapshot(streamId: string, position: number): Promise<Snapshot | null> {
    const row = this.run('read', () => this.stmts.latestSnapshot?.get(streamId, position));
    if (!row) return null;
    return {
      streamId, position: row.position, streamVersion: row.stream_version, format: row.format,
      stateHash: row.state_hash.toString('hex'), logHash: row.log_hash.toString('hex'), state: row.state,
    };
  }

  /** Commands whose last position is in (after, through], by position: what a shipper copies with those rows. */
  async readCommands(after: number, through: number): Promise<CommandRecord[]> {
    return this.run('read', () =>
      (this.stmts.commandsIn?.all(after, through) ?? []).map((row) => ({
        commandId: row.command_id, streamId: row.stream_id, firstPosition: row.first_position, lastPosition: row.last_position,
        nextExpectedVersion: row.stream_version, result: JSON.parse(row.result) as unknown,
      })),
    );
  }

  /** Snapshots at positions in (after, through], by position. */
  async readSnapshots(after: number, through: number): Promise<Snapshot[]> {
    return this.run('read', () =>
      (this.stmts.snapshotsIn?.all(after, through) ?? []).map((row) => ({
        streamId: row.stream_id, position: row.position, streamVersion: row.stream_version, format: row.format,
        stateHash: row.state_hash.toString('hex'), logHash: row.log_hash.toString('hex'), state: row.state,
      })),
    );
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private run<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw asStoreError(e, what);
    }
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

function prepare(db: Database.Database, schemaVersion: number) {
  const current = schemaVersion >= 2;
  const optional = <T>(make: () => T): T | undefined => (current ? make() : undefined);
  return {
    streamVersion: db.prepare<[string], { version: number }>('SELECT version FROM streams WHERE stream_id = ?'),
    head: db.prepare<[], { p: number | null }>('SELECT MAX(position) AS p FROM events'),
    // Rows as arrays: no intermediate object per row on the replay path.
    read: db
      .prepare<[number, number], [number, string, number, string, string, number, string, string]>(
        `SELECT ${COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?`,
      )
      .raw(true),
    // Only the columns a fold uses: every string column costs a string per row.
    readFold: db
      .prepare<[number, number], [number, string, string, number, string, string]>(
        'SELECT position, stream_id, type, schema_version, data, metadata FROM events WHERE position > ? ORDER BY position LIMIT ?',
      )
      .raw(true),
    readRecords: db.prepare<[number, number], EventRow & { hash: Buffer | null }>(
      `SELECT ${COLUMNS}, ${current ? 'hash' : 'NULL AS hash'} FROM events WHERE position > ? ORDER BY position LIMIT ?`,
    ),
    logId: optional(() => db.prepare<[], { value: string }>("SELECT value FROM log WHERE key = 'log_id'")),
    findCommand: optional(() =>
      db.prepare<[string], { stream_id: string; first_position: number; last_position: number; stream_version: number; result: string }>(
        'SELECT stream_id, first_position, last_position, stream_version, result FROM commands WHERE command_id = ?',
      ),
    ),
    latestSnapshot: optional(() =>
      db.prepare<[string, number], { position: number; stream_version: number; format: string; state_hash: Buffer; log_hash: Buffer; state: string }>(
        'SELECT position, stream_version, format, state_hash, log_hash, state FROM snapshots WHERE stream_id = ? AND position <= ? ORDER BY position DESC LIMIT 1',
      ),
    ),
    commandsIn: optional(() =>
      db.prepare<[number, number], { command_id: string; stream_id: string; first_position: number; last_position: number; stream_version: number; result: string }>(
        'SELECT command_id, stream_id, first_position, last_position, stream_version, result FROM commands WHERE last_position > ? AND last_position <= ? ORDER BY last_position',
      ),
    ),
    snapshotsIn: optional(() =>
      db.prepare<[number, number], { stream_id: string; position: number; stream_version: number; format: string; state_hash: Buffer; log_hash: Buffer; state: string }>(
        'SELECT stream_id, position, stream_version, format, state_hash, log_hash, state FROM snapshots WHERE position > ? AND position <= ? ORDER BY position',
      ),
    ),
    append: db.readonly
      ? undefined
      : optional(() => ({
          findCommand: db.prepare<[string], { first_position: number; last_position: number; stream_version: number }>(
            'SELECT first_position, last_position, stream_version FROM commands WHERE command_id = ?',
          ),
          last: db.prepare<[], { position: number; hash: Buffer }>('SELECT position, hash FROM events ORDER BY position DESC LIMIT 1'),
          insert: db.prepare(`INSERT INTO events (${COLUMNS}, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
          upsertStream: db.prepare('INSERT INTO streams (stream_id, version) VALUES (?, ?) ON CONFLICT(stream_id) DO UPDATE SET version = excluded.version'),
          insertCommand: db.prepare(
            'INSERT INTO commands (command_id, stream_id, first_position, last_position, stream_version, result) VALUES (?, ?, ?, ?, ?, ?)',
          ),
          insertSnapshot: db.prepare(
            'INSERT OR IGNORE INTO snapshots (stream_id, position, stream_version, format, state_hash, log_hash, state) VALUES (?, ?, ?, ?, ?, ?, ?)',
          ),
        })),
  };
}

function toRecord(row: EventRow & { hash: Buffer | null }): EventRecord {
  return {
    position: row.position,
    streamId: row.stream_id,
    streamVersion: row.stream_version,
    eventId: row.event_id,
    type: row.type,
    schemaVersion: row.schema_version,
    data: row.data,
    metadata: row.metadata,
    hash: row.hash?.toString('hex') ?? '',
  };
}

/**
 * Checks the file itself before SQLite opens it: not a SQLite file at all, or a database shorter than
 * its header says (truncated). SQLite trusts the header's page count only when the header's
 * version-valid-for number matches its change counter, and so does this; with a non-empty WAL the
 * main file may legitimately lag, so the check is left to SQLite then.
 */
function inspectFile(file: string, readonly: boolean): void {
  if (!existsSync(file)) {
    if (readonly) throw new StoreError('NOT_FOUND', `no database file at ${file}`);
    return;
  }
  const stat = statSync(file);
  if (!stat.isFile()) throw new StoreError('NOT_A_DATABASE', `${file} is not a file`);
  if (stat.size === 0) return; // SQLite's empty database
  const header = Buffer.alloc(100);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  if (stat.size < 100 || header.toString('latin1', 0, 16) !== 'SQLite format 3\0') {
    throw new StoreError('NOT_A_DATABASE', `${file} is not a SQLite database`);
  }
  const raw = header.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  const pages = header.readUInt32BE(28);
  const countValid = pages > 0 && header.readUInt32BE(24) === header.readUInt32BE(92);
  const wal = `${file}-wal`;
  const walEmpty = !existsSync(wal) || statSync(wal).size === 0;
  if (countValid && walEmpty && stat.size < pages * pageSize) {
    throw new StoreError('CORRUPT', `${file} is truncated: its header counts ${pages} pages of ${pageSize} bytes, the file holds ${stat.size} bytes`);
  }
}

/**
 * Refuses files this store did not write, or wrote with a newer schema, before anything is changed.
 * Returns the file's schema version (0 for a new, empty file).
 */
function checkFile(db: Database.Database, file: string, readonly: boolean): number {
  // Reading the header is the first access; a non-database file fails here with SQLITE_NOTADB.
  const appId = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  const tables = db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number };
  if (tables.n === 0 && appId === 0) {
    if (readonly) throw new StoreError('NOT_FOUND', `${file} holds no event log`);
    return 0; // a new, empty file: ours to initialise
  }
  if (appId !== APP_ID) throw new StoreError('NOT_A_DATABASE', `${file} is a SQLite database, but not an iommu-orch event log`);
  if (version > SQLITE_SCHEMA_VERSION) {
    throw new StoreError('SCHEMA_TOO_NEW', `${file} has event-log schema ${version}; this build reads up to ${SQLITE_SCHEMA_VERSION}`);
  }
  if (version < 1) throw new StoreError('CORRUPT', `${file} is marked as an event log but has no schema version`);
  return version;
}

/**
 * Creates or migrates the schema in one IMMEDIATE transaction, re-reading the version inside it: two
 * processes opening one new file at once must not both create it, and a crash leaves either the old
 * file or the complete new one.
 */
function initialise(db: Database.Database, logId: string): number {
  const run = db.transaction((): number => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === SQLITE_SCHEMA_VERSION) return version;
    if (version === 0) db.exec(eventsTable('events'));
    db.exec(SCHEMA_2_TABLES);
    db.prepare("INSERT INTO log (key, value) VALUES ('log_id', ?)").run(logId);
    if (version === 1) chainEventsFrom1(db, genesisHash(logId));
    db.pragma(`application_id = ${APP_ID}`);
    db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION}`);
    return SQLITE_SCHEMA_VERSION;
  });
  return run.immediate();
}

/** Schema 1 -> 2: rebuilds the events table with the hash column, chaining the rows in position order. */
function chainEventsFrom1(db: Database.Database, genesis: string): void {
  db.exec(eventsTable('events_v2'));
  const page = db.prepare<[number], EventRow>(`SELECT ${COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT 1000`);
  const insert = db.prepare(`INSERT INTO events_v2 (${COLUMNS}, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  let hash = genesis;
  let after = 0;
  for (;;) {
    const rows = page.all(after);
    for (const row of rows) {
      hash = chainHash(hash, toRecord({ ...row, hash: null }));
      insert.run(row.position, row.stream_id, row.stream_version, row.event_id, row.type, row.schema_version, row.data, row.metadata, Buffer.from(hash, 'hex'));
      after = row.position;
    }
    if (rows.length < 1000) break;
  }
  db.exec('DROP TABLE events; ALTER TABLE events_v2 RENAME TO events;');
}

function asStoreError(e: unknown, what: string): unknown {
  if (StoreError.is(e)) return e;
  const code = (e as { code?: unknown }).code;
  const message = e instanceof Error ? e.message : String(e);
  if (code === 'SQLITE_NOTADB') return new StoreError('NOT_A_DATABASE', `${what} is not a SQLite database`, { cause: e });
  if (code === 'SQLITE_CORRUPT') return new StoreError('CORRUPT', `${what}: the database file is corrupt`, { cause: e });
  if (code === 'SQLITE_BUSY') return new StoreError('BUSY', `${what}: the database is locked by another writer`, { cause: e });
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' && message.includes('events.event_id')) {
    return new StoreError('DUPLICATE_EVENT_ID', `${what}: an event id is already in the log`, { cause: e });
  }
  return e;
}
