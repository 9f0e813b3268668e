import { decide, iovaToPhysOf, tceGet, TCE_PCI_READ, TCE_PCI_WRITE, type State } from './rfc-helpers.js';
import { describe, expect, it } from 'vitest';
import { apply, attachedHost, codeOf, map, powernvHost, ro, rw, unmap, wo } from '../support/fixtures.js';

/**
 * One test per bug of the January 2026 RFC (iommufd-and-rfc.md section 4). Each assertion states the
 * kernel's contract; the RFC's behaviour would fail it as noted.
 */
function phys(state: State, iova: bigint): bigint {
  return iovaToPhysOf(state, 'vm1', 1, iova);
}

describe('RFC bug 1: map_pages reports pgsize x pgcount and propagates failure', () => {
  it('reports the bytes of every page mapped (the RFC reported one page)', () => {
    const d = decide(attachedHost(), map(0x10000n, 16));
    expect(d.ok && d.output['mapped']).toBe(16 * 4096);
  });

  it('a failing map maps nothing (the RFC returned 0 with the TCEs it had written left in place)', () => {
    const s = apply(attachedHost(), map(0x18000n, 1, 0x5000_0000n));
    // Pages 0x10000..0x1ffff: the ninth collides with the existing mapping at 0x18000.
    const d = decide(s, map(0x10000n, 16));
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.error.code).toBe('EEXIST');
    expect(phys(s, 0x10000n)).toBe(0n);
    expect(s.domains[1]!.windows[0]!.table.valid).toBe(1);
  });
});

describe('RFC bug 2: permissions are not inverted', () => {
  const entry = (s: State, iova: bigint) => tceGet(s.domains[1]!.windows[0]!.table, Number(iova >> 12n)) & 3n;
  it('a read-only mapping (device reads memory) gets TCE_PCI_READ alone', () => {
    expect(entry(apply(attachedHost(), map(0x1000n, 1, 0x2000_0000n, ro)), 0x1000n)).toBe(TCE_PCI_READ);
  });
  it('a write-only mapping is widened to READ|WRITE as PowerNV does (the RFC gave READ alone)', () => {
    expect(entry(apply(attachedHost(), map(0x1000n, 1, 0x2000_0000n, wo)), 0x1000n)).toBe(TCE_PCI_READ | TCE_PCI_WRITE);
  });
  it('read|write gives READ|WRITE', () => {
    expect(entry(apply(attachedHost(), map(0x1000n, 1, 0x2000_0000n, rw)), 0x1000n)).toBe(TCE_PCI_READ | TCE_PCI_WRITE);
  });
});

describe('RFC bug 3: unmap_pages returns bytes, never a negative errno', () => {
  it('returns the bytes it cleared', () => {
    const d = decide(apply(attachedHost(), map(0x1000n, 8)), unmap(0x1000n, 8));
    expect(d.ok && d.output['unmapped']).toBe(8 * 4096);
  });
  it('a page size outside pgsize_bitmap is a refused command, not a huge byte count', () => {
    expect(codeOf(apply(attachedHost(), map(0x1000n, 8)), unmap(0x1000n, 1, 0x10000n))).toBe('EINVAL');
  });
  it('stops at the first unmapped page and reports only what it cleared', () => {
    const s = apply(attachedHost(), map(0x1000n, 2));
    const d = decide(s, unmap(0x1000n, 4));
    expect(d.ok && d.output['unmapped']).toBe(2 * 4096);
  });
});

describe('RFC bug 4: the aperture end is inclusive', () => {
  it('a 2 GiB PowerNV tce32 window at 0 ends at 0x7fffffff', () => {
    const d = decide(powernvHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
    const a = decide(d.ok ? d.state : powernvHost(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' });
    expect(a.ok && a.output['apertureEnd']).toBe('0x7fffffff');
  });
  it('the last page of the window maps; one byte past it does not', () => {
    expect(codeOf(attachedHost(), map(0x7fff_f000n, 1))).toBe('ok');
    expect(codeOf(attachedHost(), map(0x8000_0000n, 1))).toBe('EINVAL');
  });
  it('a 1 GiB pSeries window at 0 ends at 0x3fffffff', async () => {
    const { pseriesHost } = await import('./rfc-helpers.js');
    const s = apply(pseriesHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:00:01.0' });
    const a = decide(s, { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:00:01.0' });
    expect(a.ok && a.output['apertureEnd']).toBe('0x3fffffff');
  });
});

describe('RFC bug 5: TCE indexes are bounds-checked', () => {
  it('unmap beyond the window is refused (the RFC cleared out-of-table entries)', () => {
    expect(codeOf(attachedHost(), unmap(0x8000_0000n, 1))).toBe('EINVAL');
    expect(codeOf(attachedHost(), unmap(0x7fff_f000n, 2))).toBe('EINVAL');
  });
  it('iova_to_phys outside the window returns 0 instead of reading past the table', () => {
    expect(phys(attachedHost(), 0x1_0000_0000n)).toBe(0n);
  });
});

describe('RFC bug 6: iova_to_phys', () => {
  it('returns 0 for an empty TCE', () => {
    expect(phys(attachedHost(), 0x5000n)).toBe(0n);
  });
  it('keeps the offset within the IOMMU page (the RFC dropped it)', () => {
    const s = apply(attachedHost(), map(0x3000n, 1, 0x4000_0000n));
    expect(phys(s, 0x3abcn)).toBe(0x4000_0abcn);
  });
  it('keeps the offset within a 64 KiB IOMMU page', () => {
    const s = apply(attachedHost(16), map(0x10000n, 1, 0x4000_0000n, rw, 0x10000n));
    expect(phys(s, 0x1fffen)).toBe(0x4000_fffen);
  });
});

describe('RFC bug 7: the window is programmed at attach, not at allocation', () => {
  it('allocating a paging domain leaves the PE windows alone', () => {
    const claimed = apply(powernvHost(), { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' });
    const allocated = apply(claimed, { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' });
    const pe = allocated.devices['0000:01:00.0']!.pe;
    expect(allocated.pes[pe]!.windows).toEqual([null, null]);
  });
  it('attach programs slot 0 with the domain table, and the last detach unsets it', () => {
    const s = attachedHost();
    const pe = s.devices['0000:01:00.0']!.pe;
    expect(s.pes[pe]!.windows[0]?.table).toEqual({ kind: 'domain', domain: 1 });
    const detached = apply(s, { type: 'detachDevice', context: 'vm1', bdf: '0000:01:00.0' });
    expect(detached.pes[pe]!.windows[0]).toBeNull();
    expect(detached.groups[0]!.domain).toEqual({ type: 'blocked' });
  });
  it('a second domain allocated while the first is attached does not take over the window', () => {
    const s = apply(attachedHost(), { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0' });
    const pe = s.devices['0000:01:00.0']!.pe;
    expect(s.pes[pe]!.windows[0]?.table).toEqual({ kind: 'domain', domain: 1 });
  });
});

describe('RFC bug 8: attach checks the device belongs to the group the domain serves', () => {
  it('a device of another group is refused with EINVAL (the RFC accepted any device)', () => {
    let s = apply(attachedHost(), { type: 'unbindDriver', bdf: '0001:01:00.0' }, { type: 'unbindDriver', bdf: '0001:01:00.1' });
    s = apply(s, { type: 'claimDevice', context: 'vm1', bdf: '0001:01:00.0' });
    expect(codeOf(s, { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0001:01:00.0' })).toBe('EINVAL');
  });
});
