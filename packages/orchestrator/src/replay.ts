import { EVENT_SCHEMA_VERSION, evolve, initialState, isEventType, upcast, withTransientTables, type IommuEvent, type Json, type State } from '@iommu-orch/core';
import { StoreError, type EventStore, type StoredEvent } from '@iommu-orch/store';
import { newestValidSnapshot, type SnapshotRejection } from './snapshots.js';

/** Events per read while replaying: bounds memory, amortises the query. */
const REPLAY_PAGE = 1000;

/** The default stream: one host's IOMMU is one aggregate, so its events form one ordered stream. */
export const HOST_STREAM = 'host';

/**
 * Turns a stored row into a domain event, lifting payloads of older schemas with the upcasters. Rows of
 * an unknown type or a newer schema are refused rather than skipped: replay must never silently build
 * a different state.
 */
export function toDomainEvent(stored: StoredEvent): IommuEvent {
  if (!isEventType(stored.type)) throw new StoreError('CORRUPT', `event at position ${stored.position} has unknown type "${stored.type}"`);
  const v = stored.schemaVersion;
  if (v > EVENT_SCHEMA_VERSION) {
    throw new StoreError('SCHEMA_TOO_NEW', `event at position ${stored.position} has schema ${v}; this build reads up to ${EVENT_SCHEMA_VERSION}`);
  }
  if (!Number.isInteger(v) || v < 1) throw new StoreError('CORRUPT', `event at position ${stored.position} has no valid schema version (${v})`);
  const data = v === EVENT_SCHEMA_VERSION ? stored.data : upcast(stored.type, v, stored.data as Json);
  return { type: stored.type, data } as IommuEvent;
}

export interface ReplayResult {
  readonly state: State;
  /** Position of the last event folded in. */
  readonly position: number;
  /** Metadata time of that event, if any. */
  readonly time: string | null;
  /** Position of the snapshot replay started from (0: from the beginning of the log). */
  readonly from: number;
  /** Snapshots that failed their checks and were skipped. */
  readonly rejectedSnapshots: readonly SnapshotRejection[];
}

export interface ReplayOptions {
  /** Stop after this position. */
  readonly at?: number;
  /** Stop before the first event later than this ISO time. */
  readonly until?: string;
  readonly streamId?: string;
  /** Start from the newest valid snapshot (default) or fold the whole log. */
  readonly snapshots?: boolean;
}

/**
 * Rebuilds state: the newest valid snapshot (see snapshots.ts) plus the events after it, read in
 * bounded pages. Never reads a clock.
 */
export async function replay(store: EventStore, options: ReplayOptions = {}): Promise<ReplayResult> {
  const streamId = options.streamId ?? HOST_STREAM;
  const until = options.until === undefined ? undefined : Date.parse(options.until);
  const { start, rejected } =
    options.snapshots === false
      ? { start: null, rejected: [] }
      : await newestValidSnapshot(store, streamId, { ...(options.at !== undefined && { at: options.at }), ...(until !== undefined && { until }) });
  let state = start?.state ?? initialState;
  let position = start?.position ?? 0;
  let time = start?.time ?? null;
  // Page by page rather than through readAll: a per-event async iteration costs as much as the read itself.
  // Each page folds transiently (TCE leaves copied once per page, not once per event): nobody sees the
  // states between two events of a page.
  for (let after = position, done = false; !done; ) {
    const page = await store.read(after, REPLAY_PAGE);
    state = withTransientTables(() => {
      let s = state;
      for (const stored of page) {
        if ((options.at !== undefined && stored.position > options.at) || (until !== undefined && Date.parse(stored.metadata.time) > until)) {
          done = true;
          break;
        }
        if (stored.streamId !== streamId) continue;
        s = evolve(s, toDomainEvent(stored));
        position = stored.position;
        time = stored.metadata.time;
      }
      return s;
    });
    if (page.length < REPLAY_PAGE) break;
    after = page[page.length - 1]!.position;
  }
  return { state, position, time, from: start?.position ?? 0, rejectedSnapshots: rejected };
}
