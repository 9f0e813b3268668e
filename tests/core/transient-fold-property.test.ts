import { canonicalState, decide, fold, initialState, transientSession, withTransientTables, type Command, type IommuEvent, type State } from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bootCommands, commandsArb, iommufdBootCommands, iommufdCommandsArb } from '../support/arbitraries.js';
import { deviceBoot, deviceCommandsArb } from '../support/device-arbitraries.js';
import { EEH_BOOT, eehKvmSpaprCommandsArb } from '../support/eeh-kvm-spapr-arbitraries.js';

/**
 * Transient folds (core's transient.ts) change nothing but speed: a log folded in pages, each page
 * inside its own `withTransientTables` call as replay does, gives the state the persistent fold gives,
 * and the state each page starts from (a persistent state, or the result of the page before) is exactly
 * what it was before the page ran. Every command family, so that every object file's evolve runs in
 * place at least once. The same with one session across all the pages, as replay folds: there only the
 * state the session starts from must stay as it was.
 */
const FAMILIES: readonly (readonly [string, readonly Command[], fc.Arbitrary<Command[]>])[] = [
  ['kernel domains', bootCommands, commandsArb],
  ['iommufd', iommufdBootCommands, iommufdCommandsArb],
  ['hotplug, SR-IOV and slots', deviceBoot, deviceCommandsArb],
  ['EEH, KVM and VFIO sPAPR', EEH_BOOT, eehKvmSpaprCommandsArb],
];

/** The accepted events of a command log, as the store hands them back (JSON round trip). */
function eventsOf(commands: readonly Command[]): IommuEvent[] {
  let state = initialState;
  const events: IommuEvent[] = [];
  for (const [i, c] of commands.entries()) {
    // EEH freezes spread over time, as the EEH property test does: the freeze count is per hour.
    const d = decide(state, c.type === 'eehFreeze' ? { ...c, at: i * 60_000 } : c);
    if (!d.ok) continue;
    events.push(...d.events);
    state = d.state;
  }
  return JSON.parse(JSON.stringify(events)) as IommuEvent[];
}

describe('transient folds (fast-check)', () => {
  for (const [name, boot, arb] of FAMILIES) {
    it(`${name}: paged transient fold equals the persistent fold and leaves each page's input state unchanged`, () => {
      fc.assert(
        fc.property(arb, fc.nat(), fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 12 }), (commands, split, pages) => {
          const events = eventsOf([...boot, ...commands]);
          const persistent = fold(events, initialState);
          // Start part-way, from a persistent state, as replay does from a snapshot.
          const start = split % (events.length + 1);
          let state: State = fold(events.slice(0, start), initialState);
          const inputs: [State, State][] = [];
          for (let at = start, p = 0; at < events.length; at += pages[p++ % pages.length]!) {
            const page = events.slice(at, at + pages[p % pages.length]!);
            const input = state;
            inputs.push([input, structuredClone(input)]);
            state = withTransientTables(() => fold(page, input));
          }
          expect(canonicalState(state)).toBe(canonicalState(persistent));
          expect(state.version).toBe(events.length);
          for (const [input, copy] of inputs) expect(input).toStrictEqual(copy);
        }),
        { numRuns: 100 },
      );
    });

    it(`${name}: one transient session across the pages (replay) equals the persistent fold and leaves the start state unchanged`, () => {
      fc.assert(
        fc.property(arb, fc.nat(), fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 12 }), (commands, split, pages) => {
          const events = eventsOf([...boot, ...commands]);
          const start = split % (events.length + 1);
          const input = fold(events.slice(0, start), initialState);
          const copy = structuredClone(input);
          const session = transientSession();
          let state = input;
          for (let at = start, p = 0; at < events.length; at += pages[p++ % pages.length]!) {
            const page = events.slice(at, at + pages[p % pages.length]!);
            const from = state;
            state = session.run(() => fold(page, from));
          }
          expect(canonicalState(state)).toBe(canonicalState(fold(events, initialState)));
          expect(input).toStrictEqual(copy);
        }),
        { numRuns: 100 },
      );
    });
  }
});
