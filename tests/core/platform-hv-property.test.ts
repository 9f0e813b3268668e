import { canonicalState, decide, fold, fromHex, initialState, type Command, type IommuEvent, type State } from '@iommu-orch/core';
import { InputError, parseCommand } from '@iommu-orch/orchestrator';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectInvariantsAlong, NVME } from '../support/fixtures.js';

/**
 * VFIO sPAPR containers in a PowerVM partition whose hypervisor has an I/O entitlement and injected
 * faults (platform-hv.ts): random maps, unmaps, window removals, releases, entitlement changes and
 * faults. Every accepted command keeps the invariants after each event (pinned accounting equals the
 * tables, every TCE inside its window), the fold of the stored events equals the decided state, and no
 * accepted MAP takes the partition's I/O mapping past an entitlement it was within. Leaks (clears
 * refused as a table goes away) come only from TCE_REMOVE and release under a fault, move pinned bytes
 * to leaked bytes one for one, never shrink, and keep their v2 region preregistered.
 */
const BOOT: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'pseries', generation: 'SPAPR', hypervisor: 'powervm' },
  { type: 'addPhb', phb: 1, platform: 'pseries', generation: 'SPAPR', hypervisor: 'powervm' },
  { type: 'addDevice', bdf: '0000:00:01.0', ...NVME },
  { type: 'addDevice', bdf: '0001:00:01.0', ...NVME },
];
const UA = 0x7f00_0000_0000n;
const container = fc.constantFrom('c0', 'c1');
/** Entries of the 4K default window or of a 64K window at 1<<59 (v2). */
const target = fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 24 }), fc.integer({ min: 1, max: 8 })).map(([dyn, index, pages]) => {
  const page = dyn ? 0x10000n : 0x1000n;
  return { iova: (dyn ? 1n << 59n : 0n) + BigInt(index) * page, size: BigInt(pages) * page, vaddr: UA + BigInt(index) * page };
});

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.tuple(container, fc.constantFrom(2, 7)).map(([c, t]): Command => ({ type: 'spaprOpen', container: c, iommuType: t })),
  fc.tuple(container, fc.integer({ min: 0, max: 1 })).map(([c, g]): Command => ({ type: 'spaprAttachGroup', container: c, group: g })),
  container.map((c): Command => ({ type: 'spaprEnable', container: c })),
  container.map((c): Command => ({ type: 'spaprRegisterMemory', container: c, vaddr: UA, size: 1n << 24n, pageShift: 16 })),
  container.map((c): Command => ({ type: 'spaprTceCreate', container: c, pageShift: 16, windowSize: 1n << 24n, levels: 1 })),
  fc.tuple(container, target, fc.boolean()).map(([c, t, w]): Command => ({ type: 'spaprMapDma', container: c, ...t, flags: w ? ['READ', 'WRITE'] : ['READ'] })),
  fc.tuple(container, target).map(([c, t]): Command => ({ type: 'spaprUnmapDma', container: c, iova: t.iova, size: t.size })),
  container.map((c): Command => ({ type: 'spaprClose', container: c })),
  fc.tuple(container, fc.boolean()).map(([c, dyn]): Command => ({ type: 'spaprTceRemove', container: c, startAddr: dyn ? 1n << 59n : 0n })),
  fc.option(fc.integer({ min: 0, max: 40 }), { nil: null }).map((pages): Command => ({ type: 'setIoEntitlement', bytes: pages === null ? null : BigInt(pages) * 0x1000n })),
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.constantFrom('H_HARDWARE', 'H_BUSY', null) as fc.Arbitrary<'H_BUSY' | null>, fc.integer({ min: 0, max: 10 }))
    .map(([phb, code, after]): Command => (code === null ? { type: 'injectHcallFault', phb, code } : { type: 'injectHcallFault', phb, code, afterEntries: after })),
);
/** A container set up far enough to map, so deep states are reached. */
const setup = fc.tuple(container, fc.constantFrom(2, 7), fc.integer({ min: 0, max: 1 })).map(([c, t, g]): Command[] => [
  { type: 'spaprOpen', container: c, iommuType: t }, { type: 'spaprAttachGroup', container: c, group: g },
  t === 2 ? { type: 'spaprEnable', container: c } : { type: 'spaprRegisterMemory', container: c, vaddr: UA, size: 1n << 24n, pageShift: 16 },
  ...(t === 7 ? [{ type: 'spaprTceCreate', container: c, pageShift: 16, windowSize: 1n << 24n, levels: 1 } as const] : []),
]);
const traffic = fc.tuple(container, target, fc.boolean()).map(([c, t, unmap]): Command[] => [
  unmap ? { type: 'spaprUnmapDma', container: c, iova: t.iova, size: t.size } : { type: 'spaprMapDma', container: c, ...t, flags: ['READ'] },
]);
/** What frees a table, and so runs tce_iommu_clear over all of it: TCE_REMOVE of either window, or release. */
const release = fc.tuple(container, fc.constantFrom(0n, 1n << 59n, null)).map(([c, start]): Command[] => [
  start === null ? { type: 'spaprClose', container: c } : { type: 'spaprTceRemove', container: c, startAddr: start },
]);
/** A fault armed on either PHB (group n sits on PHB n), or a tight entitlement, then traffic under it. */
const storm = fc
  .tuple(
    fc.oneof(
      fc.tuple(fc.integer({ min: 0, max: 1 }), fc.constantFrom('H_HARDWARE', 'H_BUSY') as fc.Arbitrary<'H_BUSY'>, fc.integer({ min: 0, max: 12 }))
        .map(([phb, code, after]): Command => ({ type: 'injectHcallFault', phb, code, afterEntries: after })),
      fc.integer({ min: 0, max: 24 }).map((pages): Command => ({ type: 'setIoEntitlement', bytes: BigInt(pages) * 0x1000n })),
    ),
    fc.array(fc.oneof({ arbitrary: traffic, weight: 3 }, release), { minLength: 1, maxLength: 4 }),
  )
  .map(([knob, cmds]) => [knob, ...cmds.flat()]);
/** Maps, then a fault, then a table freed under it: the path that leaks. */
const teardown = fc
  .tuple(fc.array(fc.tuple(container, target).map(([c, t]): Command[] => [{ type: 'spaprMapDma', container: c, ...t, flags: ['READ'] }]), { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 1 }), fc.constantFrom('H_HARDWARE', 'H_BUSY') as fc.Arbitrary<'H_BUSY'>, fc.integer({ min: 0, max: 30 }), release)
  .map(([maps, phb, code, after, end]): Command[] => [...maps.flat(), { type: 'injectHcallFault', phb, code, afterEntries: after }, ...end]);
const commandsArb = fc
  .tuple(setup, fc.array(fc.oneof({ arbitrary: commandArb.map((c) => [c]), weight: 3 }, { arbitrary: traffic, weight: 3 }, storm, teardown, setup), { maxLength: 20 }))
  .map(([first, chunks]) => [...first, ...chunks.flat()]);

const sum = (record: Readonly<Record<string, bigint>>): bigint => Object.values(record).reduce((a, b) => a + b, 0n);

/** The leak rules of one accepted command, from the state before it to the state after. */
function expectLeakRules(c: Command, events: readonly IommuEvent[], before: State, after: State): void {
  const leaked = events.filter((e) => e.type === 'TcesLeaked');
  if (leaked.length > 0) {
    expect(['spaprTceRemove', 'spaprClose']).toContain(c.type);
    expect(Object.keys(before.platformHv.faults).length).toBeGreaterThan(0);
  }
  const bytes = leaked.reduce((n, e) => n + fromHex(e.data.pgsize) * BigInt(e.data.pgcount), 0n);
  expect(sum(after.leakedPinned) - sum(before.leakedPinned)).toBe(bytes);
  for (const [ctx, b] of Object.entries(before.leakedPinned)) expect(after.leakedPinned[ctx]).toBeGreaterThanOrEqual(b);
  for (const r of before.prereg) if (r.leaked > 0) expect(after.prereg.some((x) => x.ua === r.ua && x.size === r.size && x.leaked >= r.leaked)).toBe(true);
}

function ioMapped(state: State): { mapped: bigint; entitlement: bigint | null } {
  const d = decide(state, { type: 'platformHvInfo', phb: 0 });
  if (!d.ok) throw new Error(d.error.message);
  const e = d.output.entitlement;
  return { mapped: fromHex(d.output.ioMapped as string), entitlement: typeof e === 'string' ? fromHex(e) : null };
}

describe('platform hypervisor under VFIO sPAPR containers (fast-check)', () => {
  it('replay equals the decided state; invariants hold after every event; maps stay within the entitlement', () => {
    let boot: State = initialState;
    for (const c of BOOT) {
      const d = decide(boot, c);
      if (!d.ok) throw new Error(`${c.type}: ${d.error.message}`);
      boot = d.state;
    }
    let leaks = 0;
    fc.assert(
      fc.property(commandsArb, (commands) => {
        let state = boot;
        const events: IommuEvent[] = [];
        for (const c of commands) {
          const d = decide(state, c);
          if (!d.ok) continue;
          expectInvariantsAlong(state, d.states);
          expectLeakRules(c, d.events, state, d.state);
          if (d.events.some((e) => e.type === 'TcesLeaked')) leaks++;
          if (c.type === 'spaprMapDma') {
            const before = ioMapped(state);
            const after = ioMapped(d.state);
            if (before.entitlement !== null && before.mapped <= before.entitlement) expect(after.mapped).toBeLessThanOrEqual(before.entitlement);
          }
          events.push(...d.events);
          state = d.state;
        }
        const stored = JSON.parse(JSON.stringify(events)) as IommuEvent[];
        expect(canonicalState(fold(stored, boot))).toBe(canonicalState(state));
      }),
      { numRuns: 400, seed: 44 },
    );
    // The sequences reach the leak path often enough to say something about it.
    expect(leaks).toBeGreaterThan(20);
  });

  it('a fault code the hypervisor model does not inject is bad input, not a command', () => {
    expect(() => parseCommand({ type: 'injectHcallFault', phb: 0, code: 'H_PARAMETER' })).toThrow(InputError);
    expect(() => parseCommand({ type: 'injectHcallFault', phb: 0, code: 'H_BUSY', afterEntries: -1 })).toThrow(/afterEntries/);
    expect(parseCommand({ type: 'setIoEntitlement', bytes: '0x10000' })).toEqual({ type: 'setIoEntitlement', bytes: 0x10000n });
  });
});
