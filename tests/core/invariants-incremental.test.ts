import { decide, evolve, initialState, invariants, invariantsAfter, type IommuEvent, type State, type Violation } from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deviceBoot, deviceCommandsArb } from '../support/device-arbitraries.js';

/** Every state the sequence passes through, event by event, with the event that led to it. */
function walk(commands: readonly import('@iommu-orch/core').Command[]): { before: State; after: State; event: IommuEvent }[] {
  const steps: { before: State; after: State; event: IommuEvent }[] = [];
  let s = initialState;
  for (const c of [...deviceBoot, ...commands]) {
    const d = decide(s, c);
    if (!d.ok) continue;
    for (const e of d.events) {
      const next = evolve(s, e);
      steps.push({ before: s, after: next, event: e });
      s = next;
    }
  }
  return steps;
}

/** The rules the incremental check covers (tce-count needs a walk of every leaf and is full-check only). */
const rules = (vs: Violation[]) => vs.filter((v) => v.rule !== 'tce-count');

/** Damage done to a sound state, as an evolve bug would do it: each returns null when it finds nothing to damage. */
const corruptions: Record<string, (s: State, k: number) => State | null> = {
  'device leaves its group list': (s, k) => {
    const g = Object.values(s.groups).filter((x) => x.devices.length > 0)[k % 7];
    return g ? { ...s, groups: { ...s.groups, [g.id]: { ...g, devices: g.devices.slice(1) } } } : null;
  },
  'device points at another group': (s, k) => {
    const devs = Object.values(s.devices).filter((d) => d.group !== null);
    const d = devs[k % Math.max(1, devs.length)];
    const other = Object.values(s.groups).find((g) => g.id !== d?.group);
    return d && other ? { ...s, devices: { ...s.devices, [d.bdf]: { ...d, group: other.id } } } : null;
  },
  'group vanishes': (s, k) => {
    const ids = Object.keys(s.groups);
    const id = ids[k % Math.max(1, ids.length)];
    if (id === undefined) return null;
    const { [id]: _g, ...rest } = s.groups;
    return { ...s, groups: rest };
  },
  'PE vanishes': (s, k) => {
    const ids = Object.keys(s.pes);
    const id = ids[k % Math.max(1, ids.length)];
    if (id === undefined) return null;
    const { [id]: _p, ...rest } = s.pes;
    return { ...s, pes: rest };
  },
  'domain vanishes': (s, k) => {
    const ids = Object.keys(s.domains);
    const id = ids[k % Math.max(1, ids.length)];
    if (id === undefined) return null;
    const { [id]: _d, ...rest } = s.domains;
    return { ...s, domains: rest };
  },
  'pinned count drifts': (s, k) => ({ ...s, pinned: { ...s.pinned, [`vm${1 + (k % 2)}`]: (s.pinned[`vm${1 + (k % 2)}`] ?? 0n) + 0x1000n } }),
  'owner dropped with claims left': (s) => {
    const g = Object.values(s.groups).find((x) => x.owner !== null);
    return g ? { ...s, groups: { ...s.groups, [g.id]: { ...g, owner: null } } } : null;
  },
  'two PEs share a number': (s) => {
    const [a, b] = Object.values(s.pes).filter((p) => p.phb === 0);
    return a && b ? { ...s, pes: { ...s.pes, [b.id]: { ...b, number: a.number } } } : null;
  },
  'PF forgets a VF': (s) => {
    const pf = Object.values(s.devices).find((d) => (d.sriov?.vfs.length ?? 0) > 0);
    return pf ? { ...s, devices: { ...s.devices, [pf.bdf]: { ...pf, sriov: { ...pf.sriov!, vfs: pf.sriov!.vfs.slice(1) } } } } : null;
  },
  'populated slot powered off under its devices': (s) => {
    const slot = Object.values(s.slots).find((x) => x.state === 'populated' && Object.values(s.devices).some((d) => d.phb === x.phb && d.bus === x.bus));
    return slot ? { ...s, slots: { ...s.slots, [slot.name]: { ...slot, state: 'registered' } } } : null;
  },
  'window left on a freed domain': (s) => {
    const d = Object.values(s.domains).find((x) => s.pes[x.pe]?.windows[x.windows[0]!.slot]?.table.kind === 'domain');
    if (!d) return null;
    const { [d.id]: _d, ...rest } = s.domains;
    return { ...s, domains: rest };
  },
};

describe('invariants after every event (fast-check)', () => {
  it('every event of every accepted command keeps both the incremental and the full check clean', () => {
    fc.assert(
      fc.property(deviceCommandsArb, (commands) => {
        const steps = walk(commands);
        for (const { before, after } of steps) expect(invariantsAfter(before, after)).toEqual([]);
        expect(invariants(steps[steps.length - 1]!.after)).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });

  it('the incremental check finds every new violation the full check finds (damaged states)', () => {
    const names = Object.keys(corruptions);
    let damaged = 0;
    fc.assert(
      fc.property(deviceCommandsArb, fc.nat(), fc.constantFrom(...names), fc.nat(), (commands, at, name, k) => {
        const steps = walk(commands);
        const base = steps[at % steps.length]!.after;
        const bad = corruptions[name]!(base, k);
        if (bad === null) return;
        const full = rules(invariants(bad));
        if (full.length === 0) return;
        damaged++;
        expect(invariantsAfter(base, bad).length).toBeGreaterThan(0);
      }),
      { numRuns: 400 },
    );
    // The corruptions must actually bite for the property to mean anything.
    expect(damaged).toBeGreaterThan(100);
  });

  it('the incremental check finds what the full check finds when a decision loses one of its events', () => {
    let caught = 0;
    fc.assert(
      fc.property(deviceCommandsArb, fc.nat(), fc.nat(), (commands, pick, drop) => {
        let s = initialState;
        const all = [...deviceBoot, ...commands];
        let multi = 0;
        for (const c of all) {
          const d = decide(s, c);
          if (!d.ok) continue;
          const hit = d.events.length > 1 && multi++ === pick % 6;
          const events = hit ? d.events.filter((_, j) => j !== drop % d.events.length) : d.events;
          for (const e of events) {
            let next: State;
            let full: Violation[];
            try {
              next = evolve(s, e);
              full = rules(invariants(next));
            } catch {
              return; // the fold built records with missing fields: no rule applies to those
            }
            if (full.length > 0) {
              caught++;
              expect(invariantsAfter(s, next).length).toBeGreaterThan(0);
              return;
            }
            s = next;
          }
        }
      }),
      { numRuns: 500 },
    );
    expect(caught).toBeGreaterThan(5);
  });
});
