import { writeFileSync } from 'node:fs';
import { canonicalJson, type Json } from '@iommu-orch/core';
import type { Command } from 'commander';
import { InputError } from '../command-schema.js';
import { fault, type Fault, type FaultName } from '../faults.js';
import { runStress, type StressReport, type StressViolation } from '../stress/runner.js';
import { reproScenario, shrink } from '../stress/shrink.js';
import { defaultTopologyPath, loadTopology } from '../stress/topology.js';
import { dbOption, EXIT, type CliContext, type Io } from './io.js';
import { faultOption } from './run.js';

/** The `stress` group: seeded, reproducible runs of many actors against one host (docs/stress.md). */
export function registerStress(program: Command, ctx: CliContext): void {
  const stress = program.command('stress').description('seeded, reproducible stress runs (docs/stress.md)');
  stress
    .command('hotplug')
    .description('actors assign groups, map, hot-plug slots and toggle SR-IOV, interleaved; invariants checked after every event')
    .requiredOption('--seed <n>', 'PRNG seed (0..4294967295): the same arguments give a byte-identical log')
    .requiredOption('--ops <n>', 'operations (commands) to run after boot')
    .requiredOption('--actors <n>', 'concurrent actors, each a user context (1..64)')
    .addOption(dbOption())
    .option('--json', 'machine-readable summary')
    .option('--crash-every <m>', 'every m ops, restart from the log and check replay equals the live state')
    .option('--topology <file>', 'host topology (docs/stress.md); default: a POWER9 host with a ConnectX-5')
    .option('--repro <file>', 'where to write the reproduction scenario on a violation (default: <db>.repro.json)')
    .addOption(faultOption())
    .action(async (opts: StressCliOptions) => {
      ctx.setExitCode(await stressHotplug(ctx.io, opts));
    });
}

interface StressCliOptions {
  seed: string;
  ops: string;
  actors: string;
  db: string;
  json?: boolean;
  crashEvery?: string;
  topology?: string;
  repro?: string;
  fault?: string;
}

async function stressHotplug(io: Io, opts: StressCliOptions): Promise<number> {
  const seed = integer('--seed', opts.seed, 0, 0xffff_ffff);
  const ops = integer('--ops', opts.ops, 1, 100_000_000);
  const actors = integer('--actors', opts.actors, 1, 64);
  const crashEvery = opts.crashEvery === undefined ? undefined : integer('--crash-every', opts.crashEvery, 1, 100_000_000);
  const topology = loadTopology(opts.topology ?? defaultTopologyPath());
  const injected = opts.fault === undefined ? undefined : fault(opts.fault as FaultName);
  const bar = io.status ? progressBar(io.status) : undefined;
  const report = await runStress({
    seed, ops, actors, db: opts.db, topology, crashEvery, fault: injected, ...(bar ? { progress: bar } : {}),
  });
  io.status?.('');
  const repro = report.violations.length > 0 ? writeRepro(report, opts, injected) : undefined;
  if (opts.json) io.out(canonicalJson(summaryJson(report, topology.name, opts.db, repro)));
  else for (const line of summaryText(report, topology.name, opts.db, repro)) io.out(line);
  return report.violations.length > 0 ? EXIT.failed : EXIT.ok;
}

/** A strict decimal integer in [min, max]; anything else is bad input. */
function integer(flag: string, text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new InputError(`${flag} wants an integer from ${min} to ${max}, got "${text}"`);
  return n;
}

function progressBar(status: (line: string) => void): (done: number, total: number) => void {
  const width = 30;
  return (done, total) => {
    const filled = Math.round((done / total) * width);
    status(`stress [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ops`);
  };
}

interface Repro {
  readonly file: string;
  readonly commands: number;
  readonly rule: string;
  readonly replay: string;
}

/** Shrinks the failing history and writes it as a scenario that `iommu-orch run` replays. */
function writeRepro(report: StressReport, opts: StressCliOptions, injected: Fault | undefined): Repro | { readonly error: string } {
  const first = report.violations[0]!;
  if (first.command === null) return { error: `${first.rule} was found by a whole-state check, not after an event: no reproduction` };
  const commands = shrink(report.history, { rule: first.rule, fault: injected });
  const file = opts.repro ?? `${opts.db}.repro.json`;
  const replay = `iommu-orch run ${file} --db <new-log.sqlite>${injected ? ` --fault ${injected.name}` : ''}`;
  const scenario = reproScenario(commands, {
    name: `stress-repro-seed-${report.seed}`,
    description:
      `Shrunk from iommu-orch stress hotplug --seed ${report.seed} --ops ${opts.ops} --actors ${report.actors}: ` +
      `the last command breaks invariant ${first.rule}${injected ? ` under fault ${injected.name} (${injected.description})` : ''}. Replay: ${replay}`,
    fault: injected,
  });
  writeFileSync(file, `${JSON.stringify(scenario, null, 2)}\n`);
  return { file, commands: commands.length, rule: first.rule, replay };
}

function violationJson(v: StressViolation): Json {
  return { op: v.op, command: v.command?.type ?? null, rule: v.rule, detail: v.detail };
}

function summaryJson(r: StressReport, topology: string, db: string, repro: Repro | { readonly error: string } | undefined): Json {
  return {
    seed: r.seed, actors: r.actors, topology, boot: r.boot, ops: r.ops, events: r.events, accepted: r.accepted, rejected: r.rejected,
    sagas: r.sagas, crashes: r.crashes, violations: r.violations.map(violationJson),
    opsPerSecond: Math.round(r.ops / (r.elapsedMs / 1000)), db, logSha256: r.logDigest,
    ...(repro ? { repro: repro as unknown as Json } : {}),
  };
}

function summaryText(r: StressReport, topology: string, db: string, repro: Repro | { readonly error: string } | undefined): string[] {
  const rejected = Object.values(r.rejected).reduce((n, x) => n + x, 0);
  const lines = [
    `stress hotplug: seed ${r.seed}, ${r.actors} actors, topology ${topology}`,
    `ops ${r.ops}: ${r.accepted} accepted, ${rejected} rejected; ${r.events} events logged (boot: ${r.boot} commands); ${Math.round(r.ops / (r.elapsedMs / 1000))} ops/s`,
    `rejected by code: ${Object.entries(r.rejected).sort(([a], [b]) => a.localeCompare(b)).map(([c, n]) => `${c} ${n}`).join(', ') || 'none'}`,
  ];
  for (const [saga, outcomes] of Object.entries(r.sagas).sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`saga ${saga}: ${Object.entries(outcomes).map(([o, n]) => `${o} ${n}`).join(', ')}`);
  }
  if (r.crashes > 0) lines.push(`restarts from the log: ${r.crashes}, replay equal to the live state at each${r.violations.some((v) => v.rule === 'replay-equals-live') ? ' EXCEPT where reported' : ''}`);
  lines.push(`invariant violations: ${r.violations.length}`);
  for (const v of r.violations) lines.push(`  after op ${v.op} (${v.command?.type ?? 'whole-state check'}): ${v.rule}: ${v.detail}`);
  if (repro && 'error' in repro) lines.push(repro.error);
  else if (repro) lines.push(`reproduction: ${repro.file} (${repro.commands} commands, breaks ${repro.rule}); replay: ${repro.replay}`);
  lines.push(`log: ${db} sha256 ${r.logDigest}`);
  return lines;
}
