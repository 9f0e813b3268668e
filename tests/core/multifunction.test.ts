import { initialState, invariants, type State } from '@iommu-orch/core';
import { describe, expect, it } from 'vitest';
import { apply, codeOf, NIC, NVME, powernvHost, ROOT_PORT } from '../support/fixtures.js';

const F0 = '0001:01:00.0';
const F1 = '0001:01:00.1';

/** powernvHost with both NIC functions unbound (vfio-pci), and vm1 holding function 0 only. */
function halfClaimed(): State {
  return apply(
    powernvHost(),
    { type: 'unbindDriver', bdf: F0 },
    { type: 'unbindDriver', bdf: F1 },
    { type: 'claimDevice', context: 'vm1', bdf: F0 },
    { type: 'allocPagingDomain', context: 'vm1', bdf: F0 },
  );
}

describe('a group is assigned whole or not at all', () => {
  it('attach is EINVAL until every endpoint of the group is claimed by the attaching context', () => {
    expect(codeOf(halfClaimed(), { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F0 })).toBe('EINVAL');
    const whole = apply(halfClaimed(), { type: 'claimDevice', context: 'vm1', bdf: F1 });
    expect(codeOf(whole, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F0 })).toBe('ok');
  });
  it('two owners is impossible: another context cannot claim the other function (EPERM)', () => {
    expect(codeOf(halfClaimed(), { type: 'claimDevice', context: 'vm2', bdf: F1 })).toBe('EPERM');
  });
  it('bridges stay with the host: a bridge with its driver on the same bus does not stop the endpoints', () => {
    const s = apply(
      initialState,
      { type: 'addPhb', phb: 5, platform: 'powernv', generation: 'PHB4' },
      { type: 'addDevice', bdf: '0005:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
      { type: 'addDevice', bdf: '0005:01:00.0', vendor: 0x1a03, device: 0x1150, classCode: 0x060400, driver: 'pcieport' },
      { type: 'addDevice', bdf: '0005:01:00.1', ...NVME },
      { type: 'claimDevice', context: 'vm1', bdf: '0005:01:00.1' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0005:01:00.1' },
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0005:01:00.1' },
    );
    const pe = s.pes[s.devices['0005:01:00.1']!.pe]!;
    expect(pe.devices).toEqual(['0005:01:00.0', '0005:01:00.1']);
    expect(s.groups[pe.group!]!.devices).toEqual(['0005:01:00.1']);
    expect(s.devices['0005:01:00.0']!.driver).toBe('pcieport');
    expect(invariants(s)).toEqual([]);
  });
});

describe('same-group and different-group checks for multi-device operations', () => {
  /** vm1 holds two groups whole: the NVMe (group 0) and the two-function NIC (group 1), a domain for each. */
  function twoGroups(): State {
    return apply(
      halfClaimed(),
      { type: 'claimDevice', context: 'vm1', bdf: F1 },
      { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' },
    );
  }
  it('one domain serves one group: a device of another group is EINVAL, even for the same owner', () => {
    expect(codeOf(twoGroups(), { type: 'attachDevice', context: 'vm1', domain: 2, bdf: F0 })).toBe('EINVAL');
    expect(codeOf(twoGroups(), { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' })).toBe('EINVAL');
  });
  it('functions of one group share its domain: the second function may not pick another one', () => {
    const s = apply(twoGroups(), { type: 'allocPagingDomain', context: 'vm1', bdf: F1 }, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F0 });
    expect(codeOf(s, { type: 'attachDevice', context: 'vm1', domain: 3, bdf: F1 })).toBe('EINVAL');
    expect(codeOf(s, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F1 })).toBe('ok');
  });
  it('a group attached while partly released keeps one domain for those still attached', () => {
    const s = apply(
      twoGroups(),
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F0 },
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F1 },
      { type: 'detachDevice', context: 'vm1', bdf: F1 },
      { type: 'releaseDevice', context: 'vm1', bdf: F1 },
    );
    expect(s.groups[1]).toMatchObject({ owner: 'vm1', claimed: [F0], attached: [F0], domain: { type: 'paging', id: 1 } });
    expect(codeOf(s, { type: 'claimDevice', context: 'vm2', bdf: F1 })).toBe('EPERM');
    expect(invariants(s)).toEqual([]);
  });
  it('a hot-added function joins the owned group without a driver, and cannot bring one (EBUSY)', () => {
    const s = apply(twoGroups(), { type: 'allocPagingDomain', context: 'vm1', bdf: F1 });
    expect(codeOf(s, { type: 'addDevice', bdf: '0001:01:00.2', ...NIC, driver: 'tg3' })).toBe('EBUSY');
    const joined = apply(s, { type: 'addDevice', bdf: '0001:01:00.2', ...NIC });
    expect(joined.groups[1]!.devices).toEqual([F0, F1, '0001:01:00.2']);
    // The group is now not whole for vm1 until it claims the newcomer.
    expect(codeOf(joined, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: F0 })).toBe('EINVAL');
    expect(invariants(joined)).toEqual([]);
  });
});
