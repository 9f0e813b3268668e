import type { Output } from './commands.js';
import { fail } from './errors.js';
import type { Bdf } from './pci.js';
import { drop, patch, put, type Device, type Pe, type PeId, type State } from './state.js';
import { addDevice, removeDevice, removeFunction } from './topology.js';
import type { Tx } from './tx.js';

/**
 * Enhanced Error Handling (ppc-platform.md section 5): a PE freezes (its MMIO and DMA stop) on an
 * error; the host recovers it through the drivers' error handlers and a reset, or the owner of a
 * passed-through PE recovers it through VFIO_EEH_PE_OP.
 *
 * The EEH record of a PE is bookkeeping beside the PE: absent until its first freeze, dropped with the
 * PE. Nothing here touches windows or TCE tables: they live in host RAM and no PE or PHB reset
 * changes them (a PHB complete reset re-programs the TVT from skiboot's cache), so a recovered PE
 * translates exactly as before its freeze. Only the full-hotplug recovery (no EEH-aware driver)
 * removes and re-adds the devices, which gives new PEs and new group ids.
 *
 * Invariants (invariants.ts): a record's PE exists (the record goes with it); a counted freeze has
 * its time stamp. By construction: a reset is asserted only with the PE frozen and isolated, and the
 * deassert clears all three; ISOLATED is cleared only once both MMIO and DMA are thawed.
 */

/** EEH_PE_* state bits (asm/eeh.h). */
export const EEH_PE_ISOLATED = 1 << 0;
export const EEH_PE_RECOVERING = 1 << 1;
export const EEH_PE_CFG_BLOCKED = 1 << 2;
export const EEH_PE_RESET = 1 << 3;
export const EEH_PE_REMOVED = 1 << 10;

/** eeh_max_freezes: the sixth freeze inside the window is a permanent failure. */
export const EEH_MAX_FREEZES = 5;
/** The freeze count restarts when more than an hour (event time) passed since the first counted freeze. */
export const EEH_FREEZE_WINDOW_MS = 3600_000;

/** PCI_ERS_RESULT_* names, in the kernel's merge priority (lowest first). */
export const ERS_RESULTS = ['none', 'no_aer_driver', 'recovered', 'can_recover', 'disconnect', 'need_reset'] as const;
export type ErsResult = (typeof ERS_RESULTS)[number];

/** pci_ers_merge_result: the higher priority wins; NEED_RESET outranks DISCONNECT. */
export function mergeErsResult(a: ErsResult, b: ErsResult): ErsResult {
  return ERS_RESULTS.indexOf(a) >= ERS_RESULTS.indexOf(b) ? a : b;
}

/** EEH PE types (EEH_PE_PHB, DEVICE/BUS, VF) as the reset path picks them. */
export type EehPeType = 'phb' | 'bus' | 'vf';

/** What a PE reset asserts, by PE type (eeh-powernv.c; pSeries through ibm,set-slot-reset). */
export type ResetScope =
  | 'phb-complete' | 'root-port-hot' | 'root-port-fundamental' | 'secondary-bus' | 'bridge-fundamental' | 'vf-flr' | 'rtas-slot-reset';
export type ResetKind = 'hot' | 'fundamental';

export interface EehPe {
  /** EEH_PE_* bits. */
  readonly state: number;
  readonly mmioFrozen: boolean;
  readonly dmaFrozen: boolean;
  readonly freezeCount: number;
  /** Event time (ms) of the first freeze counted in the current one-hour window; null before any. */
  readonly tstamp: number | null;
  /** Merged driver result of the recovery in progress; null outside one. */
  readonly result: ErsResult | null;
}

export type EehEvent =
  | {
      readonly type: 'EehFrozen';
      readonly data: {
        readonly pe: PeId;
        readonly cause: 'inject' | 'access';
        /** The host queued a recovery (the PE is not passed through): RECOVERING, and the freeze counted. */
        readonly recovering: boolean;
        readonly freezeCount: number;
        readonly tstamp: number | null;
      };
    }
  | {
      readonly type: 'EehReported';
      /** `thawed`: no driver call, the DMA thaw of a CAN_RECOVER recovery left the PE active (RECOVERED). */
      readonly data: { readonly pe: PeId; readonly phase: 'error_detected' | 'mmio_enabled' | 'slot_reset' | 'thawed'; readonly result: ErsResult };
    }
  | { readonly type: 'EehThawed'; readonly data: { readonly pe: PeId; readonly what: 'mmio' | 'dma' } }
  | { readonly type: 'EehResetAsserted'; readonly data: { readonly pe: PeId; readonly kind: ResetKind; readonly scope: ResetScope } }
  | { readonly type: 'EehResetDeasserted'; readonly data: { readonly pe: PeId } }
  | { readonly type: 'EehRecovered'; readonly data: { readonly pe: PeId } }
  | { readonly type: 'EehPermanentFailure'; readonly data: { readonly pe: PeId; readonly reason: string } }
  | { readonly type: 'EehCountRestored'; readonly data: { readonly pe: PeId; readonly freezeCount: number; readonly tstamp: number | null } };

const NORMAL: EehPe = { state: 0, mmioFrozen: false, dmaFrozen: false, freezeCount: 0, tstamp: null, result: null };

export function eehOf(state: State, pe: PeId): EehPe {
  return state.eeh[pe] ?? NORMAL;
}

export function eehPeType(pe: Pe): EehPeType {
  if (pe.vf !== null) return 'vf';
  return pe.bus === null ? 'phb' : 'bus';
}

/** A PE is passed through while a user context owns its group (pass_dev_cnt > 0). */
export function passedThrough(state: State, pe: Pe): boolean {
  return pe.group !== null && state.groups[pe.group]?.owner != null;
}

function requirePe(state: State, id: PeId): Pe {
  const pe = state.pes[id] ?? fail('ENODEV', `no PE ${id}`);
  if (eehOf(state, id).state & EEH_PE_REMOVED) fail('ENODEV', `PE ${id} failed permanently`);
  return pe;
}

/**
 * A freeze of the PE of `bdf`: injected, or found by an access that read all-ones. A PE already
 * isolated only counts an ignored read (no event). A passed-through PE freezes too, but the host
 * leaves it to its owner: no recovery is queued and the freeze is not counted. `at` is the event time
 * (ms) the orchestrator reads from its clock: core has none.
 */
export function eehFreeze(tx: Tx, bdf: Bdf, cause: 'inject' | 'access', at: number | undefined): Output {
  const dev = tx.state.devices[bdf] ?? fail('ENODEV', `no device ${bdf}`);
  const pe = requirePe(tx.state, dev.pe);
  const rec = eehOf(tx.state, pe.id);
  if (rec.state & EEH_PE_ISOLATED) return { pe: pe.id, ignored: true };
  if (passedThrough(tx.state, pe)) {
    tx.emit({ type: 'EehFrozen', data: { pe: pe.id, cause, recovering: false, freezeCount: rec.freezeCount, tstamp: rec.tstamp } });
    return { pe: pe.id, recovering: false, freezeCount: rec.freezeCount };
  }
  if (at === undefined || !Number.isFinite(at)) fail('EINVAL', 'a host freeze needs its event time (at)');
  if (rec.tstamp !== null && at < rec.tstamp) fail('EINVAL', `event time ${at} is before the PE's freeze time stamp ${rec.tstamp}`);
  // eeh_pe_update_time_stamp, then freeze_count++.
  const restart = rec.tstamp === null || rec.freezeCount <= 0 || at - rec.tstamp > EEH_FREEZE_WINDOW_MS;
  const freezeCount = (restart ? 0 : rec.freezeCount) + 1;
  const tstamp = restart ? at : rec.tstamp;
  tx.emit({ type: 'EehFrozen', data: { pe: pe.id, cause, recovering: true, freezeCount, tstamp } });
  return { pe: pe.id, recovering: true, freezeCount, permanent: freezeCount > EEH_MAX_FREEZES };
}

/** The host recovery in progress on `id` (RECOVERING set); EINVAL when there is none. */
function requireRecovery(state: State, id: PeId): Pe {
  const pe = requirePe(state, id);
  if (!(eehOf(state, id).state & EEH_PE_RECOVERING)) fail('EINVAL', `PE ${id} has no recovery in progress`);
  return pe;
}

/**
 * A driver-callback round of the host recovery: the merged result of every EEH-aware driver (the
 * saga merges them). error_detected is refused (EPERM) once the freeze limit is passed, where the
 * kernel fails the PE instead; on a PHB PE any result but NONE becomes NEED_RESET. slot_reset starts
 * from NONE (the kernel resets the result before calling it).
 */
export function eehReport(tx: Tx, id: PeId, phase: 'error_detected' | 'mmio_enabled' | 'slot_reset', result: ErsResult): Output {
  const pe = requireRecovery(tx.state, id);
  const rec = eehOf(tx.state, id);
  if (phase === 'error_detected') {
    if (rec.freezeCount > EEH_MAX_FREEZES) fail('EPERM', `PE ${id} froze ${rec.freezeCount} times within an hour: only a permanent failure is left`);
    if (rec.result !== null) fail('EINVAL', `error_detected was already reported for PE ${id}`);
  } else if (rec.result === null) fail('EINVAL', `${phase} before error_detected on PE ${id}`);
  let merged = phase === 'error_detected' || phase === 'slot_reset' ? result : mergeErsResult(rec.result!, result);
  if (phase === 'error_detected' && eehPeType(pe) === 'phb' && merged !== 'none') merged = 'need_reset';
  tx.emit({ type: 'EehReported', data: { pe: id, phase, result: merged } });
  return { result: merged };
}

/**
 * Thaws MMIO or DMA (eeh_pci_enable THAW_MMIO/THAW_DMA); already active: no event. In a host
 * recovery whose drivers said CAN_RECOVER, the DMA thaw that leaves the PE active makes it RECOVERED.
 */
export function eehThaw(tx: Tx, id: PeId, what: 'mmio' | 'dma'): Output {
  requirePe(tx.state, id);
  const rec = eehOf(tx.state, id);
  if (what === 'mmio' ? rec.mmioFrozen : rec.dmaFrozen) tx.emit({ type: 'EehThawed', data: { pe: id, what } });
  const after = eehOf(tx.state, id);
  if (after.state & EEH_PE_RECOVERING && after.result === 'can_recover' && what === 'dma' && !after.mmioFrozen && !after.dmaFrozen) {
    tx.emit({ type: 'EehReported', data: { pe: id, phase: 'thawed', result: 'recovered' } });
  }
  return { state: userState(tx.state, id), ...(after.result === null ? {} : { result: eehOf(tx.state, id).result }) };
}

/** The reset a PE type gets (section 5.5). */
export function resetScope(state: State, pe: Pe, kind: ResetKind): ResetScope {
  if (state.phbs[pe.phb]?.platform === 'pseries') return 'rtas-slot-reset';
  switch (eehPeType(pe)) {
    case 'phb':
      return 'phb-complete';
    case 'vf':
      return 'vf-flr';
    case 'bus':
      if (pe.bus === 0) return kind === 'hot' ? 'root-port-hot' : 'root-port-fundamental';
      return kind === 'hot' ? 'secondary-bus' : 'bridge-fundamental';
  }
}

/** Asserts a reset: the PE is frozen and its config space blocked until the deassert. */
export function eehResetAssert(tx: Tx, id: PeId, kind: ResetKind): ResetScope {
  const pe = requirePe(tx.state, id);
  const scope = resetScope(tx.state, pe, kind);
  tx.emit({ type: 'EehResetAsserted', data: { pe: id, kind, scope } });
  return scope;
}

/** Deasserts: BARs restored, devices re-enabled, the PE thawed and no longer isolated. */
export function eehResetDeassert(tx: Tx, id: PeId): void {
  requirePe(tx.state, id);
  const rec = eehOf(tx.state, id);
  if (rec.state & (EEH_PE_RESET | EEH_PE_ISOLATED | EEH_PE_CFG_BLOCKED) || rec.mmioFrozen || rec.dmaFrozen) {
    tx.emit({ type: 'EehResetDeasserted', data: { pe: id } });
  }
}

/** eeh_pe_reset_full for the host recovery: assert then deassert; windows and TCE tables are untouched. */
export function eehReset(tx: Tx, id: PeId, kind: ResetKind): Output {
  requireRecovery(tx.state, id);
  const scope = eehResetAssert(tx, id, kind);
  eehResetDeassert(tx, id);
  return { scope };
}

/** resume(): the recovery succeeded, RECOVERING is cleared (the freeze count stays). */
export function eehResume(tx: Tx, id: PeId): Output {
  requireRecovery(tx.state, id);
  const rec = eehOf(tx.state, id);
  if (rec.result !== 'recovered' && rec.result !== 'none') fail('EINVAL', `PE ${id} cannot resume with result ${rec.result}`);
  if (rec.mmioFrozen || rec.dmaFrozen) fail('EINVAL', `PE ${id} is still frozen`);
  tx.emit({ type: 'EehRecovered', data: { pe: id } });
  return {};
}

/**
 * Permanent failure: error_detected(io_perm_failure), the PE marked REMOVED, then every device of the
 * PE removed (a VF PE's VF through its PF, a PF with its VFs), claims forced out as on a surprise
 * removal. The PE goes with its last device, and its EEH record with it: nothing dangles.
 */
export function eehFail(tx: Tx, id: PeId, reason: string): Output {
  const pe = tx.state.pes[id] ?? fail('ENODEV', `no PE ${id}`);
  tx.emit({ type: 'EehPermanentFailure', data: { pe: id, reason } });
  const removed = removePeDevices(tx, pe);
  return { removed };
}

function removePeDevices(tx: Tx, pe: Pe): Bdf[] {
  const removed: Bdf[] = [];
  for (const bdf of [...pe.devices].reverse()) {
    const dev = tx.state.devices[bdf];
    if (!dev) continue; // went with its PF
    removed.push(bdf, ...(dev.sriov?.vfs ?? []));
    if (dev.pf !== null) removeFunction(tx, bdf, true);
    else removeDevice(tx, bdf, true);
  }
  return removed;
}

/**
 * Full-hotplug recovery (no EEH-aware driver): the PE's devices are removed and found again, which
 * releases the PE and its group and makes new ones (new group ids). The EEH PE is kept across it
 * (EEH_PE_KEEP): its freeze count and time stamp move to the PE the devices land in. VFs are not
 * re-created: the PF comes back with SR-IOV disabled (the kernel re-adds them; the model leaves
 * that to a later setNumVfs). A VF PE keeps its VF (see below). A passed-through PE never gets here
 * (the owner recovers it).
 */
export function eehHotplugReset(tx: Tx, id: PeId): Output {
  const pe = requireRecovery(tx.state, id);
  const rec = eehOf(tx.state, id);
  if (rec.result !== 'none') fail('EINVAL', `PE ${id}: a full-hotplug reset is for a PE with no EEH-aware driver`);
  const scope = resetScope(tx.state, pe, 'hot');
  if (pe.vf !== null) {
    // eeh_add_virt_device puts the VF back through its PF in the same VF PE: modelled as an FLR that keeps it.
    eehResetAssert(tx, id, 'hot');
    eehResetDeassert(tx, id);
    tx.emit({ type: 'EehRecovered', data: { pe: id } });
    return { scope, pe: id, groups: pe.group === null ? [] : [pe.group] };
  }
  const specs = pe.devices.map((b) => tx.state.devices[b]!).filter((d) => d.pf === null).map(deviceSpec);
  removePeDevices(tx, pe);
  const added = specs.map((s) => addDevice(tx, s));
  const newPe = tx.state.devices[added[0]!]!.pe;
  tx.emit({ type: 'EehCountRestored', data: { pe: newPe, freezeCount: rec.freezeCount, tstamp: rec.tstamp } });
  return { scope, pe: newPe, groups: [...new Set(added.map((b) => tx.state.devices[b]!.group).filter((g) => g !== null))] };
}

function deviceSpec(d: Device) {
  return {
    bdf: d.bdf, vendor: d.vendor, device: d.device, classCode: d.classCode, bridge: d.bridge, driver: d.driver,
    ...(d.sriov === null ? {} : { totalVfs: d.sriov.totalVfs, vfOffset: d.sriov.vfOffset, vfStride: d.sriov.vfStride, vfDevice: d.sriov.vfDevice }),
  };
}

/** EEH_PE_STATE_* as GET_STATE answers it: 0 normal, 1 reset, 2 stopped IO+DMA, 4 stopped DMA, 5 unavailable. */
export function userState(state: State, id: PeId): number {
  const rec = eehOf(state, id);
  if (rec.state & (EEH_PE_REMOVED | EEH_PE_RECOVERING)) return 5;
  if (rec.state & EEH_PE_RESET) return 1;
  if (rec.dmaFrozen) return rec.mmioFrozen ? 2 : 4;
  return rec.mmioFrozen ? 2 : 0;
}

export function evolveEeh(state: State, event: EehEvent): State {
  const id = event.data.pe;
  const rec = eehOf(state, id);
  const set = (next: EehPe): State => patch(state, { eeh: put(state.eeh, id, next) });
  switch (event.type) {
    case 'EehFrozen': {
      const d = event.data;
      const bits = EEH_PE_ISOLATED | (d.recovering ? EEH_PE_RECOVERING : 0);
      return set({ ...rec, state: rec.state | bits, mmioFrozen: true, dmaFrozen: true, freezeCount: d.freezeCount, tstamp: d.tstamp });
    }
    case 'EehReported':
      return set({ ...rec, result: event.data.result });
    case 'EehThawed': {
      const next = event.data.what === 'mmio' ? { ...rec, mmioFrozen: false } : { ...rec, dmaFrozen: false };
      return set(next.mmioFrozen || next.dmaFrozen ? next : { ...next, state: next.state & ~EEH_PE_ISOLATED });
    }
    case 'EehResetAsserted':
      return set({ ...rec, state: rec.state | EEH_PE_RESET | EEH_PE_CFG_BLOCKED | EEH_PE_ISOLATED, mmioFrozen: true, dmaFrozen: true });
    case 'EehResetDeasserted':
      return set({ ...rec, state: rec.state & ~(EEH_PE_RESET | EEH_PE_CFG_BLOCKED | EEH_PE_ISOLATED), mmioFrozen: false, dmaFrozen: false });
    case 'EehRecovered':
      return set({ ...rec, state: rec.state & ~EEH_PE_RECOVERING, result: null });
    case 'EehPermanentFailure':
      // A failed recovery of a non-VF PE leaves RECOVERING set (ppc-platform.md, fact-check note).
      return set({ ...rec, state: rec.state | EEH_PE_REMOVED, result: null });
    case 'EehCountRestored':
      return set({ ...rec, freezeCount: event.data.freezeCount, tstamp: event.data.tstamp });
  }
}

/** PeReleased drops the PE's EEH record with it. */
export function dropEeh(state: State, pe: PeId): State {
  return state.eeh[pe] === undefined ? state : patch(state, { eeh: drop(state.eeh, pe) });
}
