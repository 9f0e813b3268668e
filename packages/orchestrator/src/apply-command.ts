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
 * decide, then check the invariants after each of its events: the one pure step the orchestrator, the
 * stress runner and its shrinker share. A fault rewrites the events, which are then folded again.
 */
export function applyCommand(state: State, command: Command, options: ApplyOptions): Applied {
  const d = decide(state, command);
  if (!d.ok) return { ok: false, error: d.error };
  const events = options.fault ? options.fault.rewrite(command, d.events) : d.events;
  if (!options.check && events === d.events) return { ok: true, events, output: d.output, state: d.state, violations: [] };
  // The decision folded each event already; only rewritten events need folding again.
  const states = events === d.events ? d.states : foldEach(state, events);
  const violations: EventViolation[] = [];
  if (options.check) {
    let prev = state;
    for (const [i, next] of states.entries()) {
      for (const v of invariantsAfter(prev, next)) violations.push({ ...v, event: i });
      prev = next;
    }
  }
  return { ok: true, events, output: d.output, state: states[states.length - 1] ?? state, violations };
}

function foldEach(state: State, events: readonly IommuEvent[]): State[] {
  const out: State[] = [];
  let s = state;
  for (const e of events) out.push((s = evolve(s, e)));
  return out;
}
