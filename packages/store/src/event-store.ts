import type { ExpectedVersion } from './errors.js';

/**
 * The engine-neutral event store. Every engine (SQLite, memory, later PostgreSQL) passes the same
 * contract suite (tests/store/contract.ts).
 *
 * Invariants:
 * - Positions are global, dense, start at 1 and follow commit order: a reader that sees position n has
 *   seen every position below it. A stream's version is the count of its events (0 = no stream).
 * - An append is atomic: all of its events, its command record and its snapshot commit, or nothing does.
 *   A refused append (wrong expected version, duplicate event id) changes nothing, so the stream can be
 *   appended to at once with the right version.
 * - Each event row carries hash_i = SHA-256(hash_{i-1} || canonical bytes of row i), from a genesis hash
 *   of the log's id (hash-chain.ts); the bytes hashed are exactly the bytes stored.
 * - A command id is recorded once: a second append with it appends nothing and returns the first result.
 *
 * Methods are async so that a networked engine can implement the same interface.
 */
export interface EventMetadata {
  /** Event time, ISO 8601, from the orchestrator's injected clock (never read on replay). */
  readonly time: string;
  readonly commandId: string;
  readonly commandType: string;
  readonly [key: string]: string | number | boolean | null;
}

export interface NewEvent {
  readonly eventId: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: unknown;
  readonly metadata: EventMetadata;
}

export interface StoredEvent extends NewEvent {
  readonly position: number;
  readonly streamId: string;
  readonly streamVersion: number;
}

/**
 * What a fold needs of a row (replay, snapshot audits): no event id or stream version, the payload parsed,
 * the metadata left as its stored JSON text. A fold reads the metadata of few rows (replay: the last one,
 * or one per command with a time bound), and parsing it for every row costs as much as parsing the
 * payload; parse it where it is needed (`parseMetadata`).
 */
export interface FoldRow {
  readonly position: number;
  readonly streamId: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: unknown;
  readonly metadataText: string;
}

/** A row exactly as stored: payloads as the JSON text that was hashed, and the row's chain hash (hex). */
export interface EventRecord {
  readonly position: number;
  readonly streamId: string;
  readonly streamVersion: number;
  readonly eventId: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: string;
  readonly metadata: string;
  /** Empty for rows of a log written before the hash chain existed. */
  readonly hash: string;
}

export interface AppendOptions {
  readonly expectedVersion: ExpectedVersion;
  /**
   * Idempotency key. When an append with this id has committed before, nothing is appended and that
   * append's result comes back with `duplicate: true`, whatever the expected version says.
   */
  readonly commandId?: string;
  /** JSON value kept with the command id (what the command answered); findCommand returns it. */
  readonly commandResult?: unknown;
  /** The stream's state after this append, stored in the same transaction at its last position. */
  readonly snapshot?: { readonly format: string; readonly state: string };
}

export interface AppendResult {
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly nextExpectedVersion: number;
  /** True when the command id had been appended before and this call appended nothing. */
  readonly duplicate: boolean;
}

export interface CommandRecord {
  readonly commandId: string;
  readonly streamId: string;
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly nextExpectedVersion: number;
  readonly result: unknown;
}

/**
 * A state snapshot: the fold of `streamId` through global `position` (its version `streamVersion`).
 * `stateHash` is SHA-256 of `state`; `logHash` is the chain hash of the event at `position`, so a
 * snapshot is only trusted on the log it was taken from.
 */
export interface Snapshot {
  readonly streamId: string;
  readonly position: number;
  readonly streamVersion: number;
  readonly format: string;
  readonly stateHash: string;
  readonly logHash: string;
  readonly state: string;
}

export interface EventStore {
  append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult>;
  /** Events with position > after, in position order, at most `limit` of them. */
  read(after: number, limit: number): Promise<StoredEvent[]>;
  /** Like read, but only what a fold needs of each row (FoldRow): the replay path. */
  readFold(after: number, limit: number): Promise<FoldRow[]>;
  /** Like read, but the rows as stored, with their chain hashes: what verification reads. */
  readRecords(after: number, limit: number): Promise<EventRecord[]>;
  /** Position of the last event (0 for an empty log). */
  head(): Promise<number>;
  streamVersion(streamId: string): Promise<number>;
  findCommand(commandId: string): Promise<CommandRecord | null>;
  /** The id the chain's genesis hash is derived from; null for a log that predates the hash chain. */
  logId(): Promise<string | null>;
  /** The newest snapshot of the stream at or before `position`. */
  latestSnapshot(streamId: string, position: number): Promise<Snapshot | null>;
  /**
   * Optional live hint (PostgreSQL: LISTEN/NOTIFY): calls `listener` when an append to this log commits,
   * from any connection or process. Never a source of events, only "read again". Returns a stop function.
   */
  watch?(listener: () => void): () => void;
  close(): Promise<void>;
}

/** The stored text of a JSON value; undefined (which JSON cannot hold) is refused. */
export function jsonText(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('an event payload must be a JSON value, not undefined');
  return text;
}

/** The metadata of a row from its stored text (FoldRow.metadataText, EventRecord.metadata). */
export function parseMetadata(text: string): EventMetadata {
  return JSON.parse(text) as EventMetadata;
}

/** Reads every event after `after` in bounded pages. */
export async function* readAll(store: EventStore, after = 0, pageSize = 1000): AsyncGenerator<StoredEvent> {
  let from = after;
  for (;;) {
    const page = await store.read(from, pageSize);
    for (const e of page) yield e;
    if (page.length < pageSize) return;
    from = page[page.length - 1]!.position;
  }
}
