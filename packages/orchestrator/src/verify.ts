import { canonicalState, evolve, initialState } from '@iommu-orch/core';
import { verifyChain, type ChainReport, type EventStore, type TrustedHead } from '@iommu-orch/store';
import { HOST_STREAM, REPLAY_PAGE, toDomainEvent } from './replay.js';
import { checkSnapshot, type SnapshotRejection } from './snapshots.js';

export interface SnapshotAudit {
  /** Snapshots compared with a full replay at their position, and equal to it. */
  readonly matched: number;
  /** Snapshots of another build's format: not checked, never used by this build. */
  readonly foreign: number;
  readonly bad: readonly SnapshotRejection[];
}

export interface AuditReport {
  readonly ok: boolean;
  readonly chain: ChainReport;
  /** Null when the chain failed: snapshots are only judged against a log that verifies. */
  readonly snapshots: SnapshotAudit | null;
}

/**
 * Everything an auditor can check from the file: the hash chain over every row (store), then every
 * snapshot of the stream, which must pass its own checks and equal, byte for byte in canonical form,
 * the state a full replay reaches at its position. A forged snapshot with a recomputed hash is caught
 * by that comparison.
 */
export async function auditLog(store: EventStore, options: { trusted?: TrustedHead; streamId?: string } = {}): Promise<AuditReport> {
  const chain = await verifyChain(store, options.trusted ? { trusted: options.trusted } : {});
  if (!chain.ok) return { ok: false, chain, snapshots: null };
  const streamId = options.streamId ?? HOST_STREAM;

  const bad: SnapshotRejection[] = [];
  let foreign = 0;
  const usable: number[] = [];
  for (let at = chain.count; ; ) {
    const s = await store.latestSnapshot(streamId, at);
    if (!s) break;
    const check = await checkSnapshot(store, s);
    if (check.ok) usable.push(s.position);
    else if (check.foreign) foreign++;
    else bad.push({ position: s.position, reason: check.reason });
    at = s.position - 1;
  }
  usable.reverse();

  let matched = 0;
  let state = initialState;
  // The full fold, in pages of what a fold needs (readFold), up to the last snapshot to compare.
  scan: for (let after = 0; matched < usable.length; ) {
    const page = await store.readFold(after, REPLAY_PAGE);
    for (const row of page) {
      if (usable.length === matched) break scan;
      if (row.streamId === streamId) state = evolve(state, toDomainEvent(row));
      if (row.position !== usable[matched]) continue;
      const check = await checkSnapshot(store, (await store.latestSnapshot(streamId, row.position))!);
      if (check.ok && canonicalState(check.start.state) === canonicalState(state)) matched++;
      else {
        bad.push({ position: row.position, reason: 'its state differs from a full replay of the log: the snapshot was forged or the fold changed' });
        usable.splice(matched, 1);
      }
    }
    if (page.length < REPLAY_PAGE) break;
    after = page[page.length - 1]!.position;
  }
  bad.sort((a, b) => a.position - b.position);
  return { ok: bad.length === 0, chain, snapshots: { matched, foreign, bad } };
}
