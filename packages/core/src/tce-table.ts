/**
 * A TCE table as a persistent, sparse radix tree.
 *
 * Invariants:
 * - `size` entries, relative indexes 0..size-1; entry i translates bus address
 *   (offset + i) << pageShift. Entry value 0 is an invalid TCE (no access).
 * - Interior levels and leaves exist only once an entry under them was written with a non-zero value,
 *   like the kernel's on-demand levels (pnv_tce with alloc=true), so memory follows what is mapped,
 *   not the window size. Clearing never allocates.
 * - Nodes are never mutated after they are reachable from a returned table: every write copies the
 *   path it touches (copy-on-write), so an older state stays valid. That is what keeps `evolve` pure.
 *   Within one transient scope (transient.ts) a node is copied once and then written in place.
 * - `valid` counts non-zero entries.
 *
 * Fan-out is 512 (one 4 KiB page of 8-byte TCEs), the level size of a 4K-page kernel.
 */
import { inBatch, isOwned, own } from './transient.js';

const FANOUT_SHIFT = 9;
const FANOUT = 1 << FANOUT_SHIFT;
const MASK = FANOUT - 1;
/** Entries under one node of each level (FANOUT^level), up to a 5-level table: a lookup, not a pow per visit. */
const SPAN = [1, FANOUT, FANOUT ** 2, FANOUT ** 3, FANOUT ** 4, FANOUT ** 5];

type Leaf = BigUint64Array;
type Dir = readonly (TceNode | undefined)[];
type TceNode = Leaf | Dir;

export interface TceTable {
  readonly pageShift: number;
  /** Entry count of the window. */
  readonly size: number;
  /** Number of radix levels (derived from size; at least 1). */
  readonly depth: number;
  readonly root: TceNode | undefined;
  readonly valid: number;
}

export const TCE_PCI_READ = 0x1n;
export const TCE_PCI_WRITE = 0x2n;
export const TCE_PERM_MASK = 0x3n;

/** Permission bits in words, as events and audit views write them: "r" (READ), "w" (WRITE), "rw". */
export type TcePerm = 'r' | 'w' | 'rw';

export function tcePermName(bits: bigint): TcePerm | '-' {
  const b = bits & TCE_PERM_MASK;
  return b === 3n ? 'rw' : b === TCE_PCI_READ ? 'r' : b === TCE_PCI_WRITE ? 'w' : '-';
}

/** The permission of a valid TCE in words (a valid TCE allows READ, WRITE or both). */
export function tcePermOf(bits: bigint): TcePerm {
  const name = tcePermName(bits);
  if (name === '-') throw new RangeError('a valid TCE allows READ, WRITE or both');
  return name;
}

export function tcePermBits(perm: TcePerm): bigint {
  return (perm.includes('r') ? TCE_PCI_READ : 0n) | (perm.includes('w') ? TCE_PCI_WRITE : 0n);
}

function spanOf(level: number): number {
  return SPAN[level] ?? FANOUT ** level;
}

export function tceTableCreate(pageShift: number, size: number): TceTable {
  let depth = 1;
  while (2 ** (FANOUT_SHIFT * depth) < size) depth++;
  return { pageShift, size, depth, root: undefined, valid: 0 };
}

export function tceGet(table: TceTable, index: number): bigint {
  if (index < 0 || index >= table.size) return 0n;
  let node = table.root;
  for (let level = table.depth - 1; level > 0; level--) {
    if (node === undefined) return 0n;
    node = (node as Dir)[Math.floor(index / spanOf(level)) & MASK];
  }
  return node === undefined ? 0n : (node as Leaf)[index & MASK]!;
}

/** A leaf this write may change: itself when the open transient scope allocated it, else a copy. */
function writableLeaf(leaf: Leaf | undefined): Leaf {
  if (leaf !== undefined && isOwned(leaf)) return leaf;
  if (!inBatch()) return own(leaf === undefined ? new BigUint64Array(FANOUT) : leaf.slice());
  const out = slabLeaf();
  if (leaf !== undefined) out.set(leaf);
  return own(out);
}

/**
 * Leaves a batch allocates (replay folding a page) are views on shared buffers of SLAB_LEAVES leaves:
 * an ArrayBuffer of its own costs about 0.7 us, a view on a shared one about 0.1 us, and a replay of
 * scattered maps copies a leaf on every other event. The price is that a buffer lives as long as any of
 * its leaves, so a state may keep up to SLAB_LEAVES - 1 dead leaves per live one; leaves written outside
 * a batch (decide, the per-event folds of audits) keep a buffer each, so that live states, which change
 * a few leaves at a time for ever, never pin buffers.
 */
const SLAB_LEAVES = 8;
let slab: ArrayBuffer | null = null;
let slabUsed = 0;

function slabLeaf(): Leaf {
  if (slab === null || slabUsed === SLAB_LEAVES) {
    slab = new ArrayBuffer(SLAB_LEAVES * FANOUT * 8);
    slabUsed = 0;
  }
  return new BigUint64Array(slab, FANOUT * 8 * slabUsed++, FANOUT);
}

function writableDir(dir: Dir | undefined): (TceNode | undefined)[] {
  if (dir !== undefined && isOwned(dir)) return dir as (TceNode | undefined)[];
  return own(dir === undefined ? new Array<TceNode | undefined>(FANOUT).fill(undefined) : dir.slice());
}

/**
 * Writes `count` consecutive entries from `index`: entry index+i gets value(i) (non-zero: a valid TCE).
 * `value` is called exactly once per entry, in index order.
 */
export function tceWriteRange(table: TceTable, index: number, count: number, value: (i: number) => bigint): TceTable {
  return update(table, { kind: 'values', index, count, value, first: 0n, step: 0n });
}

/**
 * Writes `count` consecutive TCEs from `index`, the first `first` and each the previous one plus
 * `step` (a run of pages: address | permission bits). Every value must be non-zero. The common case of
 * a map, so it is one tight loop per leaf.
 */
export function tceWriteRun(table: TceTable, index: number, count: number, first: bigint, step: bigint): TceTable {
  return update(table, { kind: 'run', index, count, value: null, first, step });
}

/** Clears `count` entries from `index`. Missing levels are skipped, never allocated. */
export function tceClearRange(table: TceTable, index: number, count: number): TceTable {
  return update(table, { kind: 'clear', index, count, value: null, first: 0n, step: 0n });
}

/**
 * One change of the entries [index, index+count): a run of values (`first`, then each plus `step`), the
 * values `value(i)` for entry index+i, or clearing. A plain record rather than a closure per call: the
 * leaf operations below are the fold's innermost loop.
 */
interface Change {
  readonly kind: 'run' | 'values' | 'clear';
  readonly index: number;
  readonly count: number;
  readonly value: ((i: number) => bigint) | null;
  readonly first: bigint;
  readonly step: bigint;
}

/**
 * Applies the change to every leaf under [index, index+count), copying the path to each changed leaf
 * (each node at most once per call, and once per transient scope). Writes create missing subtrees;
 * clearing skips them.
 */
function update(table: TceTable, change: Change): TceTable {
  if (change.count <= 0) return table;
  const result = { valid: 0 };
  const root = updateNode(table.root, table.depth - 1, 0, change.index, change.index + change.count, change, result);
  // A node the scope owns is changed in place, so an unchanged root does not mean no change.
  if (root === table.root && result.valid === 0) return table;
  // Fields spelled out: in V8 11 a spread with an override costs ten times this literal, once per TCE write.
  return { pageShift: table.pageShift, size: table.size, depth: table.depth, root, valid: table.valid + result.valid };
}

/** The node covering [base, base + FANOUT^(level+1)) after the change of its entries [from, to); adds the valid entries gained to `result`. */
function updateNode(node: TceNode | undefined, level: number, base: number, from: number, to: number, change: Change, result: { valid: number }): TceNode | undefined {
  if (level === 0) {
    const leaf = node as Leaf | undefined;
    if (change.kind === 'run') return writeRun(leaf, base, from, to, change, result);
    if (change.kind === 'values') return writeValues(leaf, base, from, to, change, result);
    return clear(leaf, base, from, to, result);
  }
  const span = spanOf(level);
  let dir: (TceNode | undefined)[] | undefined;
  for (let start = from; start < to; ) {
    const slot = Math.floor((start - base) / span);
    const childBase = base + slot * span;
    const end = Math.min(to, childBase + span);
    const child = node === undefined ? undefined : (node as Dir)[slot];
    if (child !== undefined || change.kind !== 'clear') {
      const next = updateNode(child, level - 1, childBase, start, end, change, result);
      if (next !== child) {
        dir ??= writableDir(node as Dir | undefined);
        dir[slot] = next;
      }
    }
    start = end;
  }
  return dir ?? node;
}

function writeRun(leaf: Leaf | undefined, base: number, from: number, to: number, change: Change, result: { valid: number }): Leaf {
  let gained = to - from;
  if (leaf !== undefined) for (let j = from - base; j < to - base; j++) if (leaf[j] !== 0n) gained--;
  const out = writableLeaf(leaf);
  const step = change.step;
  let v = change.first + BigInt(from - change.index) * step;
  for (let j = from - base; j < to - base; j++) {
    out[j] = v;
    v += step;
  }
  result.valid += gained;
  return out;
}

function writeValues(leaf: Leaf | undefined, base: number, from: number, to: number, change: Change, result: { valid: number }): Leaf | undefined {
  let out: Leaf | undefined;
  for (let i = from; i < to; i++) {
    const v = change.value!(i - change.index);
    const old = leaf === undefined ? 0n : leaf[i - base]!;
    if (old === v) continue;
    out ??= writableLeaf(leaf);
    out[i - base] = v;
    result.valid += (v !== 0n ? 1 : 0) - (old !== 0n ? 1 : 0);
  }
  return out ?? leaf;
}

function clear(leaf: Leaf | undefined, base: number, from: number, to: number, result: { valid: number }): Leaf | undefined {
  if (leaf === undefined) return leaf;
  let valid = 0;
  for (let j = from - base; j < to - base; j++) if (leaf[j] !== 0n) valid++;
  if (valid === 0) return leaf;
  const out = writableLeaf(leaf);
  out.fill(0n, from - base, to - base);
  result.valid -= valid;
  return out;
}

/** A maximal run of valid entries whose addresses advance by one IOMMU page and share permissions. */
export interface TceRun {
  readonly index: number;
  readonly count: number;
  /** The first entry's TCE value (address | permission bits). */
  readonly first: bigint;
}

/** Valid entries in index order, merged into runs. Visits only allocated leaves. */
export function tceRuns(table: TceTable): TceRun[] {
  const runs: { index: number; count: number; first: bigint }[] = [];
  const step = 1n << BigInt(table.pageShift);
  const visit = (node: TceNode | undefined, level: number, base: number): void => {
    if (node === undefined) return;
    if (level === 0) {
      const leaf = node as Leaf;
      for (let i = 0; i < FANOUT; i++) {
        const v = leaf[i]!;
        if (v === 0n) continue;
        const index = base + i;
        const last = runs[runs.length - 1];
        if (last && last.index + last.count === index && last.first + step * BigInt(last.count) === v) last.count++;
        else runs.push({ index, count: 1, first: v });
      }
      return;
    }
    const span = spanOf(level);
    (node as Dir).forEach((child, slot) => visit(child, level - 1, base + slot * span));
  };
  visit(table.root, table.depth - 1, 0);
  return runs;
}

/**
 * Whether any entry at `from` or above is valid. Visits only the allocated nodes on and above the
 * boundary path, so asking whether a table holds TCEs past its window costs a few hundred slot reads,
 * not a walk of every leaf.
 */
export function tceValidFrom(table: TceTable, from: number): boolean {
  const visit = (node: TceNode | undefined, level: number, base: number): boolean => {
    if (node === undefined) return false;
    if (level === 0) {
      const leaf = node as Leaf;
      for (let i = Math.max(0, from - base); i < FANOUT; i++) if (leaf[i] !== 0n) return true;
      return false;
    }
    const span = spanOf(level);
    const dir = node as Dir;
    for (let slot = Math.max(0, Math.floor((from - base) / span)); slot < FANOUT; slot++) {
      const child = dir[slot];
      if (child !== undefined && visit(child, level - 1, base + slot * span)) return true;
    }
    return false;
  };
  return visit(table.root, table.depth - 1, 0);
}

/** Bytes of TCE storage allocated (leaves only; 8 bytes per entry slot). */
export function tceAllocatedBytes(table: TceTable): number {
  return tceLeafBases(table).length * FANOUT * 8;
}

/** First index of each allocated leaf (FANOUT entries), ascending: where the table has ever been written. */
export function tceLeafBases(table: TceTable): number[] {
  const bases: number[] = [];
  const visit = (node: TceNode | undefined, level: number, base: number): void => {
    if (node === undefined) return;
    if (level === 0) {
      bases.push(base);
      return;
    }
    const span = spanOf(level);
    (node as Dir).forEach((child, slot) => visit(child, level - 1, base + slot * span));
  };
  visit(table.root, table.depth - 1, 0);
  return bases;
}

/** The first valid entry in [index, index+count), or -1. Never-written levels are skipped whole. */
export function tceFirstValid(table: TceTable, index: number, count: number): number {
  return firstWhere(table, index, Math.min(table.size, index + count), false);
}

/** How many entries from `index` (at most `count`) are valid before the first invalid one. */
export function tceValidRun(table: TceTable, index: number, count: number): number {
  const end = Math.min(table.size, index + count);
  const hole = firstWhere(table, index, end, true);
  return (hole < 0 ? end : hole) - index;
}

/** First index in [from, to) whose entry is zero (`zero`) or non-zero (`!zero`); -1 if none. */
function firstWhere(table: TceTable, from: number, to: number, zero: boolean): number {
  if (from >= to) return -1;
  const find = (node: TceNode | undefined, level: number, base: number, lo: number, hi: number): number => {
    if (node === undefined) return zero ? lo : -1;
    if (level === 0) {
      const leaf = node as Leaf;
      for (let i = lo; i < hi; i++) if ((leaf[i - base] === 0n) === zero) return i;
      return -1;
    }
    const span = spanOf(level);
    for (let start = lo; start < hi; ) {
      const slot = Math.floor((start - base) / span);
      const childBase = base + slot * span;
      const end = Math.min(hi, childBase + span);
      const found = find((node as Dir)[slot], level - 1, childBase, start, end);
      if (found >= 0) return found;
      start = end;
    }
    return -1;
  };
  return find(table.root, table.depth - 1, 0, from, to);
}
