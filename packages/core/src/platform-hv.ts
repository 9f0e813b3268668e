import type { Output } from './commands.js';
import { fail } from './errors.js';
import { unmapRange } from './domain.js';
import { domainMappedBytes, withDomainTces } from './pinning.js';
import { drop, patch, put, type DomainWindow, type Phb, type State } from './state.js';
import { tceFirstValid, tceRuns, tceValidRun, TCE_PERM_MASK, type TceTable } from './tce-table.js';
import type { Tx } from './tx.js';
import { fromHex, toHex, toHexRecord, type Hex } from './u64.js';

/**
 * The platform hypervisor under a pSeries partition (ppc-platform.md 3.3, "VFIO inside an LPAR"):
 * when the modelled kernel is itself a partition, every TCE it writes for a VFIO sPAPR container goes
 * to the hypervisor through `tce_exchange_pseries` (arch/powerpc/platforms/pseries/iommu.c): H_GET_TCE,
 * then H_PUT_TCE only when that returned H_SUCCESS, and the RAW hcall status comes back (not an
 * errno), the entry unchanged on failure. That is the one path on which H_HARDWARE, H_BUSY and
 * H_NOT_ENOUGH_RESOURCES reach Linux from a TCE hcall (docs/model.md says why QEMU and KVM never
 * answer them).
 *
 * Only PowerVM is modelled as answering anything but H_SUCCESS here. QEMU answers an in-range entry
 * H_SUCCESS (H_PARAMETER only out of range, which the container's own checks exclude), so a pSeries
 * PHB under QEMU (the default) refuses both knobs with EINVAL, as does a PowerNV PHB, whose TCEs the
 * kernel writes itself.
 *
 * - I/O entitlement (LoPAR CMO option, "CMO Extensions for I/O Mapping Hcall()s"): H_PUT_TCE answers
 *   H_NOT_ENOUGH_RESOURCES when the write "would cause more memory to be I/O mapped than the caller is
 *   entitled to I/O map". The I/O-mapped bytes are valid TCEs x page size over the paging domains of
 *   the PowerVM PHBs' PEs; only a write that turns an invalid entry valid adds to them, so clears and
 *   overwrites always pass. Setting the entitlement below what is mapped is accepted (the partition
 *   keeps its mappings; only new ones fail), as an HMC change of a running partition's entitlement is.
 * - Injected faults: LoPAR lists H_Hardware for the TCE hcalls without saying when it happens (a
 *   hardware error: an input to the model), and H_Busy comes from the CMO option's wait for an
 *   expropriated page (LoPAR gives no TCE hcall H_Busy itself; the model injects H_BUSY, +1, to stand
 *   for the positive statuses, which no TCE path of Linux tells apart).
 *   `injectHcallFault` arms a PHB: after `afterEntries` more accepted entries, every TCE hcall on that
 *   PHB's tables gets the code, until it is cleared. The count moves only with accepted commands
 *   (`HcallEntriesAccepted`), so a refused command writes nothing, not even the count.
 * - Leaks: a table freed by TCE_REMOVE or release is cleared entry by entry first (tce_iommu_clear), and
 *   an entry whose clear is refused is skipped while the table goes: its page stays pinned for good
 *   (`TcesLeaked`, `hvReleaseTable`; docs/model.md says what ends it: nothing modelled).
 */
export type Hypervisor = 'qemu' | 'powervm';
export const HV_FAULT_CODES = ['H_HARDWARE', 'H_BUSY'] as const;
export type HvFaultCode = (typeof HV_FAULT_CODES)[number];

/** The raw statuses (asm/hvcall.h) the exchange returns and the VFIO ioctl passes up unchanged. */
export const HCALL_STATUS = { H_BUSY: 1, H_HARDWARE: -1, H_NOT_ENOUGH_RESOURCES: -44 } as const;
export type HvAnswer = keyof typeof HCALL_STATUS;

export interface HcallFault {
  readonly code: HvFaultCode;
  /** Entries the hypervisor still accepts before it answers `code` to every TCE hcall. */
  readonly remaining: number;
}

export interface PlatformHv {
  /** CMO I/O entitlement in bytes; null: the partition has no CMO (the default). */
  readonly entitlement: bigint | null;
  /** Armed faults by PHB number. */
  readonly faults: Readonly<Record<string, HcallFault>>;
}

export type PlatformHvEvent =
  | { readonly type: 'IoEntitlementSet'; readonly data: { readonly bytes: Hex | null } }
  /** `code` null disarms the PHB. */
  | { readonly type: 'HcallFaultSet'; readonly data: { readonly phb: number; readonly code: HvFaultCode | null; readonly afterEntries: number } }
  /** The armed hypervisor accepted `entries` more entries on the PHB (never more than it had left). */
  | { readonly type: 'HcallEntriesAccepted'; readonly data: { readonly phb: number; readonly entries: number } }
  /**
   * A run of valid TCEs (consecutive entries, consecutive addresses from `paddr`) whose clear the
   * hypervisor refused as their table went away: gone from the table, their bytes move from the
   * context's `pinned` to its `leakedPinned`, and a v2 container's region keeps them mapped.
   */
  | {
      readonly type: 'TcesLeaked';
      readonly data: { readonly domain: number; readonly iova: Hex; readonly paddr: Hex; readonly pgsize: Hex; readonly pgcount: number };
    };

function requirePseries(state: State, phb: number): Phb {
  const p = state.phbs[phb] ?? fail('ENODEV', `no PHB ${phb}`);
  if (p.platform !== 'pseries') fail('EINVAL', `PHB ${phb} is a PowerNV PHB: the kernel writes its TCEs itself, no hypervisor answers them`);
  return p;
}

function requirePowervm(state: State, phb: number): void {
  if (requirePseries(state, phb).hypervisor !== 'powervm') {
    fail('EINVAL', `PHB ${phb} runs under QEMU/KVM, which answers an in-range TCE hcall only with H_SUCCESS (KVM hands a failed exchange to QEMU as H_TOO_HARD)`);
  }
}

/** Whether a PHB's TCE hcalls are answered by the modelled platform hypervisor. */
export function hvAnswers(state: State, phb: number): boolean {
  return state.phbs[phb]?.hypervisor === 'powervm';
}

/** Bytes the partition has I/O mapped: valid TCEs x page size over the domains of PowerVM PHBs. */
export function ioMappedBytes(state: State): bigint {
  let n = 0n;
  for (const d of Object.values(state.domains)) if (hvAnswers(state, state.pes[d.pe]!.phb)) n += domainMappedBytes(d);
  return n;
}

export function setIoEntitlement(tx: Tx, bytes: bigint | null): Output {
  const phb = Object.values(tx.state.phbs).find((p) => p.hypervisor === 'powervm');
  if (!phb) fail('EINVAL', 'no PHB runs under PowerVM: the I/O entitlement is a PowerVM partition property (QEMU/KVM and PowerNV have none)');
  if (bytes !== tx.state.platformHv.entitlement) tx.emit({ type: 'IoEntitlementSet', data: { bytes: bytes === null ? null : toHex(bytes) } });
  return { entitlement: bytes === null ? null : toHex(bytes), ioMapped: toHex(ioMappedBytes(tx.state)) };
}

export function injectHcallFault(tx: Tx, phb: number, code: HvFaultCode | null, afterEntries: number | undefined): Output {
  requirePowervm(tx.state, phb);
  if (afterEntries !== undefined && (!Number.isSafeInteger(afterEntries) || afterEntries < 0)) fail('EINVAL', `afterEntries ${afterEntries} is not a count`);
  if (code === null && afterEntries !== undefined) fail('EINVAL', 'afterEntries counts down to a fault: clearing takes none');
  const now = tx.state.platformHv.faults[phb];
  const after = afterEntries ?? 0;
  if (code !== null ? now?.code !== code || now.remaining !== after : now !== undefined) {
    tx.emit({ type: 'HcallFaultSet', data: { phb, code, afterEntries: after } });
  }
  return { phb, code, afterEntries: code === null ? null : after };
}

/** A query: what the hypervisor of a pSeries PHB would answer, and the partition's I/O mapping. */
export function platformHvInfo(state: State, phb: number): Output {
  const p = requirePseries(state, phb);
  const fault = state.platformHv.faults[phb];
  const e = state.platformHv.entitlement;
  return {
    hypervisor: p.hypervisor, entitlement: e === null ? null : toHex(e), ioMapped: toHex(ioMappedBytes(state)),
    fault: fault?.code ?? null, afterEntries: fault?.remaining ?? null, leaked: toHexRecord(state.leakedPinned),
  };
}

/**
 * One TCE build (tce_iommu_build / tce_iommu_build_v2) over `count` entries from `first` of `table`,
 * mirrored into `mirrors` tables: entry by entry until the hypervisor refuses one, then the rollback
 * (tce_iommu_clear of the entries written), whose failed exchanges are skipped.
 */
export interface BuildOutcome {
  /** Entries written before the refused one. */
  readonly written: number;
  /** Of those, how many the rollback cleared (from the first); the others stay mapped. */
  readonly rolledBack: number;
  /** The hypervisor's answer to the refused entry; null when every entry was written. */
  readonly answer: HvAnswer | null;
  /** Exchanges the hypervisor accepted (writes and clears), for the fault's count. */
  readonly accepted: number;
}

export function hvBuild(state: State, phb: number, table: TceTable, first: number, count: number, mirrors: number): BuildOutcome {
  const fault = state.platformHv.faults[phb];
  const byFault = fault ? fault.remaining : Infinity;
  const byEntitlement = entitlementStop(state, table, first, count, mirrors);
  const written = Math.min(count, byFault, byEntitlement);
  if (written === count) return { written, rolledBack: 0, answer: null, accepted: count };
  // The fault answers before the entitlement: its H_GET_TCE fails before any H_PUT_TCE is tried.
  const answer = byFault <= byEntitlement ? fault!.code : 'H_NOT_ENOUGH_RESOURCES';
  // Clears pass the entitlement; an armed fault lets through only what it has left after the writes.
  const rolledBack = fault ? Math.min(written, fault.remaining - written) : written;
  return { written, rolledBack, answer, accepted: written + rolledBack };
}

/** tce_iommu_clear of `count` entries: every failed exchange is skipped, the ioctl still returns 0. */
export function hvClear(state: State, phb: number, count: number): { readonly cleared: number; readonly answer: HvFaultCode | null } {
  const fault = state.platformHv.faults[phb];
  const cleared = fault ? Math.min(count, fault.remaining) : count;
  return { cleared, answer: cleared < count ? fault!.code : null };
}

/** The offset of the first entry whose write would pass the entitlement; Infinity when none would. */
function entitlementStop(state: State, table: TceTable, first: number, count: number, mirrors: number): number {
  const entitlement = state.platformHv.entitlement;
  if (entitlement === null) return Infinity;
  const left = entitlement - ioMappedBytes(state);
  const perEntry = BigInt(mirrors) << BigInt(table.pageShift);
  const fits = left <= 0n ? 0 : Number(left / perEntry > BigInt(count) ? BigInt(count) : left / perEntry);
  // Only invalid entries add to the mapped bytes: find the (fits+1)-th invalid one.
  let seen = 0;
  let at = first;
  for (const s of validStretches(table, first, count)) {
    const holes = s.index - at;
    if (seen + holes > fits) return at + (fits - seen) - first;
    seen += holes;
    at = s.index + s.count;
  }
  const holes = first + count - at;
  return seen + holes > fits ? at + (fits - seen) - first : Infinity;
}

/** The stretches of valid entries in [first, first+count), in index order (never-written levels skipped). */
export function* validStretches(table: TceTable, first: number, count: number): Generator<{ readonly index: number; readonly count: number }> {
  const end = first + count;
  for (let i = first; i < end; ) {
    const v = tceFirstValid(table, i, end - i);
    if (v < 0) return;
    const run = tceValidRun(table, v, end - v);
    yield { index: v, count: run };
    i = v + run;
  }
}

/**
 * tce_iommu_clear of a whole table that is about to be freed (SPAPR_TCE_REMOVE, container release):
 * every entry is exchanged from the first, and one the hypervisor refuses is skipped, so its page is
 * never unused (v1: the page stays pinned; v2: the region's mapped count never drops) while the table
 * is freed and the window removed. Emits TcesLeaked, for each of `domains` (the groups' copies of the
 * table), for the valid entries past those the hypervisor accepted, and moves the fault's count; the
 * caller clears the accepted ones as it frees the domains.
 */
export function hvReleaseTable(tx: Tx, phb: number, domains: readonly number[], w: DomainWindow): void {
  const { cleared } = hvClear(tx.state, phb, w.table.size);
  const step = 1n << BigInt(w.table.pageShift);
  for (const r of tceRuns(w.table)) {
    const skip = Math.max(0, cleared - r.index);
    if (skip >= r.count) continue;
    const index = r.index + skip;
    const data = {
      iova: toHex(w.start + BigInt(index) * step), paddr: toHex((r.first & ~TCE_PERM_MASK) + BigInt(skip) * step), pgsize: toHex(step), pgcount: r.count - skip,
    };
    for (const domain of domains) tx.emit({ type: 'TcesLeaked', data: { domain, ...data } });
  }
  countAccepted(tx, phb, cleared);
}

/** Moves an armed PHB's count by the entries an accepted command got through. */
export function countAccepted(tx: Tx, phb: number, entries: number): void {
  const fault = tx.state.platformHv.faults[phb];
  if (!fault || fault.remaining === 0 || entries === 0) return;
  tx.emit({ type: 'HcallEntriesAccepted', data: { phb, entries: Math.min(entries, fault.remaining) } });
}

export function evolvePlatformHv(state: State, event: PlatformHvEvent): State {
  const hv = state.platformHv;
  switch (event.type) {
    case 'IoEntitlementSet':
      return patch(state, { platformHv: { ...hv, entitlement: event.data.bytes === null ? null : fromHex(event.data.bytes) } });
    case 'HcallFaultSet': {
      const d = event.data;
      const faults = d.code === null ? drop(hv.faults, d.phb) : put(hv.faults, d.phb, { code: d.code, remaining: d.afterEntries });
      return patch(state, { platformHv: { ...hv, faults } });
    }
    case 'HcallEntriesAccepted': {
      const f = hv.faults[event.data.phb]!;
      return patch(state, { platformHv: { ...hv, faults: put(hv.faults, event.data.phb, { ...f, remaining: f.remaining - event.data.entries }) } });
    }
    case 'TcesLeaked':
      return evolveLeak(state, event.data);
  }
}

function evolveLeak(state: State, e: Extract<PlatformHvEvent, { type: 'TcesLeaked' }>['data']): State {
  const d = state.domains[e.domain]!;
  const pgsize = fromHex(e.pgsize);
  const bytes = pgsize * BigInt(e.pgcount);
  const next = withDomainTces(state, d, unmapRange(d, fromHex(e.iova), bytes));
  const leakedPinned = put(next.leakedPinned, d.context, (next.leakedPinned[d.context] ?? 0n) + bytes);
  if (!state.spapr[d.context]?.v2) return patch(next, { leakedPinned });
  // A v2 TCE lies in a region the container preregistered (MAP_DMA checks it); a run may span two adjacent ones.
  const first = fromHex(e.paddr);
  const end = first + bytes;
  const prereg = next.prereg.map((r) => {
    const overlap = (end < r.ua + r.size ? end : r.ua + r.size) - (first > r.ua ? first : r.ua);
    return overlap > 0n ? { ...r, leaked: r.leaked + Number(overlap / pgsize) } : r;
  });
  return patch(next, { leakedPinned, prereg });
}
