import { canonicalJson, stateView } from '@iommu-orch/core';
import type { Command } from 'commander';
import { InputError } from '../command-schema.js';
import { renderState, stateHeading } from '../render.js';
import { replay } from '../replay.js';
import { dbOption, withReadonlyStore, type CliContext } from './io.js';

/** The `audit` group; each audit question is a subcommand registered on it. */
export function registerAudit(program: Command, ctx: CliContext): Command {
  const audit = program.command('audit').description('questions answered from the event log');
  audit
    .command('replay')
    .description('the state as of a position (or ISO time), rebuilt from the log')
    .addOption(dbOption())
    .option('--at <position|time>', 'last position to include, or an ISO 8601 time')
    .option('--json', 'canonical JSON state')
    .action(async (opts: { db: string; at?: string; json?: boolean }) => {
      const at = parseAt(opts.at);
      const r = await withReadonlyStore(opts.db, (store) => replay(store, at));
      for (const s of r.rejectedSnapshots) ctx.io.err(`iommu-orch: skipped the snapshot at position ${s.position}: ${s.reason}`);
      if (opts.json) ctx.io.out(canonicalJson({ position: r.position, time: r.time, state: stateView(r.state) }));
      else ctx.io.out(renderState(r.state, stateHeading(r.position, r.time)));
    });
  return audit;
}

/** `--at` is a position (a non-negative integer) or an ISO 8601 time. */
export function parseAt(at: string | undefined): { at?: number; until?: string } {
  if (at === undefined) return {};
  if (/^\d+$/.test(at)) return { at: Number(at) };
  if (/^\d{4}-\d{2}-\d{2}/.test(at) && !Number.isNaN(Date.parse(at))) return { until: at };
  throw new InputError(`--at wants a position (a non-negative integer) or an ISO 8601 time, got "${at}"`);
}
