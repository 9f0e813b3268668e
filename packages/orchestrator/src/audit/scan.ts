import { evolve, initialState, type IommuEvent, type State } from '@iommu-orch/core';
import type { EventStore, StoredEvent } from '@iommu-orch/store';
import { InputError } from '../command-schema.js';
import { HOST_STREAM, toDomainEvent } from '../replay.js';

/**
 * The one pass every audit question is answered with: read the log in bounded pages, fold it, and show
 * each event to a visitor with the state before and after it.
 *
 * Consistency with a live writer: the scan reads the head once, when it starts, and never goes past it.
 * Positions are dense and rows are never rewritten, so the events up to that head are a fixed prefix,
 * whatever another process appends meanwhile; every answer says which head it was computed at.
 *
 * Snapshots: `start` takes a state already folded to some position (a snapshot, or an earlier scan of the
 * same command), and the scan reads only the events after it. Nothing here depends on where it came from.
 */

/** Where a scan stops: after a position, or before the first event later than an ISO time. */
export type Bound = { readonly position: number } | { readonly time: string };

export interface ScanPoint {
  readonly state: State;
  /** Position of the last event folded in (0: nothing yet). */
  readonly position: number;
  /** Event time of that event. */
  readonly time: string | null;
}

export interface ScanStep {
  readonly stored: StoredEvent;
  readonly event: IommuEvent;
  readonly before: State;
  readonly after: State;
}

export interface ScanOptions {
  /** Default: the head when the scan starts. */
  readonly to?: Bound;
  readonly start?: ScanPoint;
  /** Head to stop at, when the caller already read it (a second scan of the same answer). */
  readonly head?: number;
  readonly streamId?: string;
  /**
   * 'relations' leaves TCE contents out of the fold (see foldRelations): devices, PEs, groups, owners,
   * domains, windows and iommufd objects never depend on TCE contents, so questions about those are
   * answered without the cost of writing every table.
   */
  readonly fold?: 'full' | 'relations';
  readonly visit?: (step: ScanStep) => void;
  /**
   * Called after the last event of each command (events of one command share its commandId). `complete`
   * is false for a command the bound cut short: its remaining events lie past the bound.
   */
  readonly commandEnd?: (last: ScanStep, complete: boolean) => void;
}

export interface ScanResult extends ScanPoint {
  /** The log head this answer was computed against. */
  readonly head: number;
}

const PAGE = 2000;

export const initialPoint: ScanPoint = { state: initialState, position: 0, time: null };

export async function scanLog(store: EventStore, options: ScanOptions = {}): Promise<ScanResult> {
  const head = options.head ?? (await store.head());
  const streamId = options.streamId ?? HOST_STREAM;
  const to = options.to;
  if (to && 'position' in to && to.position > head) throw new InputError(`position ${to.position} is past the end of the log (head ${head})`);
  const last = to && 'position' in to ? to.position : head;
  const until = to && 'time' in to ? Date.parse(to.time) : undefined;
  const relationsOnly = options.fold === 'relations';
  let { state, position, time } = options.start ?? initialPoint;
  let after = position;
  let pending: ScanStep | undefined;
  const flush = (complete: boolean): void => {
    if (pending && options.commandEnd) options.commandEnd(pending, complete);
    pending = undefined;
  };
  scan: while (after < last) {
    const page = await store.read(after, Math.min(PAGE, last - after));
    if (page.length === 0) break;
    for (const stored of page) {
      if (until !== undefined && Date.parse(stored.metadata.time) > until) break scan;
      after = stored.position;
      if (stored.streamId !== streamId) continue;
      const event = toDomainEvent(stored);
      const before = state;
      state = relationsOnly ? foldRelations(state, event) : evolve(state, event);
      position = stored.position;
      time = stored.metadata.time;
      if (pending && pending.stored.metadata.commandId !== stored.metadata.commandId) flush(true);
      const step: ScanStep = { stored, event, before, after: state };
      options.visit?.(step);
      pending = step;
    }
  }
  // Appends are atomic, so the head ends a command; before it, the next event tells.
  const next = pending && after < head ? (await store.read(after, 1))[0] : undefined;
  flush(next === undefined || next.metadata.commandId !== pending!.stored.metadata.commandId);
  return { state, position, time, head };
}

/** Events whose only effect on domains is writing TCEs (and so the pinned counts). */
const TCE_WRITERS: ReadonlySet<IommuEvent['type']> = new Set(['TcesMapped', 'TcesCleared', 'TcesLeaked', 'IoasAreaMapped', 'IoasAreaUnmapped', 'HwptAllocated']);

/**
 * evolve without TCE contents: TcesMapped and TcesCleared are not folded at all; an IOAS area mapped or
 * unmapped, a HWPT allocation (which fills its domain) and a leak (its leaked bytes and region counts)
 * are folded for their other objects, with the domains and pinned counts kept as they were. Every table therefore stays empty.
 */
function foldRelations(state: State, event: IommuEvent): State {
  if (event.type === 'TcesMapped' || event.type === 'TcesCleared') return { ...state, version: state.version + 1 };
  if (!TCE_WRITERS.has(event.type)) return evolve(state, event);
  return { ...evolve(state, event), domains: state.domains, pinned: state.pinned };
}

/** The point a bound names, as a label: "position 42 (2026-01-27T18:35:12.000Z)". */
export function pointLabel(p: { readonly position: number; readonly time: string | null }): string {
  return `position ${p.position}${p.time ? ` (${p.time})` : ''}`;
}
