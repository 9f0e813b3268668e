import {
  EEH_MAX_FREEZES, EEH_PE_RECOVERING, eehOf, mergeErsResult, type Bdf, type ErsResult, type PeId, type ResetKind, type State,
} from '@iommu-orch/core';
import type { Saga, SagaResult, StepOutcome, View } from './saga.js';

/** What one driver's EEH error handlers answer; a callback it lacks is skipped (the result is unchanged). */
export interface DriverHandlers {
  readonly errorDetected: ErsResult;
  readonly mmioEnabled?: ErsResult;
  readonly slotReset?: ErsResult;
}

/** The EEH-aware drivers by name; a driver not listed has no err_handler and is skipped. */
export type EehHandlers = Readonly<Record<string, DriverHandlers>>;

export interface EehRecoveryOptions {
  /** FUNDAMENTAL when a device needs_freset, else HOT. */
  readonly resetKind?: ResetKind;
}

/**
 * eeh_handle_normal_event as a saga (ppc-platform.md 5.4): error_detected merged over the EEH-aware
 * drivers (NEED_RESET > DISCONNECT > CAN_RECOVER > RECOVERED > NO_AER_DRIVER > NONE), then by result:
 * DISCONNECT fails the PE; NONE (no EEH-aware driver) is a full-hotplug reset; CAN_RECOVER thaws MMIO,
 * asks mmio_enabled, thaws DMA; NEED_RESET resets (hot or fundamental by PE type, in core) and asks
 * slot_reset; RECOVERED or NONE resume. Anything else, and the sixth freeze within the hour, is a
 * permanent failure: the PE's devices are removed. A passed-through PE is never recovered here: the
 * host queues no recovery for it, its owner drives VFIO_EEH_PE_OP.
 *
 * Each step re-reads the state: a device removed under the recovery shrinks the driver set, and a PE
 * that went away ends the saga `aborted` with nothing left behind.
 */
export function* recoverPe(view: View, pe: PeId, handlers: EehHandlers, options: EehRecoveryOptions = {}): Saga {
  const saga = 'eeh-recovery';
  const s = view();
  if (!s.pes[pe]) return { saga, outcome: 'aborted', reason: `PE ${pe} is gone` };
  const rec = eehOf(s, pe);
  if (!(rec.state & EEH_PE_RECOVERING)) return { saga, outcome: 'aborted', reason: `PE ${pe} has no recovery queued` };
  if (rec.freezeCount > EEH_MAX_FREEZES) return yield* fail(pe, `froze ${rec.freezeCount} times within an hour`);
  if (present(s, pe).length === 0) return yield* fail(pe, 'no device present');

  let r = yield { type: 'eehReport', pe, phase: 'error_detected', result: merged(view(), pe, handlers, 'errorDetected', 'none') };
  if (!r?.ok) return stopped(saga, 'error_detected', r);
  let result = r.output.result as ErsResult;
  if (result === 'disconnect') return yield* fail(pe, 'a driver asked to disconnect');
  if (result === 'none') {
    r = yield { type: 'eehHotplugReset', pe };
    return r?.ok ? { saga, outcome: 'done', reason: `full hotplug: now ${String(r.output.pe)}` } : stopped(saga, 'hotplug reset', r);
  }
  if (result === 'can_recover') {
    r = yield { type: 'eehThaw', pe, what: 'mmio' };
    if (!r?.ok) return stopped(saga, 'thaw MMIO', r);
    const mmio = merged(view(), pe, handlers, 'mmioEnabled', null);
    if (mmio !== null) {
      r = yield { type: 'eehReport', pe, phase: 'mmio_enabled', result: mmio };
      if (!r?.ok) return stopped(saga, 'mmio_enabled', r);
      result = r.output.result as ErsResult;
    }
    if (result === 'can_recover') {
      r = yield { type: 'eehThaw', pe, what: 'dma' };
      if (!r?.ok) return stopped(saga, 'thaw DMA', r);
      result = r.output.result as ErsResult;
    }
  }
  if (result === 'need_reset') {
    r = yield { type: 'eehReset', pe, kind: options.resetKind ?? 'hot' };
    if (!r?.ok) return stopped(saga, 'reset', r);
    r = yield { type: 'eehReport', pe, phase: 'slot_reset', result: merged(view(), pe, handlers, 'slotReset', 'none') };
    if (!r?.ok) return stopped(saga, 'slot_reset', r);
    result = r.output.result as ErsResult;
  }
  if (result !== 'recovered' && result !== 'none') return yield* fail(pe, `recovery ended with ${result}`);
  r = yield { type: 'eehResume', pe };
  return r?.ok ? { saga, outcome: 'done' } : stopped(saga, 'resume', r);
}

function* fail(pe: PeId, reason: string): Saga {
  const r = yield { type: 'eehFail', pe, reason };
  return r?.ok ? { saga: 'eeh-recovery', outcome: 'failed', reason } : stopped('eeh-recovery', 'permanent failure', r);
}

function stopped(saga: string, step: string, r: StepOutcome | undefined): SagaResult {
  return { saga, outcome: 'aborted', reason: `${step}: ${r?.ok === false ? r.code : 'no outcome'}` };
}

/** Devices of the PE still present (bridges included: a PE with only a bridge left still has one). */
function present(s: State, pe: PeId): Bdf[] {
  return (s.pes[pe]?.devices ?? []).filter((b) => s.devices[b] !== undefined);
}

/** Actionable devices whose driver has EEH handlers. */
function aware(s: State, pe: PeId, handlers: EehHandlers): Bdf[] {
  return present(s, pe).filter((b) => {
    const d = s.devices[b]!;
    return d.driver !== null && Object.hasOwn(handlers, d.driver);
  });
}

/** The merged answer of one callback over the EEH-aware drivers; `start` when none has that callback. */
function merged<T extends ErsResult | null>(s: State, pe: PeId, handlers: EehHandlers, cb: keyof DriverHandlers, start: T): ErsResult | T {
  let out: ErsResult | T = start;
  for (const b of aware(s, pe, handlers)) {
    const v = handlers[s.devices[b]!.driver!]![cb];
    if (v !== undefined) out = out === null ? v : mergeErsResult(out, v);
  }
  return out;
}
