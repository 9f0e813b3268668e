import { PostgresEventStore, SqliteEventStore, type EventStore } from '@iommu-orch/store';
import type { Command } from 'commander';
import { Option } from 'commander';
import { InputError } from '../command-schema.js';

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

/** A PostgreSQL connection URL, checked only for its scheme (the driver reports the rest). */
export function postgresUrl(flag: string, value: string): string {
  if (!/^postgres(ql)?:\/\//.test(value)) throw new InputError(`${flag} wants a postgres:// URL, got "${value}"`);
  return value;
}

/** Where an audit reads: a SQLite file (--db), or one host's log in a central PostgreSQL (--store, --host). */
export interface LogSource {
  readonly db?: string;
  readonly store?: string;
  readonly host?: string;
}

/** Adds --db, --store and --host to an audit command; `withLogSource` wants exactly one of --db, --store. */
export function addLogSource(cmd: Command): Command {
  return cmd
    .option('--db <file>', 'SQLite event log')
    .option('--store <postgres-url>', 'central PostgreSQL database that `ship` fills (with --host)')
    .option('--host <name>', 'with --store: the host whose log to read');
}

/** The PostgreSQL URL of a --store source with no --host (a fleet-wide question), else undefined. */
export function fleetStore(src: LogSource): string | undefined {
  if (src.store === undefined || src.host !== undefined) return undefined;
  if (src.db !== undefined) throw new InputError('give --db or --store, not both');
  return postgresUrl('--store', src.store);
}

/** Opens the source's log read-only (never creates it), runs `fn`, and closes it. */
export async function withLogSource<T>(src: LogSource, fn: (store: EventStore) => Promise<T>): Promise<T> {
  if ((src.db === undefined) === (src.store === undefined)) throw new InputError('give the log as --db <file> or as --store <postgres-url> --host <name>');
  if (src.db !== undefined) {
    if (src.host !== undefined) throw new InputError('--host goes with --store, not --db');
    return withReadonlyStore(src.db, fn);
  }
  if (src.host === undefined) throw new InputError('--store wants --host <name>: the host whose log to read');
  const store = PostgresEventStore.open(postgresUrl('--store', src.store!), { host: src.host, readonly: true, maxConnections: 1 });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
