import { fail } from './errors.js';
import { tceLeafBases, type TceTable } from './tce-table.js';
import { isPowerOfTwo, log2, toHex } from './u64.js';

/**
 * How the PowerNV kernel lays out a TCE table of a given window (pci-ioda-tce.c,
 * pnv_pci_ioda2_table_alloc_pages and pnv_pci_ioda2_get_table_size), on a host with 64 KiB pages.
 *
 * A table of 2^entriesShift TCEs is split into `levels` levels of equal width; each level chunk holds
 * 2^(levelShift-3) TCEs or pointers and is at least one host page. Only the top chunk is allocated
 * when the table is created; lower chunks appear when an entry under them is first written and stay
 * until the table is freed. The model's own radix tree (tce-table.ts) is finer (512-entry leaves),
 * so the kernel's chunks are derived from which leaves exist.
 */

/** The host kernel's PAGE_SHIFT: ppc64 kernels run with 64 KiB pages. */
export const HOST_PAGE_SHIFT = 16;
/** POWERNV_IOMMU_MAX_LEVELS. */
export const MAX_TABLE_LEVELS = 5;
/** Largest single allocation: MAX_PAGE_ORDER 8 with 64 KiB pages is 16 MiB. */
const MAX_CHUNK_SHIFT = 24;
/** Bus-address bits from 55 up are reserved in the hardware's table walk. */
const BUS_ADDRESS_BITS = 55;

export interface TableGeometry {
  readonly pageShift: number;
  readonly levels: number;
  /** log2 of the number of TCEs in the window. */
  readonly entriesShift: number;
  /** log2 of the bytes of one level chunk; with one level, of the whole table. */
  readonly levelShift: number;
}

/**
 * pnv_pci_ioda2_table_alloc_pages' checks: levels 1-5 and a power-of-two window (EINVAL); a table
 * that would reach bus-address bit 55 (EINVAL); a top-level chunk larger than the page allocator's
 * largest block (ENOMEM: so one level holds at most 2 Mi TCEs, an 8 GiB window of 4 KiB pages).
 */
export function pnvTableGeometry(pageShift: number, windowSize: bigint, levels: number): TableGeometry {
  if (!Number.isInteger(levels) || levels < 1 || levels > MAX_TABLE_LEVELS) {
    fail('EINVAL', `a TCE table has 1 to ${MAX_TABLE_LEVELS} levels, not ${levels}`);
  }
  if (!isPowerOfTwo(windowSize)) fail('EINVAL', `window size ${toHex(windowSize)} is not a power of two`);
  const entriesShift = log2(windowSize) - pageShift;
  if (entriesShift < 0) fail('EINVAL', `window size ${toHex(windowSize)} is smaller than one 2^${pageShift} IOMMU page`);
  const levelShift = Math.max(Math.ceil(entriesShift / levels) + 3, HOST_PAGE_SHIFT);
  if ((levelShift - 3) * levels + pageShift >= BUS_ADDRESS_BITS) {
    fail('EINVAL', `${levels} level(s) of 2^${levelShift - 3} entries with 2^${pageShift} pages reach bus-address bit ${BUS_ADDRESS_BITS}`);
  }
  if (levelShift > MAX_CHUNK_SHIFT) {
    fail('ENOMEM', `a level of 2^${levelShift} bytes is larger than the largest allocation (16 MiB): use more levels`);
  }
  return { pageShift, levels, entriesShift, levelShift };
}

/**
 * pnv_pci_ioda2_get_table_size: the worst case, every level fully allocated, twice (the hardware
 * table and VFIO's userspace copy). What VFIO charges to locked memory when it creates the window.
 */
export function pnvTableSizeBound(g: TableGeometry): bigint {
  const direct = 1n << BigInt(g.levelShift);
  let levelBytes = 1n << BigInt(Math.max(g.entriesShift + 3, 12));
  let bytes = 0n;
  for (let l = g.levels; l > 0; l--) {
    bytes += ((levelBytes + direct - 1n) / direct) * direct;
    levelBytes = (levelBytes / direct) << 3n;
    if (levelBytes < direct) levelBytes = direct;
  }
  return bytes * 2n;
}

/**
 * Bytes the kernel has allocated for this table now: the top chunk, plus every lower chunk above
 * an entry that was ever written (pnv_tce allocates them on first write and never frees them).
 */
export function pnvTableBytes(g: TableGeometry, table: TceTable): number {
  const chunk = 2 ** g.levelShift;
  if (g.levels === 1) return chunk;
  const bits = g.levelShift - 3;
  const leaves = tceLeafBases(table);
  let lower = 0;
  for (let level = 1; level < g.levels; level++) {
    const span = 2 ** (bits * level);
    lower += new Set(leaves.map((base) => Math.floor(base / span))).size;
  }
  return chunk * (1 + lower);
}
