import { tceAllocatedBytes, tceClearRange, tceGet, tceRuns, tceTableCreate, tceWriteRange, withTransientTables, type TceTable } from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

/** The persistent sparse table against a plain Map model. */
type Op = { kind: 'write' | 'clear'; index: number; count: number; base: bigint };

describe('sparse TCE table', () => {
  it('behaves like a map of index -> value, and older versions never change', () => {
    const size = 1 << 20;
    const op = fc.record({
      kind: fc.constantFrom('write' as const, 'clear' as const),
      index: fc.oneof(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 500, max: 530 })),
      count: fc.integer({ min: 1, max: 1500 }),
      base: fc.bigInt({ min: 1n, max: 1n << 40n }).map((n) => (n << 12n) | 3n),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), (ops: Op[]) => {
        let table = tceTableCreate(12, size);
        const model = new Map<number, bigint>();
        const history: { table: TceTable; snapshot: Map<number, bigint> }[] = [];
        for (const o of ops) {
          const count = Math.min(o.count, size - o.index);
          if (o.kind === 'write') {
            table = tceWriteRange(table, o.index, count, (i) => o.base + (BigInt(i) << 12n));
            for (let i = 0; i < count; i++) model.set(o.index + i, o.base + (BigInt(i) << 12n));
          } else {
            table = tceClearRange(table, o.index, count);
            for (let i = 0; i < count; i++) model.delete(o.index + i);
          }
          history.push({ table, snapshot: new Map(model) });
        }
        expect(table.valid).toBe(model.size);
        const fromRuns = new Map<number, bigint>();
        for (const r of tceRuns(table)) for (let i = 0; i < r.count; i++) fromRuns.set(r.index + i, r.first + (BigInt(i) << 12n));
        expect(fromRuns).toEqual(model);
        for (const { table: t, snapshot } of history) {
          for (const [k, v] of snapshot) expect(tceGet(t, k)).toBe(v);
          expect(t.valid).toBe(snapshot.size);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('allocates leaves only for what is written: 1 GiB of 64 KiB pages in a 1 TiB window', () => {
    let t = tceTableCreate(16, 2 ** 24); // 1 TiB / 64 KiB
    expect(tceAllocatedBytes(t)).toBe(0);
    t = tceWriteRange(t, 123 * 512, 16384, (i) => (BigInt(i) << 16n) | 3n); // 1 GiB mapped
    expect(tceAllocatedBytes(t)).toBe(16384 * 8);
    t = tceClearRange(t, 0, 2 ** 24);
    expect(t.valid).toBe(0);
  });

  it('clearing never allocates', () => {
    const t = tceClearRange(tceTableCreate(12, 2 ** 30), 0, 2 ** 30);
    expect(t.root).toBeUndefined();
  });

  it('reads outside the table as empty', () => {
    const t = tceWriteRange(tceTableCreate(12, 16), 0, 16, () => 0x1003n);
    expect(tceGet(t, 16)).toBe(0n);
    expect(tceGet(t, -1)).toBe(0n);
  });
});

describe('transient folds', () => {
  it('give the same table as copy-on-write writes and leave the input untouched', () => {
    const op = fc.record({
      clear: fc.boolean(),
      index: fc.integer({ min: 0, max: 4095 }),
      count: fc.integer({ min: 1, max: 700 }),
      base: fc.bigInt({ min: 1n, max: 1n << 30n }).map((n) => (n << 12n) | 1n),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 10 }), fc.array(op, { maxLength: 10 }), (before, during) => {
        const apply = (t: TceTable, o: { clear: boolean; index: number; count: number; base: bigint }): TceTable => {
          const count = Math.min(o.count, 4096 - o.index);
          return o.clear ? tceClearRange(t, o.index, count) : tceWriteRange(t, o.index, count, (i) => o.base + (BigInt(i) << 12n));
        };
        const input = before.reduce(apply, tceTableCreate(12, 4096));
        const inputRuns = JSON.stringify(tceRuns(input), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v));
        const cow = during.reduce(apply, input);
        const transient = withTransientTables(() => during.reduce(apply, input));
        const runs = (t: TceTable) => JSON.stringify(tceRuns(t), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v));
        expect(runs(transient)).toBe(runs(cow));
        expect(transient.valid).toBe(cow.valid);
        expect(runs(input)).toBe(inputRuns);
      }),
      { numRuns: 200 },
    );
  });
});
