import { invariants, type State } from '@iommu-orch/core';
import { describe, expect, it } from 'vitest';
import { pseriesHost } from './rfc-helpers.js';
import { apply, codeOf, eventTypes, NIC, NVME, powernvHost, rw } from '../support/fixtures.js';

const CARD = [
  { bdf: '0000:02:00.0', ...NIC, driver: 'tg3' },
  { bdf: '0000:02:00.1', ...NIC, driver: 'tg3' },
];

/** powernvHost with an empty slot C3 on bus 2 of PHB 0. */
function withSlot(): State {
  return apply(powernvHost(), { type: 'registerSlot', slot: 'C3', phb: 0, bus: 2 });
}

/** The card in C3 taken whole by vm1: both functions claimed, attached to domain 1, 16 pages mapped. */
function assigned(): State {
  return apply(
    withSlot(),
    { type: 'enableSlot', slot: 'C3', devices: CARD },
    { type: 'unbindDriver', bdf: '0000:02:00.0' },
    { type: 'unbindDriver', bdf: '0000:02:00.1' },
    { type: 'claimDevice', context: 'vm1', bdf: '0000:02:00.0' },
    { type: 'claimDevice', context: 'vm1', bdf: '0000:02:00.1' },
    { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:02:00.0' },
    { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:02:00.0' },
    { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:02:00.1' },
    { type: 'mapPages', context: 'vm1', domain: 1, iova: 0n, paddr: 0x4000_0000n, pgsize: 0x1000n, pgcount: 16, prot: rw },
  );
}

describe('pnv_php slot states', () => {
  it('registers REGISTERED when empty and POPULATED when its bus already has devices', () => {
    expect(withSlot().slots['C3']).toEqual({ name: 'C3', phb: 0, bus: 2, state: 'registered' });
    const s = apply(powernvHost(), { type: 'registerSlot', slot: 'C1', phb: 0, bus: 1 });
    expect(s.slots['C1']!.state).toBe('populated');
  });
  it('refuses a second slot on a bus, a duplicate name, a missing PHB, bus 0 and pSeries', () => {
    expect(codeOf(withSlot(), { type: 'registerSlot', slot: 'C4', phb: 0, bus: 2 })).toBe('EEXIST');
    expect(codeOf(withSlot(), { type: 'registerSlot', slot: 'C3', phb: 1, bus: 2 })).toBe('EEXIST');
    expect(codeOf(withSlot(), { type: 'registerSlot', slot: 'C9', phb: 7, bus: 2 })).toBe('ENODEV');
    expect(codeOf(withSlot(), { type: 'registerSlot', slot: 'C9', phb: 0, bus: 0 })).toBe('EINVAL');
    expect(codeOf(pseriesHost(), { type: 'registerSlot', slot: 'C9', phb: 0, bus: 1 })).toBe('EOPNOTSUPP');
  });
  it('an unpowered slot hides its bus: a probe there is ENODEV', () => {
    expect(codeOf(withSlot(), { type: 'addDevice', bdf: '0000:02:00.0', ...NVME })).toBe('ENODEV');
  });
  it('enable: an empty slot stays REGISTERED; a card is probed (PE, table, group) and the slot is POPULATED', () => {
    expect(eventTypes(withSlot(), { type: 'enableSlot', slot: 'C3', devices: [] })).toEqual([]);
    const s = apply(withSlot(), { type: 'enableSlot', slot: 'C3', devices: CARD });
    expect(s.slots['C3']!.state).toBe('populated');
    const pe = s.pes[s.devices['0000:02:00.0']!.pe]!;
    expect(pe).toMatchObject({ number: 0xfc, bus: 2, devices: ['0000:02:00.0', '0000:02:00.1'], bypass: true });
    expect(s.groups[pe.group!]!.devices).toEqual(['0000:02:00.0', '0000:02:00.1']);
    expect(invariants(s)).toEqual([]);
    // Enabling a populated slot does nothing, as pnv_php_enable returns at once.
    expect(eventTypes(s, { type: 'enableSlot', slot: 'C3', devices: [{ bdf: '0000:02:00.2', ...NVME }] })).toEqual([]);
  });
  it('enable refuses a card function on another bus and an unknown slot', () => {
    expect(codeOf(withSlot(), { type: 'enableSlot', slot: 'C3', devices: [{ bdf: '0000:03:00.0', ...NVME }] })).toBe('EINVAL');
    expect(codeOf(withSlot(), { type: 'enableSlot', slot: 'C7', devices: [] })).toBe('ENOENT');
  });
  it('unregister: EBUSY while populated; OFFLINE otherwise, where enable is ENODEV; registering again brings it back', () => {
    const populated = apply(withSlot(), { type: 'enableSlot', slot: 'C3', devices: CARD });
    expect(codeOf(populated, { type: 'unregisterSlot', slot: 'C3' })).toBe('EBUSY');
    const off = apply(withSlot(), { type: 'unregisterSlot', slot: 'C3' });
    expect(off.slots['C3']!.state).toBe('offline');
    expect(codeOf(off, { type: 'enableSlot', slot: 'C3', devices: CARD })).toBe('ENODEV');
    expect(codeOf(off, { type: 'disableSlot', slot: 'C3' })).toBe('ENODEV');
    expect(apply(off, { type: 'registerSlot', slot: 'C3', phb: 0, bus: 2 }).slots['C3']!.state).toBe('registered');
  });
});

describe('orderly removal: request, owner releases, removed', () => {
  it('disable is EBUSY while a context holds a function of the card; nothing is removed', () => {
    expect(codeOf(assigned(), { type: 'disableSlot', slot: 'C3' })).toBe('EBUSY');
  });
  it('a request tells the owner (in the log), blocks new claims and probes, and leaves the owner its access', () => {
    const s = apply(assigned(), { type: 'requestRemoval', bdf: '0000:02:00.0' }, { type: 'requestRemoval', bdf: '0000:02:00.1' });
    expect(eventTypes(assigned(), { type: 'requestRemoval', bdf: '0000:02:00.0' })).toEqual(['RemovalRequested']);
    expect(eventTypes(s, { type: 'requestRemoval', bdf: '0000:02:00.0' })).toEqual([]);
    expect(codeOf(s, { type: 'bindDriver', bdf: '0000:02:00.0', driver: 'tg3' })).toBe('ENODEV');
    expect(codeOf(s, { type: 'unmapPages', context: 'vm1', domain: 1, iova: 0n, pgsize: 0x1000n, pgcount: 1 })).toBe('ok');
    const released = apply(
      s,
      { type: 'detachDevice', context: 'vm1', bdf: '0000:02:00.0' },
      { type: 'detachDevice', context: 'vm1', bdf: '0000:02:00.1' },
      { type: 'releaseDevice', context: 'vm1', bdf: '0000:02:00.0' },
    );
    expect(codeOf(released, { type: 'claimDevice', context: 'vm1', bdf: '0000:02:00.0' })).toBe('ENODEV');
    expect(codeOf(released, { type: 'disableSlot', slot: 'C3' })).toBe('EBUSY');
    const done = apply(released, { type: 'releaseDevice', context: 'vm1', bdf: '0000:02:00.1' }, { type: 'disableSlot', slot: 'C3' });
    expect(done.slots['C3']!.state).toBe('registered');
    expect(Object.keys(done.devices).filter((d) => d.startsWith('0000:02:'))).toEqual([]);
    // The domain outlives the group's devices only until the group goes: freed with its TCEs unmapped.
    expect(done.domains).toEqual({});
    expect(done.pinned).toEqual({});
    expect(invariants(done)).toEqual([]);
  });
  it('the last device leaving a PE frees its windows, group and PE number: a re-plug reuses the number, not the group id', () => {
    const gone = apply(withSlot(), { type: 'enableSlot', slot: 'C3', devices: CARD }, { type: 'disableSlot', slot: 'C3' });
    expect(Object.values(gone.pes).some((p) => p.bus === 2)).toBe(false);
    const back = apply(gone, { type: 'enableSlot', slot: 'C3', devices: CARD });
    expect(back.devices['0000:02:00.0']).toMatchObject({ pe: 'domain0-pefc', group: 3 });
    expect(invariants(back)).toEqual([]);
  });
});

describe('surprise removal', () => {
  it('forces detach, unmap, unpin and group release, then removes everything the card kept alive', () => {
    const types = eventTypes(assigned(), { type: 'disableSlot', slot: 'C3', surprise: true }) as string[];
    const order = ['DeviceDetached', 'DmaOwnerReleased', 'DeviceRemoved', 'TcesCleared', 'PagingDomainFreed', 'GroupRemoved', 'PeReleased', 'SlotStateChanged'];
    expect(types.filter((t) => order.includes(t)).filter((t, i, a) => a.indexOf(t) === i)).toEqual(order);
    const s = apply(assigned(), { type: 'disableSlot', slot: 'C3', surprise: true });
    expect(s.pinned).toEqual({});
    expect(s.domains).toEqual({});
    expect(Object.values(s.groups).map((g) => g.owner)).toEqual([null, null]);
    expect(invariants(s)).toEqual([]);
  });
  it('of one function keeps the group (and its mappings) for the function that stays', () => {
    const s = apply(assigned(), { type: 'removeDevice', bdf: '0000:02:00.1', surprise: true });
    expect(s.domains[1]!.windows[0]!.table.valid).toBe(16);
    expect(s.pinned).toEqual({ vm1: 16n * 0x1000n });
    expect(invariants(s)).toEqual([]);
  });
});

describe('freeing a domain unmaps it first', () => {
  it('a user free of a mapped, detached domain clears its TCEs and unpins', () => {
    const s = apply(assigned(), { type: 'detachDevice', context: 'vm1', bdf: '0000:02:00.0' }, { type: 'detachDevice', context: 'vm1', bdf: '0000:02:00.1' });
    expect(eventTypes(s, { type: 'freeDomain', context: 'vm1', domain: 1 })).toEqual(['TcesCleared', 'PagingDomainFreed']);
    expect(apply(s, { type: 'freeDomain', context: 'vm1', domain: 1 }).pinned).toEqual({});
  });
});
