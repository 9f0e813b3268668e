import { drop, put, type PagingDomain, type State } from './state.js';
import { tceRuns } from './tce-table.js';
import type { Tx } from './tx.js';
import { toHex } from './u64.js';

/**
 * Pinned memory per user context. Every valid TCE in a context's paging domains pins one IOMMU page
 * (iommufd pins user pages while they are mapped), so the pinned bytes of a context are always the sum,
 * over its domains, of valid TCEs x IOMMU page size. The count is kept in `State.pinned`, apart from
 * the tables, and moves only with TcesMapped and TcesCleared: a domain freed while TCEs are still valid
 * would leave pages pinned for ever, which is why every path that frees a domain unmaps it first
 * (`unmapAll`), and why invariants.ts compares the two.
 */
export function evolvePinned(before: State, after: State, domainId: number): State {
  const now = after.domains[domainId]!;
  const delta = domainMappedBytes(now) - domainMappedBytes(before.domains[domainId]!);
  if (delta === 0n) return after;
  const total = (after.pinned[now.context] ?? 0n) + delta;
  return { ...after, pinned: total === 0n ? drop(after.pinned, now.context) : put(after.pinned, now.context, total) };
}

/** Bytes a domain's valid TCEs map: valid entries x page size, over its windows. */
export function domainMappedBytes(d: PagingDomain): bigint {
  return d.windows.reduce((n, w) => n + (BigInt(w.table.valid) << BigInt(w.table.pageShift)), 0n);
}

/**
 * Forced unmap of a whole domain before it is freed (surprise removal, group teardown, free): one
 * TcesCleared per stretch of consecutive valid entries, so the unpinning is in the log.
 */
export function unmapAll(tx: Tx, domainId: number): void {
  for (const w of tx.state.domains[domainId]!.windows) {
    if (w.table.valid === 0) continue;
    const shift = BigInt(w.table.pageShift);
    const extents: { index: number; count: number }[] = [];
    for (const r of tceRuns(w.table)) {
      const last = extents[extents.length - 1];
      if (last && last.index + last.count === r.index) last.count += r.count;
      else extents.push({ index: r.index, count: r.count });
    }
    for (const e of extents) {
      tx.emit({
        type: 'TcesCleared',
        data: { domain: domainId, iova: toHex(w.start + (BigInt(e.index) << shift)), pgsize: toHex(1n << shift), pgcount: e.count },
      });
    }
  }
}
