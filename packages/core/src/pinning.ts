import { drop, patch, put, type PagingDomain, type State } from './state.js';
import { tceRuns } from './tce-table.js';
import type { Tx } from './tx.js';
import { toHex } from './u64.js';

/**
 * Pinned memory per user context. Every valid TCE in a context's paging domains pins one IOMMU page
 * (iommufd pins user pages while they are mapped), so the pinned bytes of a context are always the sum,
 * over its domains, of valid TCEs x IOMMU page size. The count is kept in `State.pinned`, apart from
 * the tables, and moves only with TcesMapped, TcesCleared and TcesLeaked: a domain freed while TCEs are
 * still valid would leave pages pinned for ever unseen, which is why every path that frees a domain
 * unmaps it first (`unmapAll`), and why invariants.ts compares the two. A leak the kernel does make (a
 * clear the platform hypervisor refuses as a table is freed) is recorded, not hidden: TcesLeaked moves
 * its bytes to `State.leakedPinned` (platform-hv.ts).
 *
 * `withDomainTces`: the state with domain `before` replaced by `after`, the same domain with TCEs
 * written or cleared, and its context's pinned bytes following.
 */
export function withDomainTces(state: State, before: PagingDomain, after: PagingDomain): State {
  const delta = domainMappedBytes(after) - domainMappedBytes(before);
  const next = patch(state, { domains: put(state.domains, after.id, after) });
  if (delta === 0n) return next;
  const total = (next.pinned[after.context] ?? 0n) + delta;
  return patch(next, { pinned: total === 0n ? drop(next.pinned, after.context) : put(next.pinned, after.context, total) });
}

/** Bytes a domain's valid TCEs map: valid entries x page size, over its windows. */
export function domainMappedBytes(d: PagingDomain): bigint {
  let bytes = 0n;
  for (const w of d.windows) bytes += BigInt(w.table.valid) << BigInt(w.table.pageShift);
  return bytes;
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
