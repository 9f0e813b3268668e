import {
  canonicalState, decide, decodeState, decodeValue, encodeState, encodeValue, initialState, SNAPSHOT_FORMAT, type Command, type Json, type State,
} from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bootCommands, commandsArb } from '../support/arbitraries.js';
import { apply } from '../support/fixtures.js';

function run(state: State, commands: readonly Command[]): State {
  let s = state;
  for (const c of commands) {
    const d = decide(s, c);
    if (d.ok) s = d.state;
  }
  return s;
}

const roundTrip = (value: unknown): unknown => decodeValue(JSON.parse(JSON.stringify(encodeValue(value))) as Json);

/** Values of every kind the codec claims to handle, nested. */
const { value: anyValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.constant(undefined),
    fc.boolean(),
    fc.string(),
    fc.double(),
    fc.integer(),
    fc.bigInt(),
    fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
    fc.bigUint64Array({ maxLength: 8 }),
    fc.float64Array({ maxLength: 4 }),
    fc.int32Array({ maxLength: 4 }),
    fc.uint8Array({ maxLength: 4 }),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('$', '__proto__', 'v', 'n', '0', '10')), tie('value'), { maxKeys: 4 }),
    fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 3 }).map((entries) => new Map(entries)),
    fc.array(tie('value'), { maxLength: 3 }).map((items) => new Set(items)),
  ),
}));

describe('snapshot codec (generic over the state shape)', () => {
  it('round-trips states built from random command sequences, byte for byte and in behaviour (fast-check)', () => {
    fc.assert(
      fc.property(commandsArb, commandsArb, (commands, more) => {
        const state = run(run(initialState, bootCommands), commands);
        const text = encodeState(state);
        const decoded = decodeState(text);
        expect(decoded).toStrictEqual(state);
        expect(canonicalState(decoded)).toBe(canonicalState(state));
        expect(encodeState(decoded)).toBe(text);
        // The decoded state is a working state: the same commands take both to the same place.
        expect(encodeState(run(decoded, more))).toBe(encodeState(run(state, more)));
      }),
      { numRuns: 150 },
    );
  });

  it('round-trips any plain value: bigint, typed arrays, sparse arrays, Map, Set, -0, NaN, "$" and "__proto__" keys (fast-check)', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        expect(roundTrip(value)).toStrictEqual(value);
      }),
      { numRuns: 500 },
    );
    const tricky = JSON.parse('{"__proto__":{"polluted":true},"$":"bigint","v":"0x1"}') as unknown;
    expect(roundTrip(tricky)).toStrictEqual(tricky);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('keeps the radix levels of a TCE table sparse: size follows what is mapped, not the window', () => {
    const state = apply(apply(initialState, ...bootCommands), ...[
      { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
      { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.1' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 12 },
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' },
      { type: 'mapPages', context: 'vm1', domain: 1, iova: 0x7000_0000n, paddr: 0x4000_0000n, pgsize: 0x1000n, pgcount: 3, prot: { read: true, write: true } },
    ] satisfies Command[]);
    const text = encodeState(state);
    // A 2 GiB window of 4 KiB pages has 512 Ki entries; three are mapped.
    expect(text.length).toBeLessThan(8000);
    expect(text).toContain('"$":"BigUint64Array"');
    expect(decodeState(text)).toStrictEqual(state);
  });

  it('refuses what is not plain data, and text that is not a state of this shape', () => {
    expect(() => encodeValue(new Date(0))).toThrow(/Date/);
    expect(() => encodeValue(() => 1)).toThrow(/function/);
    expect(() => encodeValue(Symbol('s'))).toThrow(/symbol/);
    expect(() => decodeState('{"version":1}')).toThrow(/fields/);
    expect(() => decodeState('[1,2]')).toThrow(/object/);
    expect(() => decodeValue({ $: 'nonsense' })).toThrow(/unknown snapshot tag/);
    expect(() => decodeValue({ $: 'bigint' })).toThrow(/lacks "v"/);
  });

  it('names the format after the codec, the event catalogue and the empty state', () => {
    expect(SNAPSHOT_FORMAT).toMatch(/^codec:1;events:\d+:[A-Za-z,]+;initial:\{/);
    expect(SNAPSHOT_FORMAT).toContain(encodeState(initialState));
  });
});
