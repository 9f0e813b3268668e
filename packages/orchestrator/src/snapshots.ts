import { decodeState, encodeState, SNAPSHOT_FORMAT, type State } from '@iommu-orch/core';
import { parseMetadata, sha256Hex, type EventStore, type Snapshot } from '@iommu-orch/store';

/**
 * Snapshots are a cache of the fold, never a source of truth: one is used only after every check below
 * passes, and any failure falls back to an older snapshot or to the log itself.
 * - format: written by a build with the same codec, event catalogue and state shape (SNAPSHOT_FORMAT);
 * - stateHash: SHA-256 of the stored state bytes (a damaged or edited snapshot fails here);
 * - logHash: the chain hash of the log row at the snapshot's position, and that row is the stream's
 *   event at the snapshot's version (a snapshot cannot be carried onto a rewritten log);
 * - the bytes decode to a state of this build's shape whose version is that stream version.
 * audit verify goes further and compares each snapshot with a full replay.
 */
export const SNAPSHOT_FORMAT_ID = sha256Hex(SNAPSHOT_FORMAT);

export function snapshotOf(state: State): { format: string; state: string } {
  return { format: SNAPSHOT_FORMAT_ID, state: encodeState(state) };
}

export interface SnapshotStart {
  readonly state: State;
  readonly position: number;
  /** Metadata time of the event at `position`. */
  readonly time: string;
}

export type SnapshotCheck = { readonly ok: true; readonly start: SnapshotStart } | { readonly ok: false; readonly reason: string; readonly foreign: boolean };

export async function checkSnapshot(store: EventStore, s: Snapshot): Promise<SnapshotCheck> {
  const fail = (reason: string, foreign = false): SnapshotCheck => ({ ok: false, reason, foreign });
  if (s.format !== SNAPSHOT_FORMAT_ID) return fail('written by a build with another snapshot format', true);
  if (sha256Hex(s.state) !== s.stateHash) return fail('its state does not match its hash: the snapshot was altered or damaged');
  const [row] = await store.readRecords(s.position - 1, 1);
  if (!row || row.position !== s.position || row.hash !== s.logHash || row.streamId !== s.streamId || row.streamVersion !== s.streamVersion) {
    return fail('the log at its position is not the log it was taken from');
  }
  let state: State;
  try {
    state = decodeState(s.state);
  } catch (e) {
    return fail(`its state does not decode: ${(e as Error).message}`);
  }
  if (state.version !== s.streamVersion) return fail(`its state is at version ${state.version}, not ${s.streamVersion}`);
  return { ok: true, start: { state, position: s.position, time: parseMetadata(row.metadata).time } };
}

export interface SnapshotRejection {
  readonly position: number;
  readonly reason: string;
}

/**
 * The newest snapshot of the stream that passes every check, at or before `at` and not later than
 * `until` (epoch ms); rejected ones are reported, never used.
 */
export async function newestValidSnapshot(
  store: EventStore,
  streamId: string,
  limits: { at?: number; until?: number },
): Promise<{ start: SnapshotStart | null; rejected: SnapshotRejection[] }> {
  const rejected: SnapshotRejection[] = [];
  let at = limits.at ?? Number.MAX_SAFE_INTEGER;
  for (;;) {
    const s = await store.latestSnapshot(streamId, at);
    if (!s) return { start: null, rejected };
    const check = await checkSnapshot(store, s);
    if (!check.ok) rejected.push({ position: s.position, reason: check.reason });
    else if (limits.until === undefined || Date.parse(check.start.time) <= limits.until) return { start: check.start, rejected };
    at = s.position - 1;
  }
}
