import {
  decide, evolve, invariantsAfter, type Command, type IommuError, type IommuEvent, type Output, type State, type Violation,
} from '@iommu-orch/core';
import type { Fault } from './faults.js';

/** A broken rule and the event (its index in the command's events) after which it was found. */
export interface EventViolation extends Violation {
  readonly event: number;
}

export type Applied =
  | {
      readonly ok: true;
      readonly events: readonly IommuEvent[];
      readonly output: Output;
      readonly state: State;
      readonly violations: readonly EventViolation[];
    }
  | { readonly ok: false; readonly error: IommuError };

export interface ApplyOptions {
  /** Check the invariants after every event (incrementally: what the event changed). */
  readonly check: boolean;
  readonly fault?: Fault | undefined;
}

/**
 * decide, then fold the events one by one, checking the invariants after each: the one pure step the
 * orchestrator, the stress runner and its shrinker share. With no check and no fault the decision's own
 * state is used, which is the fold of the same events.
 */
export function applyCommand(state: State, command: Command, options: ApplyOptions): Applied {
  const d = decide(state, command);
  if (!d.ok) return { ok: false, error: d.error };
  const events = options.fault ? options.fault.rewrite(command, d.events) : d.events;
  if (!options.check && events === d.events) return { ok: true, events, output: d.output, state: d.state, violations: [] };
  let s = state;
  const violations: EventViolation[] = [];
  for (const [i, e] of events.entries()) {
    const next = evolve(s, e);
    if (options.check) for (const v of invariantsAfter(s, next)) violations.push({ ...v, event: i });
    s = next;
  }
  return { ok: true, events, output: d.output, state: s, violations };
}
