import { stateView, type Command, type Json } from '@iommu-orch/core';
import {
  auditDiff, auditExplain, auditHistory, auditReport, indexedHistory, logicalClock, Orchestrator, scanLog, type Entity, type History,
} from '@iommu-orch/orchestrator';
import { MemoryEventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The audit over what the model gained after the audit was written: a paging domain with two windows
 * filled through iommufd (IOAS areas, HWPTs, bound and attached DEVICEs, a replace, a close), hotplug
 * slots, SR-IOV VFs, orderly removal requests and a PHB option. Every expectation is worked out by hand
 * from the commands below (docs/audit.md says which events concern which entity and of what kind).
 */
const NVME = '0000:01:00.0';
const PF = '0001:02:00.0';
const VF0 = '0001:02:00.2';
const VF1 = '0001:02:00.3';
const ROOT1 = '0001:00:00.0';
const NIC = '0001:03:00.0';
const ROOT_PORT = { vendor: 0x1014, device: 0x04c1, classCode: 0x060400, driver: 'pcieport' } as const;
const WIN1 = 0x800_0000_0000_0000n;

const COMMANDS = {
  phb0: { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  root0: { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT },
  nvme: { type: 'addDevice', bdf: NVME, vendor: 0x1987, device: 0x5008, classCode: 0x010802, driver: null },
  ioas: { type: 'ioasAlloc', context: 'vm1' },
  bind: { type: 'iommufdBind', context: 'vm1', bdf: NVME },
  hwpt: {
    type: 'hwptAlloc', context: 'vm1', device: 2, ptId: 1,
    windows: [{ window: 0, pageShift: 12, size: 0x8000_0000n, levels: 1 }, { window: 1, pageShift: 16, size: 1n << 40n, levels: 2 }],
  },
  map1: { type: 'ioasMap', context: 'vm1', ioas: 1, flags: ['FIXED_IOVA', 'READABLE', 'WRITEABLE'], iova: WIN1, length: 0x4000_0000n, paddr: 0x1_0000_0000n },
  map0: { type: 'ioasMap', context: 'vm1', ioas: 1, flags: ['FIXED_IOVA', 'READABLE', 'WRITEABLE'], iova: 0x10000n, length: 0x10000n, paddr: 0x3_0000_0000n },
  attach: { type: 'deviceAttach', context: 'vm1', device: 2, ptId: 3 },
  unmap1: { type: 'ioasUnmap', context: 'vm1', ioas: 1, iova: WIN1, length: 0x4000_0000n },
  hwpt2: { type: 'hwptAlloc', context: 'vm1', device: 2, ptId: 1 },
  replace: { type: 'deviceReplace', context: 'vm1', device: 2, ptId: 4 },
  close: { type: 'iommufdClose', context: 'vm1' },
  phb1: { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB4' },
  root1: { type: 'addDevice', bdf: ROOT1, ...ROOT_PORT },
  slot: { type: 'registerSlot', slot: 'S1', phb: 1, bus: 2 },
  enable: {
    type: 'enableSlot', slot: 'S1',
    devices: [{ bdf: PF, vendor: 0x15b3, device: 0x1019, classCode: 0x020700, driver: 'mlx5_core', totalVfs: 4, vfOffset: 2, vfStride: 1, vfDevice: 0x1018 }],
  },
  option: { type: 'setPhbOption', phb: 1, option: 'tve1-4gb', enabled: true },
  vfs: { type: 'setNumVfs', bdf: PF, numVfs: 2, vfDriver: null },
  claimVf: { type: 'claimDevice', context: 'vm2', bdf: VF1 },
  request: { type: 'requestRemoval', bdf: PF },
  releaseVf: { type: 'releaseDevice', context: 'vm2', bdf: VF1 },
  disable: { type: 'disableSlot', slot: 'S1' },
  nic: { type: 'addDevice', bdf: NIC, vendor: 0x14e4, device: 0x1657, classCode: 0x020000, driver: 'tg3' },
  slot2: { type: 'registerSlot', slot: 'S2', phb: 1, bus: 3 },
} satisfies Record<string, Command>;
type Step = keyof typeof COMMANDS;

const store = new MemoryEventStore();
const at: Partial<Record<Step, readonly number[]>> = {};
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  const orch = await Orchestrator.open(store, { clock: logicalClock('2026-04-01T00:00:00.000Z', 1000) });
  for (const [name, command] of Object.entries(COMMANDS) as [Step, Command][]) {
    const r = await orch.execute(command);
    if (!r.ok) throw new Error(`${name}: ${r.error.code} ${r.error.message}`);
    at[name] = r.events.map((e) => e.position);
  }
});

const positions = (...steps: Step[]): number[] => steps.flatMap((s) => [...at[s]!]);
const last = (s: Step): number => at[s]![at[s]!.length - 1]!;

/** Which steps a history shows, in log order: each is shown whole or not at all. */
function stepsOf(h: History): Step[] {
  const shown = new Set(h.entries.map((e) => e.position));
  const steps = (Object.keys(COMMANDS) as Step[]).filter((s) => at[s]!.some((p) => shown.has(p)));
  for (const s of steps) expect(at[s]!.every((p) => shown.has(p)), `${s} shown whole`).toBe(true);
  expect(h.entries.map((e) => e.position)).toEqual(positions(...steps));
  return steps;
}

/** A state view without what depends on TCE contents: mappings, valid and allocated counts, pinned bytes. */
function withoutTces(view: Json): Json {
  const v = view as { domains: { windows: Record<string, Json>[]; mappings?: Json }[]; pinned?: Json };
  return {
    ...v,
    pinned: null,
    domains: v.domains.map(({ mappings: _m, ...d }) => ({ ...d, windows: d.windows.map(({ validTces: _v, kernelBytes: _k, ...w }) => w) })),
  } as Json;
}

describe('audit over multi-window domains, iommufd, slots, SR-IOV, removal requests and PHB options', () => {
  it('history of an iommufd-driven device: bind, HWPT, IOAS areas, attach, replace, close; owned from bind to close', async () => {
    const h = await auditHistory(store, { kind: 'device', bdf: NVME });
    // The IOAS alone (no HWPT yet) concerns only its context.
    expect(stepsOf(h)).toEqual(['nvme', 'bind', 'hwpt', 'map1', 'map0', 'attach', 'unmap1', 'hwpt2', 'replace', 'close']);
    const kinds = Object.fromEntries(h.entries.map((e) => [e.event, e.category]));
    expect(kinds).toMatchObject({
      IommufdDeviceBound: 'ownership', DmaOwnerClaimed: 'ownership', HwptAllocated: 'domain', PagingDomainAllocated: 'domain',
      IoasAreaMapped: 'mapping', IoasAreaUnmapped: 'mapping', IommufdDeviceAttached: 'attachment', IommufdGroupReplaced: 'attachment',
      IommufdDeviceDetached: 'attachment', IommufdDeviceUnbound: 'ownership', IommufdClosed: 'ownership', HwptDestroyed: 'domain',
    });
    expect(h.owners).toEqual([{ subject: NVME, owner: 'vm1', from: expect.objectContaining({ position: last('bind') }), to: expect.objectContaining({ position: last('close') }) }]);
    const mapped = h.entries.find((e) => e.event === 'IoasAreaMapped')!;
    expect(mapped.summary).toBe('vm1 mapped [0x800000000000000, 0x80000003fffffff] -> 0x100000000 rw in IOAS 1 (domain 1)');
    const ctx = await auditHistory(store, { kind: 'context', name: 'vm1' });
    expect(stepsOf(ctx)).toEqual(['ioas', 'bind', 'hwpt', 'map1', 'map0', 'attach', 'unmap1', 'hwpt2', 'replace', 'close']);
    const onlyMaps = await auditHistory(store, { kind: 'device', bdf: NVME }, { kinds: new Set(['mapping']) });
    // Closing destroys both HWPTs, each clearing the area its domain still holds.
    expect(onlyMaps.entries.map((e) => e.event)).toEqual(['IoasAreaMapped', 'IoasAreaMapped', 'IoasAreaUnmapped', 'TcesCleared', 'TcesCleared']);
  });

  it('history of slots, VFs, removal requests and a PHB option: hotplug and topology, for the devices and contexts they concern', async () => {
    const pf = await auditHistory(store, { kind: 'device', bdf: PF });
    // A VF coming or going changes its PF's VF list; a claim of a VF does not concern the PF.
    expect(stepsOf(pf)).toEqual(['enable', 'option', 'vfs', 'request', 'disable']);
    const vf = await auditHistory(store, { kind: 'device', bdf: VF1 });
    expect(stepsOf(vf)).toEqual(['vfs', 'claimVf', 'request', 'releaseVf', 'disable']);
    expect(vf.owners).toEqual([{ subject: VF1, owner: 'vm2', from: expect.objectContaining({ position: last('claimVf') }), to: expect.objectContaining({ position: last('releaseVf') }) }]);
    // The removal request names the context that must let go.
    expect(stepsOf(await auditHistory(store, { kind: 'context', name: 'vm2' }))).toEqual(['claimVf', 'request', 'releaseVf']);
    // A PHB option moves where window slot 1 starts for every PE of the PHB, the root port's included.
    expect(stepsOf(await auditHistory(store, { kind: 'device', bdf: ROOT1 }))).toEqual(['root1', 'option']);
    // A slot registered over a bus with a card on it is populated at once: it concerns that card.
    expect(stepsOf(await auditHistory(store, { kind: 'device', bdf: NIC }))).toEqual(['nic', 'slot2']);
    const kinds = new Map([...pf.entries, ...vf.entries].map((e) => [e.event, e.category]));
    expect(Object.fromEntries(kinds)).toMatchObject({
      SlotStateChanged: 'hotplug', PhbOptionSet: 'topology', RemovalRequested: 'hotplug', DeviceAdded: 'hotplug', DeviceRemoved: 'hotplug',
    });
    const topology = await auditHistory(store, { kind: 'device', bdf: PF }, { kinds: new Set(['topology']) });
    expect(topology.entries.map((e) => [e.event, e.summary])).toEqual([['PhbOptionSet', 'PHB 0001 option tve1-4gb on: window slot 1 starts at 0x100000000']]);
    const request = vf.entries.filter((e) => e.event === 'RemovalRequested').map((e) => e.summary);
    expect(request).toEqual([`removal of ${VF0} requested`, `removal of ${VF1} requested: waiting for vm2 to release it`, `removal of ${PF} requested`]);
  });

  it('the relations fold (history) equals the full fold after every event, TCE contents and pinned counts aside', async () => {
    const views = async (fold: 'full' | 'relations'): Promise<Json[]> => {
      const out: Json[] = [];
      await scanLog(store, { fold, visit: (s) => out.push(withoutTces(stateView(s.after))) });
      return out;
    };
    const relations = await views('relations');
    expect(relations).toEqual(await views('full'));
    expect(relations.length).toBe(last('slot2'));
  });

  it('the history index answers the same for every entity', async () => {
    const entities: Entity[] = [
      ...[NVME, PF, VF0, VF1, ROOT1, NIC].map((bdf) => ({ kind: 'device' as const, bdf })),
      ...[0, 1, 2, 3].map((id) => ({ kind: 'group' as const, id })),
      ...['vm1', 'vm2'].map((name) => ({ kind: 'context' as const, name })),
    ];
    const index = join(dir, 'history.idx');
    for (const entity of entities) {
      for (const to of [undefined, { position: last('unmap1') }]) {
        const opts = to ? { to } : {};
        expect(await indexedHistory(store, index, entity, { ...opts, chunk: 7 })).toEqual(await auditHistory(store, entity, opts));
      }
    }
  });

  it('explain picks the window of the domain the IOVA lies in, and names the IOAS map or HWPT allocation that wrote the TCE', async () => {
    const when = { to: { position: last('attach') } };
    const high = await auditExplain(store, NVME, WIN1 + 0x1234n, when);
    expect(high).toMatchObject({
      verdict: 'reachable', window: { slot: 1, start: '0x800000000000000', last: '0x80000ffffffffff', pageSize: '64K', table: 'domain:1' },
      domain: { id: 1, context: 'vm1', aperture: ['0x800000000000000', '0x80000ffffffffff'], apertures: [['0x0', '0x7fffffff'], ['0x800000000000000', '0x80000ffffffffff']] },
      tce: { index: 0, phys: '0x100001234', perm: 'rw' }, mappedBy: { position: last('map1'), command: 'ioasMap' },
    });
    const low = await auditExplain(store, NVME, 0x10010n, when);
    expect(low).toMatchObject({
      verdict: 'reachable', window: { slot: 0, pageSize: '4K' }, domain: { aperture: ['0x0', '0x7fffffff'] },
      tce: { index: 16, phys: '0x300000010' }, mappedBy: { position: last('map0'), command: 'ioasMap' },
    });
    expect((await auditExplain(store, NVME, 0x20000n, when)).verdict).toBe('empty-tce');
    const gap = await auditExplain(store, NVME, 0x1_0000_0000n, when);
    expect(gap.verdict).toBe('outside-window');
    expect(gap.pe?.windows.map((w) => [w.slot, w.table])).toEqual([[0, 'domain:1'], [1, 'domain:1']]);
    const unmapped = await auditExplain(store, NVME, WIN1 + 0x1234n, { to: { position: last('unmap1') } });
    expect(unmapped).toMatchObject({ verdict: 'empty-tce', clearedBy: { position: last('unmap1'), command: 'ioasUnmap' } });
    // After the replace the group translates through domain 2 (window 0 only), filled by its HwptAllocated (the
    // command's last event, after the domain's allocation).
    const replaced = { to: { position: last('replace') } };
    expect(await auditExplain(store, NVME, 0x10010n, replaced)).toMatchObject({
      verdict: 'reachable', domain: { id: 2, apertures: [['0x0', '0x7fffffff']] }, mappedBy: { position: last('hwpt2'), command: 'hwptAlloc' },
    });
    expect((await auditExplain(store, NVME, WIN1, replaced)).verdict).toBe('outside-window');
    expect((await auditExplain(store, NVME, 0x10010n)).verdict).toBe('kernel-owned');
  });

  it('diff covers every window of a domain, mappings as ranges', async () => {
    const d = await auditDiff(store, { position: last('ioas') }, { position: last('attach') });
    expect(d.diff.domains.allocated).toEqual([{
      id: 1, context: 'vm1', group: 0,
      windows: [{ slot: 0, aperture: ['0x0', '0x7fffffff'], pageSize: '4K' }, { slot: 1, aperture: ['0x800000000000000', '0x80000ffffffffff'], pageSize: '64K' }],
    }]);
    expect(d.diff.mappings).toEqual([{
      domain: 1, context: 'vm1', group: 0, unmapped: [],
      mapped: [{ iova: '0x10000', paddr: '0x300000000', pages: 16, perm: 'rw' }, { iova: '0x800000000000000', paddr: '0x100000000', pages: 16384, perm: 'rw' }],
    }]);
    expect(d.diff.ownership).toEqual([{ group: 0, devices: [NVME], from: 'kernel', to: 'vm1' }]);
    expect(d.diff.windows.map((w) => [w.slot, w.to])).toEqual([[0, '0x0..0x7fffffff 4K domain 1'], [1, '0x800000000000000..0x80000ffffffffff 64K domain 1']]);
    const u = await auditDiff(store, { position: last('attach') }, { position: last('unmap1') });
    expect(u.changes).toBe(1);
    expect(u.diff.mappings).toEqual([{ domain: 1, context: 'vm1', group: 0, mapped: [], unmapped: [{ iova: '0x800000000000000', paddr: '0x100000000', pages: 16384, perm: 'rw' }] }]);
  });

  it('report: one occupancy strip per window of an attached two-window domain', async () => {
    const m = await auditReport(store, { to: { position: last('attach') } });
    const strips = m.windows.filter((w) => w.table === 'domain:1');
    expect(strips.map((w) => [w.slot, w.start, w.last, w.entries, w.valid])).toEqual([
      [0, '0x0', '0x7fffffff', 0x80000, 16],
      [1, '0x800000000000000', '0x80000ffffffffff', 0x1000000, 16384],
    ]);
    // Before the attach, the domain's windows are listed as not attached, one strip each.
    const before = await auditReport(store, { to: { position: last('map0') } });
    expect(before.windows.filter((w) => w.table === 'domain:1').map((w) => [w.pe, w.slot, w.valid])).toEqual([[null, 0, 16], [null, 1, 16384]]);
  });
});
