/**
 * 64-bit bus and physical addresses. IOVAs reach 1<<59 and beyond (the 64-bit window), past the 2^53
 * that a JS number holds exactly, so the model keeps addresses as bigint and writes them into events
 * as lower-case hex strings ("0x3fffffff"), which are exact and readable.
 */
export type Hex = string;

export const U64_MAX = (1n << 64n) - 1n;

export function toHex(value: bigint): Hex {
  return `0x${value.toString(16)}`;
}

/** A record of byte counts (by context) as hex. */
export function toHexRecord(record: Readonly<Record<string, bigint>>): Record<string, Hex> {
  return Object.fromEntries(Object.entries(record).map(([key, value]) => [key, toHex(value)]));
}

export function fromHex(value: Hex): bigint {
  // Up to 13 hex digits a double holds exactly, and Number() parses them several times faster than
  // BigInt() (the fold reads three addresses per TCE event). Anything else, malformed text included, goes
  // through BigInt() and fails as it always did.
  if (value.length <= 15 && value.startsWith('0x')) {
    const n = Number(value);
    if (!Number.isNaN(n)) return BigInt(n);
  }
  return BigInt(value);
}

/** Parses a user-supplied u64: a safe non-negative integer, or a decimal/hex string. Returns null if invalid. */
export function parseU64(value: unknown): bigint | null {
  let n: bigint;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) return null;
    n = BigInt(value);
  } else if (typeof value === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) {
    n = BigInt(value);
  } else {
    return null;
  }
  return n <= U64_MAX ? n : null;
}

export function isPowerOfTwo(value: bigint): boolean {
  return value > 0n && (value & (value - 1n)) === 0n;
}

export function log2(value: bigint): number {
  return value.toString(2).length - 1;
}
