import { SqliteEventStore, type EventStore } from '@iommu-orch/store';
import type { Command } from 'commander';
import { Option } from 'commander';

/**
 * What every CLI command module gets: where to print and how to report its exit code. Exit codes:
 * 0 success; 1 an expectation or check did not hold; 2 bad input (usage, files, JSON, schema, a
 * database that is not ours); 3 an internal error (reported without a stack trace).
 */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** A transient status line (a progress bar), rewritten in place; only present on a terminal. */
  status?(line: string): void;
}

export const EXIT = { ok: 0, failed: 1, badInput: 2, internal: 3 } as const;

export interface CliContext {
  readonly io: Io;
  setExitCode(code: number): void;
}

/** A command module adds its subcommands to the program (or to the `audit` group). */
export type Register = (program: Command, ctx: CliContext) => void;

export const dbOption = (): Option => new Option('--db <file>', 'SQLite event log').makeOptionMandatory();

/** Opens a log for reading only (never creates it), runs `fn`, and closes it. */
export async function withReadonlyStore<T>(db: string, fn: (store: EventStore) => Promise<T>): Promise<T> {
  const store = SqliteEventStore.open(db, { readonly: true });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
