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

export const commandsArb: fc.Arbitrary<Command[]> = fc
  .array(fc.oneof({ arbitrary: commandArb.map((c) => [c]), weight: 3 }, { arbitrary: flowArb, weight: 1 }), { minLength: 1, maxLength: 25 })
  .map((chunks) => chunks.flat());
