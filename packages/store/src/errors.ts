/**
 * Store failures. Codes are strings; the CLI alone maps them to exit codes.
 * - WRONG_EXPECTED_VERSION: an optimistic-concurrency conflict; nothing was written.
 * - DUPLICATE_EVENT_ID: an event id that the log already holds (or that repeats within the append);
 *   nothing was written.
 * - NOT_A_DATABASE / CORRUPT / SCHEMA_TOO_NEW / NOT_FOUND: the file cannot be used; it is left untouched.
 * - BUSY: another writer held the lock past the busy timeout.
 * - READ_ONLY: a write through a connection opened read-only.
 * - LOG_MISMATCH: a host name already holds another log (another log id) in the central database.
 * - CHAIN_BROKEN: rows offered for import do not continue the log (position, hash chain or stream
 *   version): the source was edited; nothing of that batch was written.
 */
export type StoreErrorCode =
  | 'WRONG_EXPECTED_VERSION' | 'DUPLICATE_EVENT_ID' | 'NOT_A_DATABASE' | 'CORRUPT' | 'SCHEMA_TOO_NEW' | 'NOT_FOUND' | 'BUSY' | 'READ_ONLY' | 'LOG_MISMATCH' | 'CHAIN_BROKEN';

export class StoreError extends Error {
  override readonly name: string = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  static is(value: unknown): value is StoreError {
    return value instanceof StoreError || (typeof value === 'object' && value !== null && (value as { name?: unknown }).name === 'StoreError');
  }
}

/**
 * What an append expects of its stream: 'any' (no check), 'no_stream' (version 0), 'stream_exists'
 * (version > 0) or that exact version.
 */
export type ExpectedVersion = 'any' | 'no_stream' | 'stream_exists' | number;

export class WrongExpectedVersionError extends StoreError {
  override readonly name: string = 'StoreError';
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
    readonly actual: number,
  ) {
    super('WRONG_EXPECTED_VERSION', `stream ${streamId}: expected version ${String(expected)}, actual ${actual}`);
  }

  static override is(value: unknown): value is WrongExpectedVersionError {
    return StoreError.is(value) && value.code === 'WRONG_EXPECTED_VERSION';
  }
}

/** Throws WrongExpectedVersionError unless `actual` satisfies `expected`. Every engine checks this way. */
export function checkExpectedVersion(streamId: string, expected: ExpectedVersion, actual: number): void {
  const ok =
    expected === 'any' ||
    (expected === 'no_stream' && actual === 0) ||
    (expected === 'stream_exists' && actual > 0) ||
    expected === actual;
  if (!ok) throw new WrongExpectedVersionError(streamId, expected, actual);
}
