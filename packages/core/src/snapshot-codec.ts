import { EVENT_SCHEMA_VERSION, EVENT_TYPES } from './events.js';
import { initialState, type State } from './state.js';
import type { Json } from './view.js';

/**
 * A lossless JSON encoding of a state, for snapshots. It is generic over the shape of State: it walks
 * the value structurally, so a field added to State (or to anything inside it) needs no change here.
 *
 * - null, booleans, strings and finite numbers other than -0 stand for themselves.
 * - Plain objects keep their keys in order. `"$"` marks a tag, so an object that has a `"$"` key of
 *   its own is wrapped: `{"$":"object","v":{...}}` (with `"proto":null` for a null-prototype object).
 * - Arrays without undefined entries stay arrays. Arrays with undefined entries (the empty slots of a
 *   TCE table's radix levels) are `{"$":"sparse","n":length,"r":runs}`, where each run is
 *   `[firstIndex, ...values]` of consecutive defined entries; holes read back as undefined.
 * - bigint: `{"$":"bigint","v":"0x1f"}` (hex, `-0x..` when negative).
 * - Typed arrays (TCE leaves are BigUint64Array): `{"$":"<Type>","n":length,"r":runs}` over the
 *   non-zero entries, bigint elements as hex strings.
 * - Map, Set, undefined, -0, NaN and the infinities get tags of their own.
 * Anything else (functions, symbols, class instances) throws: a state is plain data.
 */
export function encodeState(state: State): string {
  return JSON.stringify(encodeValue(state));
}

/** Throws when the text is not an encoded state of this build's shape (top-level fields differ). */
export function decodeState(text: string): State {
  const value = decodeValue(JSON.parse(text) as Json);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SyntaxError('a snapshot must encode an object');
  const want = Object.keys(initialState).sort().join(',');
  const got = Object.keys(value).sort().join(',');
  if (got !== want) throw new SyntaxError(`snapshot state has fields [${got}], this build's state has [${want}]`);
  return value as State;
}

/**
 * What a snapshot's bytes mean: the codec, the event catalogue and the shape of the empty state.
 * A snapshot written under a different format is not used (the log is replayed instead), so a build
 * that adds event types or top-level state fields never trusts an older build's snapshots.
 */
export const SNAPSHOT_FORMAT = `codec:1;events:${EVENT_SCHEMA_VERSION}:${[...EVENT_TYPES].sort().join(',')};initial:${encodeState(initialState)}`;

const TYPED_ARRAYS = {
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
} as const;
type TypedArrayName = keyof typeof TYPED_ARRAYS;

export function encodeValue(value: unknown): Json {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0) ? value : { $: 'number', v: Object.is(value, -0) ? '-0' : String(value) };
    case 'bigint':
      return { $: 'bigint', v: bigintHex(value) };
    case 'undefined':
      return { $: 'undefined' };
    case 'object':
      return value === null ? null : encodeObject(value);
    default:
      throw new TypeError(`cannot encode a ${typeof value} in a snapshot`);
  }
}

function encodeObject(value: object): Json {
  if (Array.isArray(value)) {
    const items = value as readonly unknown[];
    // for-of visits holes as undefined, so holes count as undefined entries too.
    let defined = 0;
    for (const item of items) if (item !== undefined) defined++;
    if (defined === items.length) return items.map(encodeValue);
    return { $: 'sparse', n: items.length, r: runs(items, (x) => x !== undefined, encodeValue) };
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    const name = value.constructor.name;
    if (!Object.hasOwn(TYPED_ARRAYS, name)) throw new TypeError(`cannot encode a ${name} in a snapshot`);
    const items = Array.from(value as unknown as ArrayLike<number | bigint>);
    const element = (x: unknown): Json => (typeof x === 'bigint' ? bigintHex(x) : encodeValue(x));
    return { $: name, n: items.length, r: runs(items, (x) => !Object.is(x, 0) && x !== 0n, element) };
  }
  if (value instanceof Map) return { $: 'Map', e: [...value].map(([k, v]) => [encodeValue(k), encodeValue(v)]) };
  if (value instanceof Set) return { $: 'Set', e: [...value].map(encodeValue) };
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) throw new TypeError(`cannot encode a ${value.constructor.name} in a snapshot`);
  // fromEntries defines own properties, so a "__proto__" key stays a key.
  const out = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encodeValue(v)])) as Record<string, Json>;
  if (proto === null) return { $: 'object', proto: null, v: out };
  return Object.hasOwn(value, '$') ? { $: 'object', v: out } : out;
}

/** Runs of consecutive entries that `keep` accepts: [firstIndex, ...encoded values]. */
function runs<T>(items: readonly T[], keep: (x: T) => boolean, encode: (x: T) => Json): Json[] {
  const out: Json[][] = [];
  let run: Json[] | null = null;
  for (let i = 0; i < items.length; i++) {
    const x = items[i]!;
    if (!keep(x)) {
      run = null;
      continue;
    }
    if (run === null) out.push((run = [i]));
    run.push(encode(x));
  }
  return out;
}

function bigintHex(n: bigint): string {
  return n < 0n ? `-0x${(-n).toString(16)}` : `0x${n.toString(16)}`;
}

function hexBigint(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text);
}

export function decodeValue(json: Json): unknown {
  if (json === null || typeof json !== 'object') return json;
  if (Array.isArray(json)) return json.map(decodeValue);
  const obj = json as { readonly [key: string]: Json };
  if (!Object.hasOwn(obj, '$')) return decodeRecord(obj);
  const tag = obj.$;
  switch (tag) {
    case 'object': {
      const record = decodeRecord(field(obj, 'v') as { readonly [key: string]: Json });
      return Object.hasOwn(obj, 'proto') ? Object.assign(Object.create(null) as object, record) : record;
    }
    case 'bigint':
      return hexBigint(field(obj, 'v') as string);
    case 'number':
      return Number(field(obj, 'v'));
    case 'undefined':
      return undefined;
    case 'sparse': {
      const out = new Array<unknown>(field(obj, 'n') as number).fill(undefined);
      fillRuns(out, obj, decodeValue);
      return out;
    }
    case 'Map':
      return new Map((field(obj, 'e') as Json[][]).map(([k, v]) => [decodeValue(k!), decodeValue(v!)]));
    case 'Set':
      return new Set((field(obj, 'e') as Json[]).map(decodeValue));
    default: {
      if (typeof tag !== 'string' || !Object.hasOwn(TYPED_ARRAYS, tag)) throw new SyntaxError(`unknown snapshot tag ${JSON.stringify(tag)}`);
      const out = new TYPED_ARRAYS[tag as TypedArrayName](field(obj, 'n') as number);
      const bigints = out instanceof BigInt64Array || out instanceof BigUint64Array;
      fillRuns(out as unknown as unknown[], obj, (x) => (bigints ? hexBigint(x as string) : decodeValue(x)));
      return out;
    }
  }
}

function decodeRecord(obj: { readonly [key: string]: Json }): Record<string, unknown> {
  // fromEntries defines own properties, so a "__proto__" key stays a key.
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, decodeValue(v)]));
}

function fillRuns(out: unknown[], obj: { readonly [key: string]: Json }, decode: (x: Json) => unknown): void {
  for (const run of field(obj, 'r') as Json[][]) {
    const first = run[0] as number;
    for (let i = 1; i < run.length; i++) out[first + i - 1] = decode(run[i]!);
  }
}

function field(obj: { readonly [key: string]: Json }, key: string): Json {
  if (!Object.hasOwn(obj, key)) throw new SyntaxError(`snapshot tag ${JSON.stringify(obj.$)} lacks "${key}"`);
  return obj[key]!;
}
