import { initialState, invariants, type State } from '@iommu-orch/core';
import { describe, expect, it } from 'vitest';
import { pseriesHost } from './rfc-helpers.js';
import { apply, codeOf, CX5_PF, eventTypes, rw, sriovHost } from '../support/fixtures.js';

const PF = '0002:01:00.0';
const VFS = ['0002:01:00.2', '0002:01:00.3', '0002:01:00.4', '0002:01:00.5'];

function enabled(n = 4, vfDriver?: string | null): State {
  return apply(sriovHost(), { type: 'setNumVfs', bdf: PF, numVfs: n, ...(vfDriver === undefined ? {} : { vfDriver }) });
}

/** Two VFs of one PF, each claimed by another context, attached and mapped. */
function twoTenants(): State {
  return apply(
    enabled(4, null),
    { type: 'claimDevice', context: 'vm1', bdf: VFS[0]! },
    { type: 'claimDevice', context: 'vm2', bdf: VFS[1]! },
    { type: 'allocPagingDomain', context: 'vm1', bdf: VFS[0]! },
    { type: 'allocPagingDomain', context: 'vm2', bdf: VFS[1]! },
    { type: 'attachDevice', context: 'vm1', domain: 1, bdf: VFS[0]! },
    { type: 'attachDevice', context: 'vm2', domain: 2, bdf: VFS[1]! },
    { type: 'mapPages', context: 'vm1', domain: 1, iova: 0n, paddr: 0x1000_0000n, pgsize: 0x1000n, pgcount: 8, prot: rw },
    { type: 'mapPages', context: 'vm2', domain: 2, iova: 0x10_0000n, paddr: 0x2000_0000n, pgsize: 0x1000n, pgcount: 3, prot: rw },
  );
}

describe('SR-IOV enable (sriov_numvfs)', () => {
  it('adds VFs at PF + offset + n * stride, each in its own PE from one contiguous run, with its own table and group', () => {
    const s = enabled();
    expect(s.devices[PF]!.sriov!.vfs).toEqual(VFS);
    const pes = VFS.map((vf) => s.pes[s.devices[vf]!.pe]!);
    // PHB4 with 256 PEs: root 0xfe, the PF's bus 0xfd, then four VFs from the top down as one run.
    expect(pes.map((p) => p.number)).toEqual([0xf9, 0xfa, 0xfb, 0xfc]);
    expect(pes.map((p) => p.vf)).toEqual(VFS);
    const groups = VFS.map((vf) => s.devices[vf]!.group);
    expect(new Set(groups).size).toBe(4);
    for (const [i, vf] of VFS.entries()) {
      expect(s.devices[vf]).toMatchObject({ vendor: 0x15b3, device: 0x1018, pf: PF, driver: 'mlx5_core' });
      expect(s.groups[groups[i]!]!.devices).toEqual([vf]);
      expect(pes[i]!.windows[0]).toMatchObject({ table: { kind: 'kernel' } });
      expect(pes[i]!.bypass).toBe(true);
    }
    expect(s.groups[s.devices[PF]!.group!]!.devices).toEqual([PF]);
    expect(invariants(s)).toEqual([]);
  });
  it('binds the PF driver to VFs unless told otherwise (vfDriver null: autoprobe off)', () => {
    expect(enabled(2, null).devices[VFS[0]!]!.driver).toBeNull();
    expect(enabled(2, 'mlx5_core_vf').devices[VFS[1]!]!.driver).toBe('mlx5_core_vf');
  });
  it('refuses more than TotalVFs with ERANGE and a changed non-zero count with EBUSY; the same count is a no-op', () => {
    expect(codeOf(sriovHost(), { type: 'setNumVfs', bdf: PF, numVfs: 9 })).toBe('ERANGE');
    expect(codeOf(enabled(), { type: 'setNumVfs', bdf: PF, numVfs: 2 })).toBe('EBUSY');
    expect(codeOf(enabled(), { type: 'setNumVfs', bdf: PF, numVfs: 9 })).toBe('ERANGE');
    expect(eventTypes(enabled(), { type: 'setNumVfs', bdf: PF, numVfs: 4 })).toEqual([]);
  });
  it('needs a PF driver and an SR-IOV capability (ENOENT), a PowerNV PHB (ENXIO) and a device (ENODEV)', () => {
    const noDriver = apply(sriovHost(), { type: 'unbindDriver', bdf: PF });
    expect(codeOf(noDriver, { type: 'setNumVfs', bdf: PF, numVfs: 1 })).toBe('ENOENT');
    expect(codeOf(sriovHost(), { type: 'setNumVfs', bdf: '0000:01:00.0', numVfs: 1 })).toBe('ENOENT');
    expect(codeOf(sriovHost(), { type: 'setNumVfs', bdf: '0002:07:00.0', numVfs: 1 })).toBe('ENODEV');
    const guest = apply(pseriesHost(), { type: 'addDevice', bdf: '0000:00:03.0', ...CX5_PF, driver: 'mlx5_core' });
    expect(codeOf(guest, { type: 'setNumVfs', bdf: '0000:00:03.0', numVfs: 1 })).toBe('ENXIO');
  });
  it('refuses a capability whose VF routing IDs would run past bus ff, or on a bridge', () => {
    const host = apply(initialState, { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' });
    expect(codeOf(host, { type: 'addDevice', bdf: '0000:ff:1f.0', ...CX5_PF })).toBe('EINVAL');
    expect(codeOf(host, { type: 'addDevice', bdf: '0000:01:00.0', ...CX5_PF, classCode: 0x060400 })).toBe('EINVAL');
    expect(codeOf(host, { type: 'addDevice', bdf: '0000:01:00.0', vendor: 1, device: 2, classCode: 0x020000, vfStride: 2 })).toBe('EINVAL');
  });
  it('is EBUSY when no run of free PE numbers is long enough', () => {
    const host = apply(
      initialState,
      { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB3' },
      { type: 'addDevice', bdf: '0000:01:00.0', ...CX5_PF, totalVfs: 300, vfOffset: 1, driver: 'mlx5_core' },
    );
    // 256 PEs: 255 reserved, 254 root, 253 the PF's bus: 253 free numbers, 0..252.
    expect(codeOf(host, { type: 'setNumVfs', bdf: '0000:01:00.0', numVfs: 254 })).toBe('EBUSY');
    const full = apply(host, { type: 'setNumVfs', bdf: '0000:01:00.0', numVfs: 253 });
    const vf0 = full.devices['0000:01:00.0']!.sriov!.vfs[0]!;
    expect(full.pes[full.devices[vf0]!.pe]!.number).toBe(0);
    expect(invariants(full)).toEqual([]);
  });
  it('refuses to unbind the PF driver while VFs exist, and to remove a VF on its own', () => {
    expect(codeOf(enabled(), { type: 'unbindDriver', bdf: PF })).toBe('EBUSY');
    expect(codeOf(enabled(), { type: 'removeDevice', bdf: VFS[0]! })).toBe('EINVAL');
    expect(codeOf(enabled(), { type: 'removeDevice', bdf: VFS[0]!, surprise: true })).toBe('EINVAL');
  });
});

describe('VFs of one PF in different contexts', () => {
  it('each VF is its own group: two contexts hold two VFs at once, each with its own domain', () => {
    const s = twoTenants();
    expect(s.groups[s.devices[VFS[0]!]!.group!]).toMatchObject({ owner: 'vm1', domain: { type: 'paging', id: 1 } });
    expect(s.groups[s.devices[VFS[1]!]!.group!]).toMatchObject({ owner: 'vm2', domain: { type: 'paging', id: 2 } });
    expect(s.pinned).toEqual({ vm1: 8n * 0x1000n, vm2: 3n * 0x1000n });
    expect(codeOf(s, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: VFS[1]! })).toBe('EPERM');
    expect(invariants(s)).toEqual([]);
  });
});

describe('SR-IOV disable while VFs are held', () => {
  it('is EBUSY and changes nothing while any VF is claimed: the kernel waits for the owners', () => {
    expect(codeOf(twoTenants(), { type: 'setNumVfs', bdf: PF, numVfs: 0 })).toBe('EBUSY');
  });
  it('release requests block new claims; once every owner let go, 0 removes every VF and nothing leaks', () => {
    let s = twoTenants();
    s = apply(s, ...VFS.map((bdf) => ({ type: 'requestRemoval' as const, bdf })));
    expect(VFS.map((vf) => s.devices[vf]!.removalRequested)).toEqual([true, true, true, true]);
    expect(codeOf(s, { type: 'claimDevice', context: 'vm3', bdf: VFS[2]! })).toBe('ENODEV');
    // The owner may still use what it holds while the removal waits.
    s = apply(s, { type: 'mapPages', context: 'vm1', domain: 1, iova: 0x8000n, paddr: 0x3000_0000n, pgsize: 0x1000n, pgcount: 1, prot: rw });
    s = apply(s, { type: 'detachDevice', context: 'vm1', bdf: VFS[0]! }, { type: 'releaseDevice', context: 'vm1', bdf: VFS[0]! });
    expect(codeOf(s, { type: 'claimDevice', context: 'vm1', bdf: VFS[0]! })).toBe('ENODEV');
    expect(codeOf(s, { type: 'setNumVfs', bdf: PF, numVfs: 0 })).toBe('EBUSY');
    s = apply(s, { type: 'detachDevice', context: 'vm2', bdf: VFS[1]! }, { type: 'releaseDevice', context: 'vm2', bdf: VFS[1]! });
    const types = eventTypes(s, { type: 'setNumVfs', bdf: PF, numVfs: 0 }) as string[];
    expect(types.filter((t) => t === 'DeviceRemoved')).toHaveLength(4);
    expect(types.filter((t) => t === 'PeReleased')).toHaveLength(4);
    expect(types).toContain('TcesCleared');
    s = apply(s, { type: 'setNumVfs', bdf: PF, numVfs: 0 });
    expect(Object.keys(s.devices).filter((d) => d.startsWith('0002:01:00.'))).toEqual([PF]);
    expect(Object.values(s.pes).filter((p) => p.vf !== null)).toEqual([]);
    expect(s.domains).toEqual({});
    expect(s.pinned).toEqual({});
    expect(invariants(s)).toEqual([]);
    // Enabling again after 0 is allowed and reuses the same PE numbers.
    const again = apply(s, { type: 'setNumVfs', bdf: PF, numVfs: 2 });
    expect(again.devices[VFS[0]!]!.pe).toBe('domain2-pefb');
  });
  it('a surprise removal of the PF takes its VFs with it, by force, and unpins everything', () => {
    const s = apply(twoTenants(), { type: 'removeDevice', bdf: PF, surprise: true });
    expect(Object.keys(s.devices).some((d) => d.startsWith('0002:01:'))).toBe(false);
    expect(s.pinned).toEqual({});
    expect(s.domains).toEqual({});
    expect(invariants(s)).toEqual([]);
    expect(codeOf(twoTenants(), { type: 'removeDevice', bdf: PF })).toBe('EBUSY');
  });
});
