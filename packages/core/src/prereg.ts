import type { Output } from './commands.js';
import { fail } from './errors.js';
import { patch, type State } from './state.js';
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
 */
export interface Prereg {
  readonly ua: bigint;
  readonly size: bigint;
  readonly pageShift: number;
  readonly users: number;
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

/** UNREGISTER_MEMORY: ENOENT when no region has exactly this range. */
export function unregisterMemory(tx: Tx, ua: bigint, size: bigint): Output {
  if (!tx.state.prereg.some((r) => r.ua === ua && r.size === size)) fail('ENOENT', `no preregistered region ${toHex(ua)}+${toHex(size)}`);
  tx.emit({ type: 'MemoryUnregistered', data: { ua: toHex(ua), size: toHex(size) } });
  return {};
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
    return patch(state, { prereg: [...state.prereg, { ua, size, pageShift: event.data.pageShift, users: 1 }] });
  }
  const r = state.prereg[i]!;
  return patch(state, { prereg: r.users > 1 ? state.prereg.map((x, j) => (j === i ? { ...x, users: x.users - 1 } : x)) : state.prereg.filter((_, j) => j !== i) });
}
