import type { Command, ErrorCode, Output, State } from '@iommu-orch/core';
import type { Orchestrator } from '../orchestrator.js';

/**
 * A saga is a multi-step operation written as a generator: it yields one command at a time (or WAIT
 * when it must let others act first), is resumed with that command's outcome, and ends with a result.
 * Each step re-reads the current state through `view`, so steps of different sagas can interleave
 * freely: that interleaving is where races live. A saga that fails half-way undoes what it did
 * (compensation) and ends `compensated`.
 *
 * The same generator runs under the async orchestrator (runSaga below, which race tests drive through
 * fast-check's scheduler) and under the stress runner's seeded scheduler.
 */
export type StepOutcome =
  | { readonly ok: true; readonly output: Output }
  | { readonly ok: false; readonly code: ErrorCode };

/** Yielded when a saga cannot go on until another actor has acted (an owner's release). */
export const WAIT = { wait: true } as const;
export type SagaStep = Command | typeof WAIT;

export interface SagaResult {
  readonly saga: string;
  /** `failed`: the saga reached a failure the model records (an EEH permanent failure). */
  readonly outcome: 'done' | 'compensated' | 'aborted' | 'failed';
  readonly reason?: string;
}

export type Saga = Generator<SagaStep, SagaResult, StepOutcome | undefined>;

/** Reads the state as it is now: a saga never keeps a state across steps. */
export type View = () => State;

export function isWait(step: SagaStep): step is typeof WAIT {
  return step === WAIT;
}

export interface RunSagaOptions {
  /** Awaited before every step: a race test hands the order of steps to a scheduler here. */
  readonly gate?: (label: string) => Promise<void>;
  /** WAIT steps allowed before the saga is given up (ends `aborted`). */
  readonly maxWaits?: number;
  /** Names the saga in the result when it is given up. */
  readonly name?: string;
}

/** Drives a saga against an orchestrator, one awaited command per step. */
export async function runSaga(orchestrator: Orchestrator, saga: Saga, options: RunSagaOptions = {}): Promise<SagaResult> {
  const maxWaits = options.maxWaits ?? 10_000;
  let waits = 0;
  let next = saga.next(undefined);
  while (!next.done) {
    const step = next.value;
    await options.gate?.(isWait(step) ? 'wait' : step.type);
    if (isWait(step)) {
      if (++waits > maxWaits) return { saga: options.name ?? 'saga', outcome: 'aborted', reason: `still waiting after ${maxWaits} turns` };
      next = saga.next(undefined);
      continue;
    }
    const r = await orchestrator.execute(step);
    next = saga.next(r.ok ? { ok: true, output: r.output } : { ok: false, code: r.error.code });
  }
  return next.value;
}
