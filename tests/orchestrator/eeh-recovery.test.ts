import { canonicalJson, eehOf, invariants, stateView, type Command, type Json, type State } from '@iommu-orch/core';
import { loadScenario, logicalClock, Orchestrator, recoverPe, replay, runSaga, type EehHandlers, type Saga } from '@iommu-orch/orchestrator';
import { MemoryEventStore } from '@iommu-orch/store';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NIC, ROOT_PORT } from '../support/fixtures.js';

/**
 * The host's EEH recovery saga: a recovered PE translates exactly as before its freeze (windows,
 * domains, TCEs, groups); the sixth freeze inside the hour is a permanent failure; with no EEH-aware
 * driver the devices are hot-plugged again into new groups; a passed-through PE is left to its owner;
 * a recovery racing a hot removal leaves nothing behind.
 */
const PE = 'domain0-pefd';
const BOOT: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
  { type: 'addDevice', bdf: '0000:01:00.0', ...NIC, driver: 'tg3' },
  { type: 'addDevice', bdf: '0000:01:00.1', ...NIC, driver: 'tg3' },
];
/** A second PE, passed through to vm1 with a mapped paging domain. */
const OWNED_PE: Command[] = [
  { type: 'addDevice', bdf: '0000:02:00.0', ...NIC },
  { type: 'claimDevice', context: 'vm1', bdf: '0000:02:00.0' },
  { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:02:00.0', pageShift: 16 },
  { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:02:00.0' },
  { type: 'mapPages', context: 'vm1', domain: 1, iova: 0x10000n, paddr: 0x8000_0000n, pgsize: 0x10000n, pgcount: 16, prot: { read: true, write: true } },
];
const AWARE: EehHandlers = { tg3: { errorDetected: 'need_reset', slotReset: 'recovered' } };

async function host(extra: Command[] = [], stepMs = 60_000) {
  const store = new MemoryEventStore();
  const orch = await Orchestrator.open(store, { clock: logicalClock('2026-01-01T00:00:00.000Z', stepMs) });
  for (const c of [...BOOT, ...extra]) await orch.executeOrThrow(c);
  return { orch, store, view: () => orch.state };
}

/** The canonical view without EEH bookkeeping and the event count: what a recovery must give back. */
function withoutEeh(s: State): string {
  const { eeh: _eeh, version: _version, ...rest } = stateView(s) as Record<string, Json>;
  return canonicalJson(rest);
}

const run = (orch: Orchestrator, saga: Saga) => runSaga(orch, saga);

describe('EEH recovery saga', () => {
  it('the scenario eeh/recovery-restores-state: the state after resume equals the state before the freeze, EEH bookkeeping aside', async () => {
    const scenario = loadScenario(new URL('../scenarios/eeh/recovery-restores-state.json', import.meta.url).pathname);
    const orch = await Orchestrator.open(new MemoryEventStore(), { clock: logicalClock(scenario.clock?.start, scenario.clock?.stepMs) });
    const steps = [
      ...(scenario.topology?.phbs ?? []).map((p) => ({ type: 'addPhb', ...p })),
      ...(scenario.topology?.devices ?? []).map((d) => ({ type: 'addDevice', ...d })),
      ...scenario.commands.map(({ expect: _e, note: _n, ...c }) => c),
    ];
    let before: string | null = null;
    let after: string | null = null;
    for (const step of steps) {
      if (step.type === 'eehFreeze' && before === null) before = withoutEeh(orch.state);
      const r = await orch.execute(step);
      if (step.type === 'eehResume' && after === null) {
        expect(r.ok).toBe(true);
        after = withoutEeh(orch.state);
      }
    }
    expect(before).not.toBeNull();
    expect(after).toBe(before);
  });


  it('NEED_RESET -> reset -> slot_reset RECOVERED: the state equals the state before the freeze, apart from EEH bookkeeping', async () => {
    // A user context holds a second PE with a mapped paging domain: its tables must not move either.
    const { orch, store, view } = await host(OWNED_PE);
    const before = withoutEeh(orch.state);
    const f = await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0', cause: 'access' });
    expect(f).toMatchObject({ pe: PE, recovering: true, freezeCount: 1 });
    expect(withoutEeh(orch.state)).toBe(before);
    const r = await run(orch, recoverPe(view, PE, AWARE));
    expect(r).toEqual({ saga: 'eeh-recovery', outcome: 'done' });
    expect(withoutEeh(orch.state)).toBe(before);
    expect(eehOf(orch.state, PE)).toMatchObject({ state: 0, mmioFrozen: false, dmaFrozen: false, freezeCount: 1, result: null });
    expect(invariants(orch.state)).toEqual([]);
    expect(withoutEeh((await replay(store)).state)).toBe(before);
  });

  it('CAN_RECOVER thaws MMIO, asks mmio_enabled, thaws DMA and resumes without a reset', async () => {
    const { orch, view } = await host();
    const types: string[] = [];
    orch.events$.subscribe((e) => types.push(e.type));
    await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.1' });
    const r = await run(orch, recoverPe(view, PE, { tg3: { errorDetected: 'can_recover', mmioEnabled: 'can_recover' } }));
    expect(r.outcome).toBe('done');
    expect(types).not.toContain('EehResetAsserted');
    expect(types.filter((t) => t === 'EehThawed')).toHaveLength(2);
  });

  it('merges by priority: NEED_RESET outranks DISCONNECT, DISCONNECT alone fails the PE', async () => {
    const { orch, view } = await host([{ type: 'unbindDriver', bdf: '0000:01:00.1' }, { type: 'bindDriver', bdf: '0000:01:00.1', driver: 'mlx5' }]);
    await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' });
    const both: EehHandlers = { tg3: { errorDetected: 'disconnect' }, mlx5: { errorDetected: 'need_reset', slotReset: 'recovered' } };
    expect((await run(orch, recoverPe(view, PE, both))).outcome).toBe('done');
    await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' });
    const r = await run(orch, recoverPe(view, PE, { tg3: { errorDetected: 'disconnect' } }));
    expect(r.outcome).toBe('failed');
    expect(orch.state.pes[PE]).toBeUndefined();
    expect(orch.state.devices['0000:01:00.0']).toBeUndefined();
    expect(invariants(orch.state)).toEqual([]);
  });

  it('a slot_reset that still wants a reset is a permanent failure', async () => {
    const { orch, view } = await host();
    await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' });
    const r = await run(orch, recoverPe(view, PE, { tg3: { errorDetected: 'need_reset', slotReset: 'need_reset' } }));
    expect(r).toMatchObject({ outcome: 'failed', reason: 'recovery ended with need_reset' });
  });

  it('the sixth freeze within 3600 s (event time) fails the PE and removes its devices; spaced freezes never do', async () => {
    const { orch, view } = await host([], 60_000);
    for (let i = 1; i <= 5; i++) {
      expect(await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' })).toMatchObject({ freezeCount: i });
      expect((await run(orch, recoverPe(view, PE, AWARE))).outcome).toBe('done');
    }
    expect(await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' })).toMatchObject({ freezeCount: 6, permanent: true });
    expect(await orch.execute({ type: 'eehReport', pe: PE, phase: 'error_detected', result: 'recovered' })).toMatchObject({ ok: false, error: { code: 'EPERM' } });
    const r = await run(orch, recoverPe(view, PE, AWARE));
    expect(r.outcome).toBe('failed');
    expect(Object.keys(orch.state.devices)).toEqual(['0000:00:00.0']);
    expect(orch.state.eeh).toEqual({});
    expect(invariants(orch.state)).toEqual([]);

    // Freezes 61 minutes apart restart the count every time.
    const spaced = await host([], 61 * 60_000);
    for (let i = 0; i < 8; i++) {
      expect(await spaced.orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' })).toMatchObject({ freezeCount: 1 });
      expect((await run(spaced.orch, recoverPe(spaced.view, PE, AWARE))).outcome).toBe('done');
    }
  });

  it('with no EEH-aware driver the devices are hot-plugged again: new group ids, the freeze count kept', async () => {
    const { orch, view } = await host();
    const group = orch.state.devices['0000:01:00.0']!.group;
    await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' });
    const r = await run(orch, recoverPe(view, PE, {}));
    expect(r.outcome).toBe('done');
    const dev = orch.state.devices['0000:01:00.0']!;
    expect(dev.group).not.toBe(group);
    expect(orch.state.devices['0000:01:00.1']!.group).toBe(dev.group);
    expect(eehOf(orch.state, dev.pe)).toMatchObject({ freezeCount: 1, state: 0 });
    expect(invariants(orch.state)).toEqual([]);
  });

  it('the owner recovers its PE through VFIO_EEH_PE_OP; windows, domain and TCEs are as before the error', async () => {
    const { orch } = await host(OWNED_PE);
    const before = withoutEeh(orch.state);
    const op = async (n: number, extra: object = {}) => orch.executeOrThrow({ type: 'vfioEehPeOp', context: 'vm1', op: n, ...extra });
    const err = { type: 1, func: 16, addr: 0n, mask: 0n };
    expect(await op(4)).toMatchObject({ ret: 0 });
    expect(await op(9, { err })).toMatchObject({ op: 'INJECT_ERR', ret: 0 });
    expect(await op(4)).toMatchObject({ ret: 2 });
    expect(await op(2)).toMatchObject({ ret: 0 });
    expect(await op(4)).toMatchObject({ ret: 4 });
    expect(await op(6)).toMatchObject({ op: 'RESET_HOT', ret: 0 });
    expect(await op(4)).toMatchObject({ ret: 1 });
    expect(await op(5)).toMatchObject({ ret: 0 });
    expect(await op(8)).toMatchObject({ ret: 0 });
    expect(await op(4)).toMatchObject({ ret: 0 });
    expect(withoutEeh(orch.state)).toBe(before);
    for (const [bad, code] of [[{ op: 10 }, 'EINVAL'], [{ op: 4, flags: 1 }, 'EINVAL'], [{ op: 9 }, 'EINVAL'], [{ op: 9, err: { ...err, func: 20 } }, 'EINVAL']] as const) {
      expect(await orch.execute({ type: 'vfioEehPeOp', context: 'vm1', ...bad })).toMatchObject({ ok: false, error: { code } });
    }
    expect(await orch.execute({ type: 'vfioEehPeOp', context: 'vm9', op: 4 })).toMatchObject({ ok: false, error: { code: 'ENODEV' } });
  });

  it('a passed-through PE freezes but is left to its owner: no recovery queued, no count', async () => {
    const { orch, view } = await host([
      { type: 'unbindDriver', bdf: '0000:01:00.0' }, { type: 'unbindDriver', bdf: '0000:01:00.1' },
      { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' }, { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.1' },
    ]);
    expect(await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0', cause: 'access' })).toMatchObject({ recovering: false, freezeCount: 0 });
    expect((await run(orch, recoverPe(view, PE, AWARE))).outcome).toBe('aborted');
    expect(await orch.executeOrThrow({ type: 'vfioEehPeOp', context: 'vm1', op: 4 })).toEqual({ op: 'GET_STATE', ret: 2 });
  });

  it('a recovery racing a hot removal leaves no dangling state, whatever the order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.boolean(), async (s, aware) => {
        const { orch, view } = await host();
        await orch.executeOrThrow({ type: 'eehFreeze', bdf: '0000:01:00.0' });
        const gate = (label: string) => s.schedule(Promise.resolve(), label);
        const removal = (async () => {
          await gate('remove');
          await orch.execute({ type: 'removeDevice', bdf: '0000:01:00.0', surprise: true });
          await gate('remove');
          await orch.execute({ type: 'removeDevice', bdf: '0000:01:00.1', surprise: true });
        })();
        await s.waitFor(Promise.all([runSaga(orch, recoverPe(view, PE, aware ? AWARE : {}), { gate }), removal]));
        expect(invariants(orch.state)).toEqual([]);
        for (const pe of Object.keys(orch.state.eeh)) expect(orch.state.pes[pe]).toBeDefined();
      }),
      { numRuns: 40, seed: 6 },
    );
  });
});
