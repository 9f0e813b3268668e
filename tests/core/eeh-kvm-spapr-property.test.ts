import { canonicalState, decide, fold, initialState, type IommuEvent, type State } from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EEH_BOOT, eehKvmSpaprCommandsArb } from '../support/eeh-kvm-spapr-arbitraries.js';
import { expectInvariantsAlong } from '../support/fixtures.js';

/**
 * The EEH, KVM and VFIO sPAPR command mix (eeh-kvm-spapr-arbitraries.ts): the fold of the accepted
 * events equals the decided state, and every invariant holds after every event (the incremental check
 * finds nothing, the full check after each command neither).
 */
describe('EEH, KVM and VFIO sPAPR commands (fast-check)', () => {
  it('replay equals the decided state; every invariant holds after every event', () => {
    let boot: State = initialState;
    for (const c of EEH_BOOT) {
      const d = decide(boot, c);
      if (!d.ok) throw new Error(`${c.type}: ${d.error.message}`);
      boot = d.state;
    }
    fc.assert(
      fc.property(eehKvmSpaprCommandsArb, (commands) => {
        let state = boot;
        const events: IommuEvent[] = [];
        for (const [i, c] of commands.entries()) {
          const d = decide(state, c.type === 'eehFreeze' ? { ...c, at: i * 60_000 } : c);
          if (!d.ok) continue;
          expectInvariantsAlong(state, d.states);
          events.push(...d.events);
          state = d.state;
        }
        const stored = JSON.parse(JSON.stringify(events)) as IommuEvent[];
        expect(canonicalState(fold(stored, boot))).toBe(canonicalState(state));
      }),
      { numRuns: 600, seed: 6 },
    );
  });
});
