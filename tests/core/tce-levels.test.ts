import {
  pnvTableBytes, pnvTableGeometry, pnvTableSizeBound, tceClearRange, tceFirstValid, tceLeafBases, tceTableCreate, tceValidRun, tceWriteRange,
} from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const GiB = 1n << 30n;
const TiB = 1n << 40n;

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return (e as { code: string }).code;
  }
}

describe('PowerNV TCE table geometry (pnv_pci_ioda2_table_alloc_pages, 64 KiB host pages)', () => {
  it('gives the worst-case sizes of pnv_pci_ioda2_get_table_size (ppc-platform.md 1.3)', () => {
    expect(pnvTableSizeBound(pnvTableGeometry(12, 2n * GiB, 1))).toBe(8n << 20n);
    expect(pnvTableSizeBound(pnvTableGeometry(16, TiB, 2))).toBe(2n * ((128n << 20n) + (64n << 10n)));
  });

  it('refuses levels outside 1-5, sizes that are not powers of two or below a page (EINVAL)', () => {
    expect(codeOf(() => pnvTableGeometry(12, GiB, 0))).toBe('EINVAL');
    expect(codeOf(() => pnvTableGeometry(12, GiB, 6))).toBe('EINVAL');
    expect(codeOf(() => pnvTableGeometry(12, 3n * GiB, 1))).toBe('EINVAL');
    expect(codeOf(() => pnvTableGeometry(16, 0x8000n, 1))).toBe('EINVAL');
  });

  it('refuses tables reaching bus-address bit 55 (EINVAL) and single chunks above 16 MiB (ENOMEM)', () => {
    expect(codeOf(() => pnvTableGeometry(16, TiB, 3))).toBe('EINVAL');
    expect(codeOf(() => pnvTableGeometry(12, GiB, 4))).toBe('EINVAL');
    expect(codeOf(() => pnvTableGeometry(12, 8n * GiB, 1))).toBe('ok');
    expect(codeOf(() => pnvTableGeometry(12, 16n * GiB, 1))).toBe('ENOMEM');
    expect(codeOf(() => pnvTableGeometry(12, 16n * GiB, 2))).toBe('ok');
  });

  it('accounts one level as the whole table, and several levels as the top plus the chunks written', () => {
    const one = pnvTableGeometry(12, 2n * GiB, 1);
    expect(pnvTableBytes(one, tceTableCreate(12, 1 << 19))).toBe(4 << 20);
    const two = pnvTableGeometry(16, TiB, 2); // 2^12 entries per 64 KiB chunk
    let t = tceTableCreate(16, 1 << 24);
    expect(pnvTableBytes(two, t)).toBe(64 << 10);
    t = tceWriteRange(t, 0, 16384, (i) => (BigInt(i) << 16n) | 3n); // 1 GiB: two leaf chunks of 8192
    expect(pnvTableBytes(two, t)).toBe(3 * (64 << 10));
    t = tceClearRange(t, 0, 16384);
    expect(pnvTableBytes(two, t)).toBe(3 * (64 << 10)); // levels stay until the table is freed
  });

  it('never accounts more than the hardware half of the worst case', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20, max: 30 }),
        fc.constantFrom(12, 16),
        fc.constantFrom(1, 2, 3),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 5000 })), { maxLength: 8 }),
        (windowShift, pageShift, levels, writes) => {
          let g;
          try {
            g = pnvTableGeometry(pageShift, 1n << BigInt(windowShift + pageShift - 12), levels);
          } catch {
            return;
          }
          const size = 2 ** g.entriesShift;
          let t = tceTableCreate(pageShift, size);
          for (const [at, n] of writes) t = tceWriteRange(t, at % size, Math.min(n, size - (at % size)), () => 3n);
          expect(BigInt(pnvTableBytes(g, t)) <= pnvTableSizeBound(g) / 2n).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('sparse TCE table scans', () => {
  it('tceFirstValid and tceValidRun agree with a plain scan and skip unwritten levels', () => {
    const size = 1 << 22;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 1, max: 3000 }), fc.boolean()), { maxLength: 10 }),
        fc.integer({ min: 0, max: size - 1 }),
        fc.integer({ min: 1, max: 6000 }),
        (ops, from, count) => {
          let t = tceTableCreate(12, size);
          const model = new Set<number>();
          for (const [at, n, write] of ops) {
            const k = Math.min(n, size - at);
            t = write ? tceWriteRange(t, at, k, () => 0x1003n) : tceClearRange(t, at, k);
            for (let i = at; i < at + k; i++) if (write) model.add(i); else model.delete(i);
          }
          const end = Math.min(size, from + count);
          let first = -1;
          for (let i = from; i < end; i++) if (model.has(i)) { first = i; break; }
          let run = 0;
          while (from + run < end && model.has(from + run)) run++;
          expect(tceFirstValid(t, from, count)).toBe(first);
          expect(tceValidRun(t, from, count)).toBe(run);
          expect(tceLeafBases(t).every((b) => b % 512 === 0)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
