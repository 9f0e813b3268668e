import type { Command } from '@iommu-orch/core';
import fc from 'fast-check';
import { NIC, NVME, ROOT_PORT } from './fixtures.js';

/**
 * Random sequences of EEH, KVM hypercall and VFIO sPAPR container commands, mixed with ownership
 * changes, removals and whole flows (a host recovery, an owner's recovery, a container, a KVM guest),
 * after EEH_BOOT. Each eehFreeze carries `at: 0`; a test may spread them in time.
 */
export const EEH_BOOT: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  { type: 'addPhb', phb: 1, platform: 'pseries', generation: 'SPAPR' },
  { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
  { type: 'addDevice', bdf: '0000:01:00.0', ...NIC, driver: 'tg3' },
  { type: 'addDevice', bdf: '0000:02:00.0', ...NVME },
  { type: 'addDevice', bdf: '0000:03:00.0', ...NVME },
  { type: 'addDevice', bdf: '0001:00:01.0', ...NVME, driver: 'nvme' },
  { type: 'kvmSetMemslot', slot: 0, gpa: 0n, size: 1n << 32n, ua: 0x7f00_0000_0000n },
];
const PES = ['domain0-pefd', 'domain0-pefc', 'domain0-pefb', 'domain0-pefe', 'domain1-pe0'];
const BDFS = ['0000:01:00.0', '0000:02:00.0', '0000:03:00.0', '0001:00:01.0'];
const ctx = fc.constantFrom('vm1', 'vm2');
const pe = fc.constantFrom(...PES);
const bdf = fc.constantFrom(...BDFS);
const liobn = fc.constantFrom(0x1000, 0x8000_0100, 0x8000_0101);
const page = fc.integer({ min: 0, max: 40 }).map((n) => BigInt(n) << 16n);
const tce = fc.tuple(fc.integer({ min: 0, max: 0x11000 }), fc.integer({ min: 0, max: 3 })).map(([p, perm]) => (BigInt(p) << 16n) | BigInt(perm));

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  bdf.map((b): Command => ({ type: 'eehFreeze', bdf: b, at: 0 })),
  fc.tuple(pe, fc.constantFrom('error_detected', 'mmio_enabled', 'slot_reset') as fc.Arbitrary<'error_detected'>, fc.constantFrom('none', 'recovered', 'can_recover', 'need_reset', 'disconnect') as fc.Arbitrary<'none'>)
    .map(([p, phase, result]): Command => ({ type: 'eehReport', pe: p, phase, result })),
  fc.tuple(pe, fc.constantFrom('mmio', 'dma') as fc.Arbitrary<'mmio'>).map(([p, what]): Command => ({ type: 'eehThaw', pe: p, what })),
  pe.map((p): Command => ({ type: 'eehReset', pe: p })),
  pe.map((p): Command => ({ type: 'eehResume', pe: p })),
  pe.map((p): Command => ({ type: 'eehHotplugReset', pe: p })),
  pe.map((p): Command => ({ type: 'eehFail', pe: p, reason: 'test' })),
  fc.tuple(ctx, fc.integer({ min: 0, max: 10 })).map(([c, op]): Command => ({ type: 'vfioEehPeOp', context: c, op, err: { type: 0, func: 3, addr: 0n, mask: 0n } })),
  fc.tuple(ctx, bdf).map(([c, b]): Command => ({ type: 'claimDevice', context: c, bdf: b })),
  fc.tuple(ctx, bdf).map(([c, b]): Command => ({ type: 'releaseDevice', context: c, bdf: b })),
  fc.tuple(ctx, bdf).map(([c, b]): Command => ({ type: 'allocPagingDomain', context: c, bdf: b, pageShift: 12 })),
  fc.tuple(ctx, bdf, fc.integer({ min: 1, max: 6 })).map(([c, b, d]): Command => ({ type: 'attachDevice', context: c, domain: d, bdf: b })),
  bdf.map((b): Command => ({ type: 'removeDevice', bdf: b, surprise: true })),
  fc.constant<Command>({ type: 'kvmCreateSpaprTce', liobn: 0x1000, pageShift: 16, offset: 0n, size: 1n << 14n }),
  fc.constant<Command>({ type: 'registerMemory', ua: 0x7f00_0000_0000n, size: 1n << 30n, pageShift: 16 }),
  fc.tuple(ctx, fc.integer({ min: 0, max: 3 })).map(([c, g]): Command => ({ type: 'kvmLinkGroup', liobn: 0x1000, context: c, group: g })),
  fc.tuple(liobn, page, tce).map(([l, i, t]): Command => ({ type: 'hPutTce', liobn: l, ioba: i, tce: t })),
  fc.tuple(liobn, page, fc.array(tce, { maxLength: 6 })).map(([l, i, ts]): Command => ({ type: 'hPutTceIndirect', liobn: l, ioba: i, tceList: 0x1000n, tces: ts })),
  fc.tuple(liobn, page, fc.integer({ min: 1, max: 8 })).map(([l, i, n]): Command => ({ type: 'hStuffTce', liobn: l, ioba: i, tce: 0n, npages: n })),
  fc.constantFrom<Command>({ type: 'rtasCreatePeDmaWindow', phb: 1, pageShift: 16, windowShift: 24 }, { type: 'rtasResetPeDmaWindows', phb: 1 }, { type: 'rtasRemovePeDmaWindow', liobn: 0x8000_0100 }),
  fc.tuple(ctx, fc.constantFrom(2, 7)).map(([c, t]): Command => ({ type: 'spaprOpen', container: `c-${c}`, iommuType: t })),
  fc.tuple(ctx, fc.integer({ min: 0, max: 3 })).map(([c, g]): Command => ({ type: 'spaprAttachGroup', container: `c-${c}`, group: g })),
  ctx.map((c): Command => ({ type: 'spaprEnable', container: `c-${c}` })),
  ctx.map((c): Command => ({ type: 'spaprRegisterMemory', container: `c-${c}`, vaddr: 0x7f00_0000_0000n, size: 1n << 24n, pageShift: 16 })),
  fc.tuple(ctx, fc.constantFrom(12, 16)).map(([c, s]): Command => ({ type: 'spaprTceCreate', container: `c-${c}`, pageShift: s, windowSize: 1n << 28n, levels: 1 })),
  fc.tuple(ctx, fc.constantFrom(0n, 1n << 59n)).map(([c, a]): Command => ({ type: 'spaprTceRemove', container: `c-${c}`, startAddr: a })),
  fc.tuple(ctx, page).map(([c, i]): Command => ({ type: 'spaprMapDma', container: `c-${c}`, vaddr: 0x7f00_0000_0000n + i, iova: i, size: 0x10000n, flags: ['READ', 'WRITE'] })),
  fc.tuple(ctx, page).map(([c, i]): Command => ({ type: 'spaprUnmapDma', container: `c-${c}`, iova: i, size: 0x10000n })),
  ctx.map((c): Command => ({ type: 'spaprClose', container: `c-${c}` })),
);

/** Whole flows, so deep states are reached; interleaved with the single commands above. */
const recovery = fc.tuple(bdf, fc.constantFrom('need_reset', 'can_recover', 'none') as fc.Arbitrary<'none'>).map(([b, r]): Command[] => {
  const p = PES[BDFS.indexOf(b)]!;
  const steps: Record<string, Command[]> = {
    none: [{ type: 'eehHotplugReset', pe: p }],
    can_recover: [{ type: 'eehThaw', pe: p, what: 'mmio' }, { type: 'eehThaw', pe: p, what: 'dma' }, { type: 'eehResume', pe: p }],
    need_reset: [{ type: 'eehReset', pe: p }, { type: 'eehReport', pe: p, phase: 'slot_reset', result: 'recovered' }, { type: 'eehResume', pe: p }],
  };
  return [{ type: 'eehFreeze', bdf: b, at: 0 }, { type: 'eehReport', pe: p, phase: 'error_detected', result: r }, ...steps[r]!];
});
const ownerRecovery = fc.tuple(ctx, fc.integer({ min: 1, max: 2 }), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 6 })).map(([c, g, ops]): Command[] => [
  { type: 'claimDevice', context: c, bdf: BDFS[g]! },
  ...ops.map((op): Command => ({ type: 'vfioEehPeOp', context: c, op, err: { type: 1, func: 12, addr: 0n, mask: 0n } })),
]);
const container = fc.tuple(ctx, fc.constantFrom(2, 7), fc.integer({ min: 1, max: 2 }), page).map(([c, t, g, i]): Command[] => [
  { type: 'spaprOpen', container: `c-${c}`, iommuType: t }, { type: 'spaprAttachGroup', container: `c-${c}`, group: g },
  { type: 'spaprEnable', container: `c-${c}` }, { type: 'spaprRegisterMemory', container: `c-${c}`, vaddr: 0x7f00_0000_0000n, size: 1n << 24n, pageShift: 16 },
  { type: 'spaprTceCreate', container: `c-${c}`, pageShift: 16, windowSize: 1n << 28n, levels: 1 },
  { type: 'spaprMapDma', container: `c-${c}`, vaddr: 0x7f00_0000_0000n + i, iova: i, size: 0x10000n, flags: ['READ'] },
]);
const guest = fc.tuple(ctx, fc.integer({ min: 1, max: 2 }), fc.array(fc.tuple(page, tce), { minLength: 1, maxLength: 4 })).map(([c, g, puts]): Command[] => {
  const b = BDFS[g]!;
  return [
    { type: 'claimDevice', context: c, bdf: b }, { type: 'allocPagingDomain', context: c, bdf: b, pageShift: 12 },
    { type: 'attachDevice', context: c, domain: 1, bdf: b }, { type: 'attachDevice', context: c, domain: 2, bdf: b },
    { type: 'kvmCreateSpaprTce', liobn: 0x1000, pageShift: 16, offset: 0n, size: 1n << 14n },
    { type: 'registerMemory', ua: 0x7f00_0000_0000n, size: 1n << 30n, pageShift: 16 },
    { type: 'kvmLinkGroup', liobn: 0x1000, context: c, group: g },
    ...puts.map(([i, t]): Command => ({ type: 'hPutTce', liobn: 0x1000, ioba: i, tce: t })),
  ];
});
export const eehKvmSpaprCommandsArb: fc.Arbitrary<Command[]> = fc
  .array(fc.oneof({ arbitrary: commandArb.map((c) => [c]), weight: 6 }, recovery, ownerRecovery, container, guest), { maxLength: 16 })
  .map((chunks) => chunks.flat());
