import { canonicalJson, type Json } from '@iommu-orch/core';
import type { TrustedHead } from '@iommu-orch/store';
import type { Command } from 'commander';
import { InputError } from '../command-schema.js';
import { auditLog, type AuditReport } from '../verify.js';
import { addLogSource, EXIT, withLogSource, type CliContext, type Io, type LogSource } from './io.js';

/**
 * `audit verify`: checks the hash chain and the snapshots of a log (verify.ts), read-only. Exit 0 when
 * everything verifies, 1 when something was altered, 2 when the file is not a usable log.
 */
export function registerAuditVerify(audit: Command, ctx: CliContext): void {
  const verify = audit
    .command('verify')
    .description('check the hash chain over every event and every snapshot; print the event count and head hash')
    .option('--expect <position:hash>', 'a head published earlier: the log must still hold this hash at this position')
    .option('--json', 'machine-readable report')
    .action(async (opts: LogSource & { expect?: string; json?: boolean }) => {
      const trusted = parseTrustedHead(opts.expect);
      const report = await withLogSource(opts, (store) => auditLog(store, trusted ? { trusted } : {}));
      if (opts.json) ctx.io.out(canonicalJson(reportJson(report)));
      else printReport(ctx.io, report);
      ctx.setExitCode(report.ok ? EXIT.ok : EXIT.failed);
    });
  addLogSource(verify);
}

export function parseTrustedHead(text: string | undefined): TrustedHead | undefined {
  if (text === undefined) return undefined;
  const m = /^([1-9]\d*):([0-9a-fA-F]{64})$/.exec(text);
  if (!m) throw new InputError(`--expect wants <position>:<sha256 hex>, as audit verify prints them, got "${text}"`);
  return { position: Number(m[1]), hash: m[2]!.toLowerCase() };
}

function reportJson(r: AuditReport): Json {
  const c = r.chain;
  return {
    ok: r.ok,
    logId: c.logId,
    count: c.count,
    ...(c.ok ? { head: c.head } : { firstBadPosition: c.position, problems: [...c.problems] }),
    snapshots: r.snapshots && { matched: r.snapshots.matched, foreign: r.snapshots.foreign, bad: r.snapshots.bad.map((b) => ({ ...b })) },
  };
}

function printReport(io: Io, r: AuditReport): void {
  const c = r.chain;
  if (!c.ok) {
    io.out(`TAMPERED: the log breaks at position ${c.position} (the ${c.count} events before it verify)`);
    for (const p of c.problems) io.out(`  - ${p}`);
    return;
  }
  io.out(`${c.count} events verify (log ${c.logId})`);
  io.out(`head ${c.count}:${c.head}`);
  const s = r.snapshots!;
  const foreign = s.foreign > 0 ? `; ${s.foreign} from another build, not checked` : '';
  io.out(`snapshots: ${s.matched} equal a full replay${foreign}`);
  for (const b of s.bad) io.out(`TAMPERED: snapshot at position ${b.position}: ${b.reason}`);
}
