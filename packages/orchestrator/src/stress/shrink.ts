import { initialState, toHex, type Command, type State } from '@iommu-orch/core';
import { applyCommand } from '../apply-command.js';
import type { Fault } from '../faults.js';

/**
 * Shrinking a failing stress run to a minimal reproduction. The failure is "some event of the
 * sequence breaks rule R" (with the same fault, if any, injected); delta debugging (Zeller's ddmin,
 * complements only) drops chunks of commands while the failure persists, then single commands, then
 * whatever the shorter sequence refuses. Dropping a command can change the ids later commands name
 * (domain numbers, group numbers); such candidates simply stop failing and are not taken.
 */
export interface ShrinkOptions {
  readonly rule: string;
  readonly fault?: Fault | undefined;
  /** Candidate sequences tried at most (each is a replay); keeps a huge history bounded. */
  readonly budget?: number;
}

/** Index of the command whose events first break `rule`, or -1. */
export function failsAt(commands: readonly Command[], rule: string, fault: Fault | undefined, from: State = initialState, offset = 0): number {
  let s = from;
  for (const [i, c] of commands.entries()) {
    const a = applyCommand(s, c, { check: true, fault });
    if (!a.ok) continue;
    if (a.violations.some((v) => v.rule === rule)) return offset + i;
    s = a.state;
  }
  return -1;
}

export function shrink(history: readonly Command[], o: ShrinkOptions): Command[] {
  const at = failsAt(history, o.rule, o.fault);
  if (at < 0) throw new Error(`the history does not break ${o.rule}`);
  let items = history.slice(0, at + 1);
  let budget = o.budget ?? 20_000;
  // States after each prefix of `items`, so a candidate that drops [a, b) replays from a, not from 0.
  let prefix = prefixStates(items, o.fault);
  const fails = (start: number, rest: readonly Command[]) => {
    budget--;
    return failsAt(rest, o.rule, o.fault, prefix[start]!, 0) >= 0;
  };
  let n = 2;
  while (items.length >= 2 && budget > 0) {
    const chunk = Math.ceil(items.length / n);
    let reduced = false;
    for (let start = 0; start < items.length && budget > 0; start += chunk) {
      const rest = items.slice(start + chunk);
      if (fails(start, rest)) {
        items = [...items.slice(0, start), ...rest];
        // The failure may now come earlier: what follows it is not needed.
        items = items.slice(0, failsAt(items, o.rule, o.fault) + 1);
        prefix = prefixStates(items, o.fault);
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= items.length) break;
      n = Math.min(items.length, n * 2);
    }
  }
  // Refused commands write nothing: a reproduction does not need them.
  const kept: Command[] = [];
  let s = initialState;
  for (const c of items) {
    const a = applyCommand(s, c, { check: false, fault: o.fault });
    if (!a.ok) continue;
    kept.push(c);
    s = a.state;
  }
  return failsAt(kept, o.rule, o.fault) >= 0 ? kept : items;
}

function prefixStates(items: readonly Command[], fault: Fault | undefined): State[] {
  const out: State[] = [initialState];
  let s = initialState;
  for (const c of items) {
    const a = applyCommand(s, c, { check: false, fault });
    if (a.ok) s = a.state;
    out.push(s);
  }
  return out;
}

/** A command as scenario JSON (docs/scenario-format.md): u64 values as hex strings, prot as "r" / "w" / "rw". */
export function commandJson(c: Command): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === 'bigint') out[k] = toHex(v);
    else if (k === 'prot' && typeof v === 'object' && v !== null) {
      const p = v as { read: boolean; write: boolean };
      out[k] = `${p.read ? 'r' : ''}${p.write ? 'w' : ''}`;
    } else out[k] = v;
  }
  return out;
}

/** The reproduction as a scenario: every command with the outcome it had, the last one the rule-breaker. */
export function reproScenario(commands: readonly Command[], o: { name: string; description: string; fault?: Fault | undefined }): Record<string, unknown> {
  let s = initialState;
  const steps = commands.map((c) => {
    const a = applyCommand(s, c, { check: false, fault: o.fault });
    if (a.ok) s = a.state;
    return { ...commandJson(c), expect: a.ok ? 'ok' : { error: a.error.code } };
  });
  return { name: o.name, description: o.description, clock: { start: '2026-01-01T00:00:00.000Z', stepMs: 1000 }, commands: steps };
}
