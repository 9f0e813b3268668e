import type { ExpectedVersion } from './errors.js';

/**
 * The engine-neutral event store. Positions are global, dense and start at 1; a stream's version is
 * the count of its events (0 = no stream). Every append is atomic: all of its events commit or none do.
 * Methods are async so that a networked engine (PostgreSQL) can implement the same interface.
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

export interface AppendOptions {
  readonly expectedVersion: ExpectedVersion;
}

export interface AppendResult {
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly nextExpectedVersion: number;
}

export interface EventStore {
  append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult>;
  /** Events with position > after, in position order, at most `limit` of them. */
  read(after: number, limit: number): Promise<StoredEvent[]>;
  /** Position of the last event (0 for an empty log). */
  head(): Promise<number>;
  streamVersion(streamId: string): Promise<number>;
  close(): Promise<void>;
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
