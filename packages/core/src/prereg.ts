import type { Output } from './commands.js';
import { fail } from './errors.js';
import { patch, type State } from './state.js';
import { tceRuns, TCE_PERM_MASK } from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, type Hex } from './u64.js';

/**
 * Preregistered memory (mm_iommu, arch/powerpc/mm/book3s64/iommu_api.c), registered through
 * VFIO_IOMMU_SPAPR_REGISTER_MEMORY: user memory pinned up front so that KVM can translate a guest TCE
 * into a host address without faulting. Per process (mm); the model has one guest process. A region
 * records the page shift of its backing (the largest page that maps it), which bounds the IOMMU page
 * size a KVM-linked hardware table may use through it.
 *
 * Invariants: regions never overlap; each is page aligned; `users` counts the registrations of the
 * exact same range (a second container of the process adopts the region).
 *
 * `leaked` counts the TCEs into the region whose clear the platform hypervisor refused as their table
 * went away (TcesLeaked, platform-hv.ts): tce_iommu_clear skipped them, so tce_iommu_unuse_page_v2
 * never ran and the region's mapped count never drops. The last put of such a region is EBUSY
 * (mm_iommu_put), so it stays pinned while the process lives.
 */
export interface Prereg {
  readonly ua: bigint;
  readonly size: bigint;
  readonly pageShift: number;
  readonly users: number;
  readonly leaked: number;
}

export type PreregEvent =
  | { readonly type: 'MemoryPreregistered'; readonly data: { readonly ua: Hex; readonly size: Hex; readonly pageShift: number } }
  | { readonly type: 'MemoryUnregistered'; readonly data: { readonly ua: Hex; readonly size: Hex } };

const PAGE = 0x1000n;

/** REGISTER_MEMORY: EINVAL for a misaligned or empty range, or one that overlaps another without matching it. */
export function registerMemory(tx: Tx, ua: bigint, size: bigint, pageShift: number): Output {
  if (size === 0n || (ua | size) & (PAGE - 1n)) fail('EINVAL', `region ${toHex(ua)}+${toHex(size)} is not page aligned`);
  if (!Number.isInteger(pageShift) || pageShift < 12 || pageShift > 34) fail('EINVAL', `backing page shift ${pageShift}`);
  for (const r of tx.state.prereg) {
    if (r.ua === ua && r.size === size) continue;
    if (ua < r.ua + r.size && r.ua < ua + size) fail('EINVAL', `region ${toHex(ua)}+${toHex(size)} overlaps ${toHex(r.ua)}+${toHex(r.size)}`);
  }
  tx.emit({ type: 'MemoryPreregistered', data: { ua: toHex(ua), size: toHex(size), pageShift } });
  return { users: tx.state.prereg.find((r) => r.ua === ua)!.users };
}

/**
 * UNREGISTER_MEMORY (mm_iommu_put): ENOENT when no region has exactly this range; EBUSY for the last put
 * of a region still mapped (live or leaked TCEs into it), which stays registered.
 */
export function unregisterMemory(tx: Tx, ua: bigint, size: bigint): Output {
  const r = tx.state.prereg.find((x) => x.ua === ua && x.size === size) ?? fail('ENOENT', `no preregistered region ${toHex(ua)}+${toHex(size)}`);
  if (stuckOnLastPut(tx.state, r)) {
    fail('EBUSY', `region ${toHex(ua)}+${toHex(size)} is still mapped (${r.leaked > 0 ? `${r.leaked} leaked TCEs` : 'live TCEs point into it'}): its last put cannot free it`);
  }
  tx.emit({ type: 'MemoryUnregistered', data: { ua: toHex(ua), size: toHex(size) } });
  return {};
}

/**
 * Whether mm_iommu_put of the region would drop its last user with mappings left: the region's mapped
 * count is above its base while a TCE (live, or leaked by a refused clear) points into it. Put then
 * restores the user and fails with EBUSY. A put that leaves other users only drops one.
 */
export function stuckOnLastPut(state: State, r: Prereg): boolean {
  return r.users === 1 && (r.leaked > 0 || regionMapped(state, r.ua, r.size));
}

/** Whether any valid TCE of any domain points into [ua, ua+size). */
function regionMapped(state: State, ua: bigint, size: bigint): boolean {
  for (const d of Object.values(state.domains)) {
    for (const w of d.windows) {
      for (const r of tceRuns(w.table)) {
        const first = r.first & ~TCE_PERM_MASK;
        const end = first + (BigInt(r.count) << BigInt(w.table.pageShift));
        if (first < ua + size && ua < end) return true;
      }
    }
  }
  return false;
}

/** The region holding [ua, ua+len), if any (mm_iommu_lookup). */
export function preregAt(state: State, ua: bigint, len: bigint): Prereg | undefined {
  return state.prereg.find((r) => ua >= r.ua && ua + len <= r.ua + r.size);
}

export function evolvePrereg(state: State, event: PreregEvent): State {
  const ua = fromHex(event.data.ua);
  const size = fromHex(event.data.size);
  const i = state.prereg.findIndex((r) => r.ua === ua && r.size === size);
  if (event.type === 'MemoryPreregistered') {
    if (i >= 0) return patch(state, { prereg: state.prereg.map((r, j) => (j === i ? { ...r, users: r.users + 1 } : r)) });
    return patch(state, { prereg: [...state.prereg, { ua, size, pageShift: event.data.pageShift, users: 1, leaked: 0 }] });
  }
  const r = state.prereg[i]!;
  return patch(state, { prereg: r.users > 1 ? state.prereg.map((x, j) => (j === i ? { ...x, users: x.users - 1 } : x)) : state.prereg.filter((_, j) => j !== i) });
}
