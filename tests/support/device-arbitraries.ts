import type { Command } from '@iommu-orch/core';
import fc from 'fast-check';
import { CX5_PF, NIC, NVME, ROOT_PORT } from './fixtures.js';

/**
 * Random command sequences over a host with hotplug slots and an SR-IOV PF: slot S1 (PHB 0 bus 1) holds
 * a ConnectX-5 PF with four VFs at most and an NVMe function; slot S2 (PHB 1 bus 1) takes a
 * two-function NIC card. Addresses include every VF, so claims, attaches and maps land on VFs that
 * come and go.
 */
export const deviceBoot: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB3' },
  { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
  { type: 'addDevice', bdf: '0001:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
  { type: 'registerSlot', slot: 'S1', phb: 0, bus: 1 },
  { type: 'registerSlot', slot: 'S2', phb: 1, bus: 1 },
];

const S1_CARD = [
  { bdf: '0000:01:00.0', ...CX5_PF, totalVfs: 4, driver: 'mlx5_core' },
  { bdf: '0000:01:00.1', ...NVME },
];
const S2_CARD = [
  { bdf: '0001:01:00.0', ...NIC, driver: 'tg3' },
  { bdf: '0001:01:00.1', ...NIC },
];
const ENDPOINTS = ['0000:01:00.0', '0000:01:00.1', '0000:01:00.2', '0000:01:00.3', '0000:01:00.4', '0000:01:00.5', '0001:01:00.0', '0001:01:00.1'];

const bdf = fc.constantFrom(...ENDPOINTS);
const context = fc.constantFrom('vm1', 'vm2');
const domain = fc.integer({ min: 1, max: 6 });
const slot = fc.constantFrom('S1', 'S2');
const prot = fc.constantFrom({ read: true, write: false }, { read: true, write: true });

export const deviceCommandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ type: fc.constant('enableSlot' as const), slot: fc.constant('S1'), devices: fc.constant(S1_CARD) }),
  fc.record({ type: fc.constant('enableSlot' as const), slot: fc.constant('S2'), devices: fc.constant(S2_CARD) }),
  fc.record({ type: fc.constant('disableSlot' as const), slot, surprise: fc.boolean() }),
  fc.record({ type: fc.constant('unregisterSlot' as const), slot }),
  fc.record({ type: fc.constant('registerSlot' as const), slot, phb: fc.constantFrom(0, 1), bus: fc.constant(1) }),
  fc.record({ type: fc.constant('setNumVfs' as const), bdf: fc.constant('0000:01:00.0'), numVfs: fc.integer({ min: 0, max: 5 }), vfDriver: fc.constantFrom(null, 'mlx5_core') }),
  fc.record({ type: fc.constant('requestRemoval' as const), bdf }),
  fc.record({ type: fc.constant('removeDevice' as const), bdf, surprise: fc.boolean() }),
  fc.record({ type: fc.constant('unbindDriver' as const), bdf }),
  fc.record({ type: fc.constant('bindDriver' as const), bdf, driver: fc.constant('mlx5_core') }),
  fc.record({ type: fc.constant('claimDevice' as const), context, bdf }),
  fc.record({ type: fc.constant('releaseDevice' as const), context, bdf }),
  fc.record({ type: fc.constant('allocPagingDomain' as const), context, bdf, pageShift: fc.constantFrom(12, 16) }),
  fc.record({ type: fc.constant('freeDomain' as const), context, domain }),
  fc.record({ type: fc.constant('attachDevice' as const), context, domain, bdf }),
  fc.record({ type: fc.constant('detachDevice' as const), context, bdf }),
  fc.record({
    type: fc.constant('mapPages' as const), context, domain, iova: fc.integer({ min: 0, max: 64 }).map((n) => BigInt(n) << 16n),
    paddr: fc.constant(0x4000_0000n), pgsize: fc.constant(0x1000n), pgcount: fc.integer({ min: 1, max: 32 }), prot,
  }),
  fc.record({
    type: fc.constant('unmapPages' as const), context, domain, iova: fc.integer({ min: 0, max: 64 }).map((n) => BigInt(n) << 16n),
    pgsize: fc.constant(0x1000n), pgcount: fc.integer({ min: 1, max: 32 }),
  }),
);

/** Take a whole group: claim every given function, allocate, attach each, map. */
const assignArb: fc.Arbitrary<Command[]> = fc
  .record({ context, fns: fc.constantFrom(['0000:01:00.1'], ['0000:01:00.2'], ['0000:01:00.3'], ['0001:01:00.0', '0001:01:00.1']), domain, pages: fc.integer({ min: 1, max: 16 }) })
  .map(({ context: ctx, fns, domain: dom, pages }) => [
    ...fns.map((f) => ({ type: 'unbindDriver' as const, bdf: f })),
    ...fns.map((f) => ({ type: 'claimDevice' as const, context: ctx, bdf: f })),
    { type: 'allocPagingDomain' as const, context: ctx, bdf: fns[0]! },
    ...fns.map((f) => ({ type: 'attachDevice' as const, context: ctx, domain: dom, bdf: f })),
    { type: 'mapPages' as const, context: ctx, domain: dom, iova: 0n, paddr: 0x4000_0000n, pgsize: 0x1000n, pgcount: pages, prot: { read: true, write: true } },
  ]);

export const deviceCommandsArb: fc.Arbitrary<Command[]> = fc
  .array(fc.oneof({ arbitrary: deviceCommandArb.map((c) => [c]), weight: 3 }, { arbitrary: assignArb, weight: 1 }), { minLength: 1, maxLength: 30 })
  .map((chunks) => [
    { type: 'enableSlot' as const, slot: 'S1', devices: S1_CARD },
    { type: 'setNumVfs' as const, bdf: '0000:01:00.0', numVfs: 3, vfDriver: null },
    ...chunks.flat(),
  ]);
