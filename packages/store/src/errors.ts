/**
 * Store failures. Codes are strings; the CLI alone maps them to exit codes.
 * - WRONG_EXPECTED_VERSION: an optimistic-concurrency conflict; nothing was written.
 * - NOT_A_DATABASE / CORRUPT / SCHEMA_TOO_NEW / NOT_FOUND: the file cannot be used; it is left untouched.
 * - BUSY: another writer held the lock past the busy timeout.
 */
export type StoreErrorCode = 'WRONG_EXPECTED_VERSION' | 'NOT_A_DATABASE' | 'CORRUPT' | 'SCHEMA_TOO_NEW' | 'NOT_FOUND' | 'BUSY';

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

export type ExpectedVersion = 'any' | 'no_stream' | 'stream_exists' | number;

export class WrongExpectedVersionError extends StoreError {
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
    readonly actual: number,
  ) {
    super('WRONG_EXPECTED_VERSION', `stream ${streamId}: expected version ${String(expected)}, actual ${actual}`);
  }
}
