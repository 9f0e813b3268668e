import { canonicalJson } from '@iommu-orch/core';
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { InputError } from '../command-schema.js';
import { shipLog } from '../ship/ship.js';
import { dbOption, EXIT, postgresUrl, type CliContext } from './io.js';

/**
 * `ship`: copies a host's log into PostgreSQL under the host's name (ship/ship.ts), verifying the chain
 * as it goes; resumable and idempotent. With --follow it keeps shipping until SIGINT or SIGTERM.
 */
export function registerShip(program: Command, ctx: CliContext): void {
  program
    .command('ship')
    .description("copy a host's SQLite log into PostgreSQL under its host name, verifying the chain; resumable, idempotent")
    .addOption(dbOption())
    .requiredOption('--to <postgres-url>', 'central PostgreSQL database (postgres://user:password@host:port/database)')
    .option('--host <name>', 'the host name the log is stored under (default: this machine\'s host name)')
    .option('--follow', 'keep shipping as the host appends, until SIGINT or SIGTERM')
    .option('--batch <n>', 'events per transaction (1..100000, default 1000)')
    .option('--json', 'machine-readable summary (no per-batch lines)')
    .action(async (opts: { db: string; to: string; host?: string; follow?: boolean; batch?: string; json?: boolean }) => {
      const batchSize = opts.batch === undefined ? 1000 : Number(opts.batch);
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000) throw new InputError(`--batch wants an integer in 1..100000, got "${opts.batch}"`);
      const host = opts.host ?? hostname();
      if (host.trim() === '') throw new InputError('--host must not be empty');
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      try {
        const r = await shipLog({
          db: opts.db, to: postgresUrl('--to', opts.to), host, follow: opts.follow ?? false, signal: stop.signal, batchSize,
          ...(opts.json ? {} : { onBatch: (head: number, n: number) => ctx.io.out(`batch: ${n} events, central head ${head}`) }),
        });
        if (opts.json) ctx.io.out(canonicalJson({ host: r.host, logId: r.logId, shipped: r.shipped, head: r.head, headHash: r.headHash }));
        else ctx.io.out(`${r.host}: shipped ${r.shipped} events; central head ${r.head}:${r.headHash}`);
        ctx.setExitCode(EXIT.ok);
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      }
    });
}
