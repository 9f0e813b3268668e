import { formatBdf, initialState, invariants, normalizeBdf, parseBdf } from '@iommu-orch/core';
import { describe, expect, it } from 'vitest';
import { pseriesHost } from './rfc-helpers.js';
import { apply, codeOf, NIC, NVME, powernvHost, ROOT_PORT } from '../support/fixtures.js';

describe('PCI addresses', () => {
  it('parses and formats dddd:bb:dd.f', () => {
    expect(parseBdf('0030:01:00.1')).toEqual({ domain: 0x30, bus: 1, device: 0, fn: 1 });
    expect(formatBdf({ domain: 0x30, bus: 0xa, device: 0x1f, fn: 7 })).toBe('0030:0a:1f.7');
    expect(normalizeBdf('00AB:0C:1E.3')).toBe('00ab:0c:1e.3');
  });
  it.each(['0000:00:00', '000:00:00.0', '0000:00:20.0', '0000:00:00.8', 'zzzz:00:00.0', ' 0000:00:00.0'])('refuses %j with EINVAL', (text) => {
    expect(() => parseBdf(text)).toThrowError(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('PHBs', () => {
  it('maps the PHB generation to its IOMMU page sizes', () => {
    const s = apply(
      initialState,
      { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB3' },
      { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB4' },
      { type: 'addPhb', phb: 2, platform: 'pseries', generation: 'SPAPR' },
    );
    expect(s.phbs[0]!.pageShifts).toEqual([12, 16, 24, 28]);
    expect(s.phbs[1]!.pageShifts).toEqual([12, 16, 21, 30]);
    expect(s.phbs[2]!.pageShifts).toEqual([12, 16]);
  });
  it('refuses a duplicate, a generation of another platform, and a bad PE count', () => {
    const s = apply(initialState, { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' });
    expect(codeOf(s, { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' })).toBe('EEXIST');
    expect(codeOf(s, { type: 'addPhb', phb: 1, platform: 'pseries', generation: 'PHB4' })).toBe('EINVAL');
    expect(codeOf(s, { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB3', numPes: 512 })).toBe('EINVAL');
    expect(codeOf(s, { type: 'addPhb', phb: 0x10000, platform: 'powernv', generation: 'PHB4' })).toBe('EINVAL');
  });
});

describe('PEs and groups on PowerNV', () => {
  it('gives the root bus the PE below the reserved one and allocates other buses downwards', () => {
    const s = powernvHost();
    expect(s.devices['0000:00:00.0']!.pe).toBe('domain0-pefe');
    expect(s.devices['0000:01:00.0']!.pe).toBe('domain0-pefd');
    const t = apply(s, { type: 'addDevice', bdf: '0000:02:00.0', ...NVME });
    expect(t.devices['0000:02:00.0']!.pe).toBe('domain0-pefc');
  });
  it('puts all functions of a multifunction device in one PE and one group', () => {
    const s = powernvHost();
    const f0 = s.devices['0001:01:00.0']!;
    const f1 = s.devices['0001:01:00.1']!;
    expect(f0.pe).toBe(f1.pe);
    expect(f0.group).toBe(f1.group);
    expect(s.groups[f0.group!]!.devices).toEqual(['0001:01:00.0', '0001:01:00.1']);
  });
  it('gives bridges no group, and creates a group only for the first endpoint of a PE', () => {
    const s = powernvHost();
    expect(s.devices['0000:00:00.0']!.group).toBeNull();
    expect(s.pes['domain0-pefe']!.group).toBeNull();
    expect(Object.keys(s.groups)).toEqual(['0', '1']);
    expect(codeOf(s, { type: 'claimDevice', context: 'vm1', bdf: '0000:00:00.0' })).toBe('ENODEV');
  });
  it('programs the kernel default configuration (window 0 + bypass) when the group is created', () => {
    const pe = powernvHost().pes['domain0-pefd']!;
    expect(pe.windows[0]).toMatchObject({ start: 0n, pageShift: 16, table: { kind: 'kernel' } });
    expect(pe.bypass).toBe(true);
  });
  it('numbers groups globally in probe order', () => {
    const s = powernvHost();
    expect(s.devices['0000:01:00.0']!.group).toBe(0);
    expect(s.devices['0001:01:00.0']!.group).toBe(1);
  });
  it('refuses a device on a missing PHB, a duplicate device and out-of-range ids', () => {
    const s = powernvHost();
    expect(codeOf(s, { type: 'addDevice', bdf: '0005:01:00.0', ...NVME })).toBe('ENODEV');
    expect(codeOf(s, { type: 'addDevice', bdf: '0000:01:00.0', ...NVME })).toBe('EEXIST');
    expect(codeOf(s, { type: 'addDevice', bdf: '0000:03:00.0', ...NVME, vendor: 0x10000 })).toBe('EINVAL');
    expect(codeOf(s, { type: 'addDevice', bdf: '0000:03:00', ...NVME })).toBe('EINVAL');
  });
});

describe('pSeries', () => {
  it('has one group per PHB, whatever the bus', () => {
    const s = apply(pseriesHost(), { type: 'addDevice', bdf: '0000:01:00.0', ...NIC });
    const groups = new Set(Object.values(s.devices).map((d) => d.group));
    expect(groups).toEqual(new Set([0]));
    expect(Object.keys(s.pes)).toEqual(['domain0-pe0']);
    expect(s.pes['domain0-pe0']!.tableGroup.tce32Size).toBe(0x4000_0000n);
  });
});

describe('DMA ownership', () => {
  it('claiming while a kernel driver is bound is EPERM, also via another function of the group', () => {
    const s = powernvHost();
    expect(codeOf(s, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' })).toBe('EPERM');
    const one = apply(s, { type: 'unbindDriver', bdf: '0001:01:00.0' });
    expect(codeOf(one, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' })).toBe('EPERM');
    const both = apply(one, { type: 'unbindDriver', bdf: '0001:01:00.1' });
    expect(codeOf(both, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' })).toBe('ok');
  });
  it('a claimed group moves to the blocking domain and its PE loses every window', () => {
    const s = apply(powernvHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
    expect(s.groups[0]).toMatchObject({ owner: 'vm1', domain: { type: 'blocked' } });
    expect(s.pes['domain0-pefd']!.windows).toEqual([null, null]);
    expect(s.pes['domain0-pefd']!.bypass).toBe(false);
  });
  it('a second context cannot claim an owned group (EPERM); the owner can claim its other functions', () => {
    let s = apply(powernvHost(), { type: 'unbindDriver', bdf: '0001:01:00.0' }, { type: 'unbindDriver', bdf: '0001:01:00.1' });
    s = apply(s, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' });
    expect(codeOf(s, { type: 'claimDevice', context: 'vm2', bdf: '0001:01:00.1' })).toBe('EPERM');
    expect(codeOf(s, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' })).toBe('EBUSY');
    expect(codeOf(s, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.1' })).toBe('ok');
  });
  it('a kernel driver probe into an owned group is EBUSY', () => {
    const s = apply(powernvHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
    expect(codeOf(s, { type: 'bindDriver', bdf: '0000:01:00.0', driver: 'nvme' })).toBe('EBUSY');
    expect(codeOf(s, { type: 'addDevice', bdf: '0000:01:00.1', ...NVME, driver: 'nvme' })).toBe('EBUSY');
  });
  it('releasing returns the group to the platform domain with the default windows', () => {
    const before = powernvHost();
    const s = apply(before, { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' }, { type: 'releaseDevice', context: 'vm1', bdf: '0000:01:00.0' });
    expect(s.groups[0]).toMatchObject({ owner: null, claimed: [], domain: { type: 'platform' } });
    expect(s.pes['domain0-pefd']!.windows).toEqual(before.pes['domain0-pefd']!.windows);
    expect(s.pes['domain0-pefd']!.bypass).toBe(true);
  });
  it('release by a stranger is EPERM, of an unclaimed device EINVAL, of an attached device EBUSY', () => {
    const s = apply(powernvHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
    expect(codeOf(s, { type: 'releaseDevice', context: 'vm2', bdf: '0000:01:00.0' })).toBe('EPERM');
    expect(codeOf(powernvHost(), { type: 'releaseDevice', context: 'vm1', bdf: '0000:01:00.0' })).toBe('EINVAL');
    const a = apply(s, { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' }, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' });
    expect(codeOf(a, { type: 'releaseDevice', context: 'vm1', bdf: '0000:01:00.0' })).toBe('EBUSY');
  });
});

describe('paging domains', () => {
  const claimed = () => apply(powernvHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
  it('refuses page sizes the PHB lacks or that exceed the host PAGE_SIZE', () => {
    expect(codeOf(claimed(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 24 })).toBe('EINVAL');
    expect(codeOf(claimed(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 21 })).toBe('EINVAL');
    expect(codeOf(claimed(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 16 })).toBe('ok');
  });
  it('needs the device claimed by the context', () => {
    expect(codeOf(powernvHost(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' })).toBe('EPERM');
    expect(codeOf(claimed(), { type: 'allocPagingDomain', context: 'vm2', bdf: '0000:01:00.0' })).toBe('EPERM');
  });
  it('is invisible to other contexts, and cannot be freed while attached', () => {
    const s = apply(claimed(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' }, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' });
    expect(codeOf(s, { type: 'freeDomain', context: 'vm2', domain: 1 })).toBe('ENOENT');
    expect(codeOf(s, { type: 'freeDomain', context: 'vm1', domain: 1 })).toBe('EBUSY');
    expect(codeOf(s, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' })).toBe('EBUSY');
    const d = apply(s, { type: 'detachDevice', context: 'vm1', bdf: '0000:01:00.0' }, { type: 'freeDomain', context: 'vm1', domain: 1 });
    expect(d.domains).toEqual({});
    expect(invariants(d)).toEqual([]);
  });
  it('every device of a group shares one domain', () => {
    let s = apply(powernvHost(), { type: 'unbindDriver', bdf: '0001:01:00.0' }, { type: 'unbindDriver', bdf: '0001:01:00.1' });
    s = apply(
      s,
      { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' },
      { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.1' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0001:01:00.0' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0001:01:00.1' },
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0001:01:00.0' },
    );
    expect(codeOf(s, { type: 'attachDevice', context: 'vm1', domain: 2, bdf: '0001:01:00.1' })).toBe('EINVAL');
    const both = apply(s, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0001:01:00.1' });
    expect(both.groups[1]!.attached).toEqual(['0001:01:00.0', '0001:01:00.1']);
    // Detaching one function keeps the window; the last one unsets it.
    const one = apply(both, { type: 'detachDevice', context: 'vm1', bdf: '0001:01:00.0' });
    expect(one.pes['domain1-pefd']!.windows[0]?.table).toEqual({ kind: 'domain', domain: 1 });
    const none = apply(one, { type: 'detachDevice', context: 'vm1', bdf: '0001:01:00.1' });
    expect(none.pes['domain1-pefd']!.windows[0]).toBeNull();
  });
});

describe('hot removal', () => {
  const owned = () =>
    apply(
      powernvHost(),
      { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' },
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' },
      { type: 'mapPages', context: 'vm1', domain: 1, iova: 0n, paddr: 0x1000_0000n, pgsize: 4096n, pgcount: 4, prot: { read: true, write: true } },
    );
  it('an orderly removal of a claimed device waits for the owner (EBUSY)', () => {
    expect(codeOf(owned(), { type: 'removeDevice', bdf: '0000:01:00.0' })).toBe('EBUSY');
  });
  it('a surprise removal detaches, releases, frees the domain, the group and the PE', () => {
    const s = apply(owned(), { type: 'removeDevice', bdf: '0000:01:00.0', surprise: true });
    expect(s.devices['0000:01:00.0']).toBeUndefined();
    expect(s.groups[0]).toBeUndefined();
    expect(s.domains[1]).toBeUndefined();
    expect(s.pes['domain0-pefd']).toBeUndefined();
    expect(invariants(s)).toEqual([]);
  });
  it('removing one function keeps the shared group; the PE number is reused after the last leaves', () => {
    let s = apply(powernvHost(), { type: 'removeDevice', bdf: '0001:01:00.1' });
    expect(s.groups[1]!.devices).toEqual(['0001:01:00.0']);
    s = apply(s, { type: 'removeDevice', bdf: '0001:01:00.0' });
    expect(s.groups[1]).toBeUndefined();
    expect(s.pes['domain1-pefd']).toBeUndefined();
    s = apply(s, { type: 'addDevice', bdf: '0001:01:00.0', ...NIC });
    expect(s.devices['0001:01:00.0']).toMatchObject({ pe: 'domain1-pefd', group: 2 });
    expect(invariants(s)).toEqual([]);
  });
  it('refuses a missing device', () => {
    expect(codeOf(powernvHost(), { type: 'removeDevice', bdf: '0000:09:00.0' })).toBe('ENODEV');
    expect(codeOf(apply(initialState, { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' }), { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT })).toBe('ok');
  });
});
