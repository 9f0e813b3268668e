/**
 * Transient folds: copy-on-write relaxed for what a fold allocated itself.
 *
 * A state handed out is persistent: nothing reachable from it is ever written again, so any state can
 * be kept, compared and folded further (decide keeps one per event, audits diff two). Inside a
 * transient scope the rule is relaxed for the objects the scope allocated: the first change to the
 * State, one of its records or a TCE table node copies it and marks the copy owned; later changes in
 * the same scope write the owned copy in place. Invariant: an object allocated before the scope opened
 * (the input state and all it reaches) is never owned, so it is never written.
 *
 * Two kinds of scope:
 * - each `evolve` runs in one (its own when none is open): an event that changes the State, a record
 *   or a table node several times copies each once, and its result is persistent again once it returns;
 * - `withTransientTables(fn)` opens one around a batch of events, for a caller that keeps none of the
 *   states between them: each object is then copied once per batch, not once per event. The states
 *   between two events of the batch are written in place later, so they must not escape `fn`;
 *   `transientSession()` stretches one such scope over several calls (replay's pages).
 *
 * Ownership is a Set, not a mark on the objects: a mark would be copied by the spreads that make the
 * persistent copies and would change the records' shapes. It dies with its scope.
 */
let owned: Set<object> | null = null;
/** Whether the open scope is a batch's (`withTransientTables`) rather than one event's. */
let batch = false;

/**
 * Runs `fn` (synchronously) in a new transient scope: objects allocated inside it may be written in place
 * by later changes inside it. Only for folds whose intermediate states nobody keeps; the state `fn` starts
 * from, and everything allocated before the call, stay untouched.
 */
export function withTransientTables<T>(fn: () => T): T {
  return inScope(new Set(), fn);
}

/** A batch scope that several synchronous calls share (see `transientSession`). */
export interface TransientSession {
  run<T>(fn: () => T): T;
}

/**
 * One batch scope over several calls: each `run(fn)` folds with the ownership of every earlier run of
 * the session, so an object is copied once per session, not once per call. For a caller that folds a
 * log in pages read asynchronously between the calls (replay) and keeps none of the states it passes
 * from one run to the next: those are written in place by later runs. The scope is closed between
 * runs, so code running meanwhile (while the caller awaits its next page) never allocates into it.
 */
export function transientSession(): TransientSession {
  const mine = new Set<object>();
  return { run: (fn) => inScope(mine, fn) };
}

function inScope<T>(scope: Set<object>, fn: () => T): T {
  const outer = owned;
  const outerBatch = batch;
  owned = scope;
  batch = true;
  try {
    return fn();
  } finally {
    owned = outer;
    batch = outerBatch;
  }
}

/** Whether a batch's scope is open: what it allocates ends up in a state only its caller sees. */
export function inBatch(): boolean {
  return batch;
}

/** Opens a scope unless one is open; true when it did (the caller closes it with `closeScope`, in a finally). */
export function openScope(): boolean {
  if (owned !== null) return false;
  owned = new Set();
  return true;
}

export function closeScope(opened: boolean): void {
  if (opened) owned = null;
}

/** Whether the open scope allocated `x`, so that a change may write it in place. */
export function isOwned(x: object): boolean {
  return owned !== null && owned.has(x);
}

/** Marks a fresh copy as the open scope's own (outside a scope it stays persistent); returns it. */
export function own<T extends object>(x: T): T {
  owned?.add(x);
  return x;
}
