import { EVENT_SCHEMA_VERSION, evolve, initialState, isEventType, type IommuEvent, type State } from '@iommu-orch/core';
import { readAll, StoreError, type EventStore, type StoredEvent } from '@iommu-orch/store';

/** The default stream: one host's IOMMU is one aggregate, so its events form one ordered stream. */
export const HOST_STREAM = 'host';

/**
 * Turns a stored row into a domain event. Rows of an unknown type or a newer schema are refused
 * rather than skipped: replay must never silently build a different state.
 */
export function toDomainEvent(stored: StoredEvent): IommuEvent {
  if (!isEventType(stored.type)) throw new StoreError('CORRUPT', `event at position ${stored.position} has unknown type "${stored.type}"`);
  if (stored.schemaVersion > EVENT_SCHEMA_VERSION) {
    throw new StoreError('SCHEMA_TOO_NEW', `event at position ${stored.position} has schema ${stored.schemaVersion}; this build reads up to ${EVENT_SCHEMA_VERSION}`);
  }
  return { type: stored.type, data: stored.data } as IommuEvent;
}

export interface ReplayResult {
  readonly state: State;
  /** Position of the last event folded in. */
  readonly position: number;
  /** Metadata time of that event, if any. */
  readonly time: string | null;
}

/**
 * Rebuilds state from the log, reading it in bounded pages. `at` stops after that position;
 * `until` (ISO time) stops before the first later event. Never reads a clock.
 */
export async function replay(store: EventStore, options: { at?: number; until?: string; streamId?: string } = {}): Promise<ReplayResult> {
  const streamId = options.streamId ?? HOST_STREAM;
  const until = options.until === undefined ? undefined : Date.parse(options.until);
  let state = initialState;
  let position = 0;
  let time: string | null = null;
  for await (const stored of readAll(store)) {
    if (options.at !== undefined && stored.position > options.at) break;
    if (until !== undefined && Date.parse(stored.metadata.time) > until) break;
    if (stored.streamId !== streamId) continue;
    state = evolve(state, toDomainEvent(stored));
    position = stored.position;
    time = stored.metadata.time;
  }
  return { state, position, time };
}
