import { canonicalState, decide, fold, initialState, invariants, invariantsAfter, type Command, type IommuEvent, type State } from '@iommu-orch/core';
import { MemoryEventStore } from '@iommu-orch/store';
import { logicalClock, Orchestrator, replay } from '@iommu-orch/orchestrator';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { iommufdBootCommands, iommufdCommandsArb } from '../support/arbitraries.js';
import { apply, expectInvariantsAlong, NVME } from '../support/fixtures.js';

const U64_MAX = (1n << 64n) - 1n;

/** Checks what an accepted query or map reported against the state it was decided on. */
function checkOutput(state: State, c: Command, output: Record<string, unknown>): void {
  if (c.type === 'ioasMap' && !c.flags.includes('FIXED_IOVA')) {
    // Automatic IOVAs come from [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]: never 0.
    expect(BigInt(output['iova'] as string) >= 0x10000n).toBe(true);
  }
  if (c.type === 'ioasIovaRanges') {
    const ioas = state.iommufd[c.context]!.objects[c.ioas]!;
    if (ioas.kind !== 'ioas') throw new Error('not an IOAS');
    const ranges = (output['ranges'] as { start: string; last: string }[]).map((r) => ({ start: BigInt(r.start), last: BigInt(r.last) }));
    // The ranges and the reserved ranges partition [0, U64_MAX].
    let next = 0n;
    for (const r of ranges) {
      expect(r.start >= next && r.start <= r.last).toBe(true);
      for (let at = next; at < r.start; ) {
        const cover = ioas.reserved.find((x) => x.start <= at && x.last >= at);
        expect(cover).toBeDefined();
        at = cover!.last + 1n;
      }
      expect(ioas.reserved.some((x) => x.start <= r.last && r.start <= x.last)).toBe(false);
      next = r.last + 1n;
    }
    if (ranges.length === output['numIovas'] && next <= U64_MAX) expect(ioas.reserved.some((x) => x.last === U64_MAX)).toBe(true);
  }
}

/** Between commands (not inside one): an automatic HWPT always has a device attached. */
function autoHwptsHaveDevices(state: State): void {
  for (const ctx of Object.values(state.iommufd)) {
    const objects = Object.values(ctx.objects);
    for (const h of objects) if (h.kind === 'hwpt' && h.auto) expect(objects.some((o) => o.kind === 'device' && o.hwpt === h.id)).toBe(true);
  }
}

describe('iommufd layer (fast-check)', () => {
  it('keeps every invariant after every event, refuses without effect, reports consistent outputs and replays to the same state', () => {
    fc.assert(
      fc.property(iommufdCommandsArb, (commands) => {
        let state = initialState;
        const events: IommuEvent[] = [];
        for (const c of [...iommufdBootCommands, ...commands]) {
          const d = decide(state, c);
          if (!d.ok) continue;
          checkOutput(state, c, d.output);
          expectInvariantsAlong(state, d.states);
          events.push(...d.events);
          state = d.state;
          autoHwptsHaveDevices(state);
        }
        const stored = JSON.parse(JSON.stringify(events)) as IommuEvent[];
        expect(canonicalState(fold(stored, initialState))).toBe(canonicalState(state));
      }),
      { numRuns: 250 },
    );
  });

  it('through the orchestrator: a refused iommufd command leaves the log as it was, and replay equals the live state', async () => {
    await fc.assert(
      fc.asyncProperty(iommufdCommandsArb, async (commands) => {
        const store = new MemoryEventStore();
        const orch = await Orchestrator.open(store, { clock: logicalClock() });
        for (const c of [...iommufdBootCommands, ...commands]) {
          const before = await store.head();
          const r = await orch.execute(c);
          expect(await store.head()).toBe(r.ok ? before + r.events.length : before);
        }
        expect(canonicalState((await replay(store)).state)).toBe(canonicalState(orch.state));
      }),
      { numRuns: 40 },
    );
  });
});

/** vm1 with IOAS 1 and the NVMe bound as device 2, attached to it (an auto HWPT). */
function attachedIoas(): State {
  return apply(
    initialState,
    { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
    { type: 'addDevice', bdf: '0000:01:00.0', ...NVME },
    { type: 'ioasAlloc', context: 'vm1' },
    { type: 'iommufdBind', context: 'vm1', bdf: '0000:01:00.0' },
    { type: 'deviceAttach', context: 'vm1', device: 2, ptId: 1 },
  );
}

/**
 * IOAS map/unmap against a plain list of intervals: FIXED maps succeed unless they touch an area
 * (EEXIST); an unmap succeeds only if it touches areas and contains each whole (ENOENT otherwise) and
 * returns their bytes; (0, U64_MAX) removes everything. After every step, iova_to_phys through the
 * HWPT's domain agrees with the intervals on every page of the grid.
 */
describe('IOAS areas against a reference model (fast-check)', () => {
  const PAGE = 0x1000n;
  const GRID = 64; // pages 0x10..0x4f
  const base = attachedIoas();
  const page = fc.integer({ min: 0x10, max: 0x10 + GRID - 1 });
  const op = fc.oneof(
    fc.record({ kind: fc.constant('map' as const), first: page, pages: fc.integer({ min: 1, max: 8 }), paddr: fc.integer({ min: 1, max: 0xfff }) }),
    fc.record({ kind: fc.constant('unmap' as const), first: page, pages: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant('unmapAll' as const) }),
  );

  it('agrees on every result and every translation', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        let state = base;
        let model: { first: number; last: number; paddr: bigint }[] = [];
        for (const o of ops) {
          let command: Command;
          let expected: { ok: true; length?: number } | { ok: false; code: string };
          if (o.kind === 'map') {
            const last = o.first + o.pages - 1;
            command = { type: 'ioasMap', context: 'vm1', ioas: 1, flags: ['FIXED_IOVA', 'READABLE'], iova: BigInt(o.first) * PAGE, length: BigInt(o.pages) * PAGE, paddr: BigInt(o.paddr) << 16n };
            const clash = model.some((a) => a.first <= last && o.first <= a.last);
            expected = clash ? { ok: false, code: 'EEXIST' } : { ok: true };
            if (!clash) model = [...model, { first: o.first, last, paddr: BigInt(o.paddr) << 16n }];
          } else if (o.kind === 'unmap') {
            const last = o.first + o.pages - 1;
            command = { type: 'ioasUnmap', context: 'vm1', ioas: 1, iova: BigInt(o.first) * PAGE, length: BigInt(o.pages) * PAGE };
            const hit = model.filter((a) => a.first <= last && o.first <= a.last);
            const whole = hit.every((a) => a.first >= o.first && a.last <= last);
            expected = hit.length > 0 && whole ? { ok: true, length: hit.reduce((n, a) => n + (a.last - a.first + 1) * 0x1000, 0) } : { ok: false, code: 'ENOENT' };
            if (expected.ok) model = model.filter((a) => !hit.includes(a));
          } else {
            command = { type: 'ioasUnmap', context: 'vm1', ioas: 1, iova: 0n, length: U64_MAX };
            expected = { ok: true, length: model.reduce((n, a) => n + (a.last - a.first + 1) * 0x1000, 0) };
            model = [];
          }
          const d = decide(state, command);
          if (expected.ok) {
            expect(d.ok).toBe(true);
            if (d.ok && expected.length !== undefined) expect(d.output['length']).toBe(expected.length);
            if (d.ok) state = d.state;
          } else {
            expect(d.ok ? 'ok' : d.error.code).toBe(expected.code);
          }
          for (let p = 0x10; p < 0x10 + GRID; p++) {
            const a = model.find((x) => x.first <= p && p <= x.last);
            const want = a ? a.paddr + BigInt(p - a.first) * PAGE + 0x123n : 0n;
            const q = decide(state, { type: 'iovaToPhys', context: 'vm1', domain: 1, iova: BigInt(p) * PAGE + 0x123n });
            expect(q.ok && BigInt(q.output['phys'] as string)).toBe(want);
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('iommufd invariants catch a broken fold', () => {
  const base = apply(
    attachedIoas(),
    { type: 'ioasMap', context: 'vm1', ioas: 1, flags: ['FIXED_IOVA', 'READABLE'], iova: 0x10000n, length: 0x4000n, paddr: 0x40000000n },
  );
  const ioas = base.iommufd['vm1']!.objects[1]!;
  if (ioas.kind !== 'ioas') throw new Error('fixture');
  const damaged: Record<string, State> = {
    'an area the domain does not translate': {
      ...base,
      iommufd: { vm1: { objects: { ...base.iommufd['vm1']!.objects, 1: { ...ioas, areas: [...ioas.areas, { ...ioas.areas[0]!, iova: 0x20000n, last: 0x20fffn }] } } } },
    },
    'a reservation lost': {
      ...base,
      iommufd: { vm1: { objects: { ...base.iommufd['vm1']!.objects, 1: { ...ioas, reserved: ioas.reserved.slice(1) } } } },
    },
    'a device left attached to a missing HWPT': {
      ...base,
      iommufd: { vm1: { objects: { ...base.iommufd['vm1']!.objects, 2: { kind: 'device', id: 2, bdf: '0000:01:00.0', hwpt: 9 } } } },
    },
  };
  it.each(Object.entries(damaged))('%s', (_name, bad) => {
    expect(invariants(base)).toEqual([]);
    expect(invariants(bad).length).toBeGreaterThan(0);
    expect(invariantsAfter(base, bad).length).toBeGreaterThan(0);
  });
});
