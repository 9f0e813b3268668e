import type { Command } from '@iommu-orch/core';
import fc from 'fast-check';

/**
 * Random command sequences over a small universe (2 PHBs, a handful of addresses, two contexts, four
 * domain ids), so that valid and invalid commands both come up often: claims of devices with drivers,
 * maps across the window end, attaches to foreign domains, removals of owned devices.
 */
const BDFS = ['0000:00:00.0', '0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0001:00:00.0', '0001:01:00.0', '0001:01:00.1', '0002:01:00.0'];
const CONTEXTS = ['vm1', 'vm2'];
const bdf = fc.constantFrom(...BDFS);
const context = fc.constantFrom(...CONTEXTS);
const domain = fc.integer({ min: 1, max: 4 });
const pgsize = fc.constantFrom(0x1000n, 0x10000n, 0x200000n);
const iova = fc.oneof(
  fc.constantFrom(0n, 0x1000n, 0x10000n, 0x7fff_f000n, 0x7fff_0000n, 0x8000_0000n, 0x3fff_f000n, 0x1234n),
  fc.bigInt({ min: 0n, max: 0x7fffn }).map((n) => n << 16n),
);
const prot = fc.constantFrom({ read: true, write: false }, { read: false, write: true }, { read: true, write: true });

export const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ type: fc.constant('addPhb' as const), phb: fc.integer({ min: 0, max: 2 }), platform: fc.constant('powernv' as const), generation: fc.constantFrom('PHB3' as const, 'PHB4' as const) }),
  fc.record({
    type: fc.constant('addDevice' as const), bdf, vendor: fc.constant(0x1014), device: fc.constant(0x04c1),
    classCode: fc.constantFrom(0x060400, 0x010802, 0x020000), driver: fc.constantFrom(null, 'nvme'),
  }),
  fc.record({ type: fc.constant('removeDevice' as const), bdf, surprise: fc.boolean() }),
  fc.record({ type: fc.constant('bindDriver' as const), bdf, driver: fc.constant('nvme') }),
  fc.record({ type: fc.constant('unbindDriver' as const), bdf }),
  fc.record({ type: fc.constant('claimDevice' as const), context, bdf }),
  fc.record({ type: fc.constant('releaseDevice' as const), context, bdf }),
  fc.record({ type: fc.constant('allocPagingDomain' as const), context, bdf, pageShift: fc.constantFrom(12, 16, 24) }),
  fc.record({ type: fc.constant('freeDomain' as const), context, domain }),
  fc.record({ type: fc.constant('attachDevice' as const), context, domain, bdf }),
  fc.record({ type: fc.constant('detachDevice' as const), context, bdf }),
  fc.record({
    type: fc.constant('mapPages' as const), context, domain, iova, paddr: fc.bigInt({ min: 0n, max: 0xffffn }).map((n) => n << 16n),
    pgsize, pgcount: fc.integer({ min: 1, max: 40 }), prot,
  }),
  fc.record({ type: fc.constant('unmapPages' as const), context, domain, iova, pgsize, pgcount: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ type: fc.constant('iovaToPhys' as const), context, domain, iova }),
);

/** A plausible start so most sequences get past topology: 2 PHBs and their root ports. */
export const bootCommands: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB4' },
  { type: 'addDevice', bdf: '0000:00:00.0', vendor: 0x1014, device: 0x04c1, classCode: 0x060400, driver: 'pcieport' },
  { type: 'addDevice', bdf: '0000:01:00.0', vendor: 0x1987, device: 0x5008, classCode: 0x010802 },
  { type: 'addDevice', bdf: '0000:01:00.1', vendor: 0x1987, device: 0x5008, classCode: 0x010802 },
  { type: 'addDevice', bdf: '0001:01:00.0', vendor: 0x14e4, device: 0x1657, classCode: 0x020000, driver: 'tg3' },
];

const ENDPOINTS = ['0000:01:00.0', '0000:01:00.1', '0001:01:00.0'];

/**
 * A plausible flow for one device: unbind, claim, allocate, attach, map and unmap, maybe detach and
 * release. Mixed with random commands, it drives sequences deep into the domain rules.
 */
const flowArb: fc.Arbitrary<Command[]> = fc
  .record({
    context,
    bdf: fc.constantFrom(...ENDPOINTS),
    domain,
    maps: fc.array(
      fc.record({ iova, pgcount: fc.integer({ min: 1, max: 64 }), prot, unmap: fc.boolean(), pgsize: fc.constantFrom(0x1000n, 0x1000n, 0x10000n) }),
      { maxLength: 6 },
    ),
    end: fc.constantFrom('keep', 'detach', 'release', 'surprise'),
  })
  .map(({ context: ctx, bdf: dev, domain: dom, maps, end }) => {
    const out: Command[] = [
      { type: 'unbindDriver', bdf: dev },
      { type: 'claimDevice', context: ctx, bdf: dev },
      { type: 'allocPagingDomain', context: ctx, bdf: dev },
      { type: 'attachDevice', context: ctx, domain: dom, bdf: dev },
    ];
    for (const m of maps) {
      out.push({ type: 'mapPages', context: ctx, domain: dom, iova: m.iova, paddr: 0x4000_0000n, pgsize: m.pgsize, pgcount: m.pgcount, prot: m.prot });
      if (m.unmap) out.push({ type: 'unmapPages', context: ctx, domain: dom, iova: m.iova, pgsize: m.pgsize, pgcount: m.pgcount });
    }
    if (end === 'detach' || end === 'release') out.push({ type: 'detachDevice', context: ctx, bdf: dev });
    if (end === 'release') out.push({ type: 'releaseDevice', context: ctx, bdf: dev });
    if (end === 'surprise') out.push({ type: 'removeDevice', bdf: dev, surprise: true });
    return out;
  });

/** bootCommands, then vm1 takes the NVMe group (both functions: a group is assigned whole) with paging domain 1 attached. */
export const attachedBootCommands: Command[] = [
  ...bootCommands,
  { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
  { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.1' },
  { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 12 },
  { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' },
];

export const commandsArb: fc.Arbitrary<Command[]> = fc
  .array(fc.oneof({ arbitrary: commandArb.map((c) => [c]), weight: 3 }, { arbitrary: flowArb, weight: 1 }), { minLength: 1, maxLength: 25 })
  .map((chunks) => chunks.flat());

/**
 * iommufd commands over the same hosts plus a pSeries guest PHB: object ids 0-7 in two contexts, so
 * lookups of missing and wrong-kind ids come up often; IOVAs around window 0's end, inside window 1
 * and in the gap; HWPTs with and without window parameters (valid and invalid ones).
 */
const objId = fc.oneof(fc.constantFrom(1, 1, 2, 3), fc.integer({ min: 0, max: 7 }));
/** Flows run in their own contexts, so their ids (IOAS 1, DEVICE 2, HWPT 3) usually hold. */
const iommufdContext = fc.constantFrom('vm1', 'vm2', 'f1', 'f2', 'f3');
const W1 = 1n << 59n;
const ioasIova = fc.oneof(
  fc.constantFrom(0n, 0x10000n, 0x7fff0000n, 0x7ffff000n, 0x80000000n, 0x100000000n, W1, W1 + 0x10000n, W1 + 0x1000n),
  fc.bigInt({ min: 0n, max: 0x3ffn }).map((n) => n << 12n),
  fc.bigInt({ min: 0n, max: 0x3ffn }).map((n) => 0x100000n + (n << 11n)),
);
const ioasLength = fc.oneof(fc.constantFrom(0n, 0x800n, 0x1000n, 0x10000n, 0x20000n, 1n << 64n >> 1n), fc.integer({ min: 1, max: 24 }).map((n) => BigInt(n) << 12n));
const ioasPaddr = fc.constantFrom(0x40000000n, 0x40000800n, 0x40001000n, 0x50000000n);
const mapFlags = fc.subarray(['FIXED_IOVA', 'READABLE', 'WRITEABLE', 'READABLE', 'WRITEABLE', 'DIRTY']);
const windowSpec = fc.oneof(
  fc.record({
    window: fc.constantFrom(0, 1, 1, 2),
    pageShift: fc.constantFrom(12, 16, 21),
    size: fc.constantFrom(0x80000000n, 0x40000000n, 1n << 40n, 1n << 34n, 0x30000000n),
    levels: fc.constantFrom(1, 2, 3),
  }),
  fc.constantFrom(
    { window: 0, pageShift: 12, size: 0x40000000n, levels: 1 },
    { window: 1, pageShift: 16, size: 1n << 40n, levels: 1 },
    { window: 1, pageShift: 16, size: 1n << 34n, levels: 2 },
  ),
);
const iommufdBdf = fc.constantFrom('0000:01:00.0', '0000:01:00.1', '0001:01:00.0', '0002:00:01.0', '0000:00:00.0');
const range = fc.tuple(ioasIova, fc.bigInt({ min: 0n, max: 0xfffffn })).map(([start, len]) => ({ start, last: start + len }));

export const iommufdCommandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ type: fc.constant('iommufdBind' as const), context: iommufdContext, bdf: iommufdBdf }),
  fc.record({ type: fc.constant('iommufdUnbind' as const), context: iommufdContext, device: objId }),
  fc.record({ type: fc.constant('iommufdDestroy' as const), context: iommufdContext, id: objId }),
  fc.record({ type: fc.constant('iommufdClose' as const), context }),
  fc.record({ type: fc.constant('ioasAlloc' as const), context }),
  fc.record({ type: fc.constant('ioasMap' as const), context: iommufdContext, ioas: objId, flags: mapFlags, iova: ioasIova, length: ioasLength, paddr: ioasPaddr }),
  fc.record({ type: fc.constant('ioasUnmap' as const), context: iommufdContext, ioas: objId, iova: ioasIova, length: ioasLength }),
  fc.record({ type: fc.constant('ioasUnmap' as const), context: iommufdContext, ioas: objId, iova: fc.constant(0n), length: fc.constant((1n << 64n) - 1n) }),
  fc.record({
    type: fc.constant('ioasCopy' as const), context: iommufdContext, dstIoas: objId, srcIoas: objId, flags: mapFlags, dstIova: ioasIova, srcIova: ioasIova, length: ioasLength,
  }),
  fc.record({ type: fc.constant('ioasIovaRanges' as const), context: iommufdContext, ioas: objId, numIovas: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ type: fc.constant('ioasAllowIovas' as const), context: iommufdContext, ioas: objId, ranges: fc.array(range, { maxLength: 2 }) }),
  fc.record({ type: fc.constant('ioasAddReserved' as const), context: iommufdContext, ioas: objId, start: ioasIova, length: ioasLength }),
  fc.record({ type: fc.constant('hwptAlloc' as const), context: iommufdContext, device: objId, ptId: objId }),
  fc.record({ type: fc.constant('hwptAlloc' as const), context: iommufdContext, device: objId, ptId: objId, windows: fc.array(windowSpec, { minLength: 1, maxLength: 2 }) }),
  fc.record({ type: fc.constant('deviceAttach' as const), context: iommufdContext, device: objId, ptId: objId }),
  fc.record({ type: fc.constant('deviceReplace' as const), context: iommufdContext, device: objId, ptId: objId }),
  fc.record({ type: fc.constant('deviceDetach' as const), context: iommufdContext, device: objId }),
  fc.record({ type: fc.constant('getHwInfo' as const), context: iommufdContext, device: objId }),
  fc.record({ type: fc.constant('setPhbOption' as const), phb: fc.integer({ min: 0, max: 2 }), option: fc.constant('tve1-4gb' as const), enabled: fc.boolean() }),
  fc.record({ type: fc.constant('rtasQueryPeDmaWindow' as const), phb: fc.constantFrom(0, 2) }),
  fc.record({ type: fc.constant('rtasCreatePeDmaWindow' as const), phb: fc.constant(2), pageShift: fc.constantFrom(12, 16, 21), windowShift: fc.constantFrom(11, 30, 40, 50) }),
  fc.record({ type: fc.constant('rtasRemovePeDmaWindow' as const), liobn: fc.constantFrom(0x80000200, 0x80000201, 0x80000000) }),
  fc.record({ type: fc.constant('rtasResetPeDmaWindows' as const), phb: fc.constant(2) }),
);

/** bootCommands plus a pSeries guest PHB with one NVMe. */
export const iommufdBootCommands: Command[] = [
  ...bootCommands,
  { type: 'addPhb', phb: 2, platform: 'pseries', generation: 'SPAPR' },
  { type: 'addDevice', bdf: '0002:00:01.0', vendor: 0x1987, device: 0x5008, classCode: 0x010802 },
];

/** A plausible iommufd life: bind, IOAS, attach (to the IOAS or a HWPT), maps and unmaps, an ending. */
const iommufdFlowArb: fc.Arbitrary<Command[]> = fc
  .record({
    context: fc.constantFrom('f1', 'f2', 'f3'),
    bdf: fc.constantFrom('0000:01:00.0', '0000:01:00.1', '0002:00:01.0'),
    windows: fc.option(fc.array(windowSpec, { minLength: 1, maxLength: 2 }), { nil: undefined }),
    maps: fc.array(fc.record({ iova: ioasIova, length: ioasLength, fixed: fc.boolean(), unmap: fc.boolean() }), { maxLength: 5 }),
    copy: fc.boolean(),
    allow: fc.option(fc.array(range, { maxLength: 2 }), { nil: undefined }),
    end: fc.constantFrom('keep', 'detach', 'unbind', 'close', 'surprise', 'replace'),
  })
  .map(({ context: ctx, bdf: dev, windows, maps, copy, allow, end }) => {
    const out: Command[] = [
      { type: 'ioasAlloc', context: ctx },
      ...(allow ? [{ type: 'ioasAllowIovas' as const, context: ctx, ioas: 1, ranges: allow }] : []),
      { type: 'iommufdBind', context: ctx, bdf: dev },
      { type: 'getHwInfo', context: ctx, device: 2 },
      windows ? { type: 'hwptAlloc', context: ctx, device: 2, ptId: 1, windows } : { type: 'deviceAttach', context: ctx, device: 2, ptId: 1 },
    ];
    if (windows) out.push({ type: 'deviceAttach', context: ctx, device: 2, ptId: 3 });
    for (const m of maps) {
      out.push({ type: 'ioasMap', context: ctx, ioas: 1, flags: m.fixed ? ['FIXED_IOVA', 'READABLE', 'WRITEABLE'] : ['READABLE'], iova: m.iova, length: m.length, paddr: 0x40000000n });
      if (m.unmap) out.push({ type: 'ioasUnmap', context: ctx, ioas: 1, iova: m.iova, length: m.length });
    }
    out.push({ type: 'ioasIovaRanges', context: ctx, ioas: 1 });
    const first = maps.find((m) => m.fixed && !m.unmap);
    if (copy && first) out.push({ type: 'ioasCopy', context: ctx, dstIoas: 1, srcIoas: 1, flags: ['READABLE'], srcIova: first.iova, length: first.length });
    if (end === 'detach') out.push({ type: 'deviceDetach', context: ctx, device: 2 });
    if (end === 'unbind') out.push({ type: 'iommufdUnbind', context: ctx, device: 2 });
    if (end === 'close') out.push({ type: 'iommufdClose', context: ctx });
    if (end === 'surprise') out.push({ type: 'removeDevice', bdf: dev, surprise: true });
    if (end === 'replace') out.push({ type: 'ioasAlloc', context: ctx }, { type: 'deviceReplace', context: ctx, device: 2, ptId: 4 });
    return out;
  });

/** iommufd commands, flows and (less often) the raw kernel-level commands, which must not break iommufd's state. */
export const iommufdCommandsArb: fc.Arbitrary<Command[]> = fc
  .array(
    fc.oneof(
      { arbitrary: iommufdCommandArb.map((c) => [c]), weight: 4 },
      { arbitrary: iommufdFlowArb, weight: 2 },
      { arbitrary: commandArb.map((c) => [c]), weight: 1 },
    ),
    { minLength: 1, maxLength: 20 },
  )
  .map((chunks) => chunks.flat());
