import { existsSync, rmSync } from 'node:fs';
import { canonicalJson, canonicalState, stateView } from '@iommu-orch/core';
import { SqliteEventStore, StoreError } from '@iommu-orch/store';
import { Command, CommanderError, Option } from 'commander';
import { logicalClock, systemClock, type Clock } from './clock.js';
import { InputError } from './command-schema.js';
import { demoScenarioPath } from './demo.js';
import { Orchestrator } from './orchestrator.js';
import { renderState, renderStep, stateHeading } from './render.js';
import { replay } from './replay.js';
import { loadScenario, runScenario, type Scenario } from './scenario.js';

/**
 * The iommu-orch command line. Exit codes are decided here and only here:
 * 0 success; 1 an expectation or check did not hold; 2 bad input (usage, files, JSON, schema, a
 * database that is not ours); 3 an internal error (reported without a stack trace).
 */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const processIo: Io = { out: (t) => process.stdout.write(`${t}\n`), err: (t) => process.stderr.write(`${t}\n`) };

export const EXIT = { ok: 0, failed: 1, badInput: 2, internal: 3 } as const;

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof Exit) return e.code;
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.badInput;
    if (e instanceof InputError) {
      io.err(`iommu-orch: ${e.message}`);
      return EXIT.badInput;
    }
    if (StoreError.is(e)) {
      io.err(`iommu-orch: ${e.message}`);
      return e.code === 'WRONG_EXPECTED_VERSION' || e.code === 'BUSY' ? EXIT.failed : EXIT.badInput;
    }
    io.err(`iommu-orch: internal error: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.internal;
  }
}

function buildProgram(io: Io, setCode: (code: number) => void): Command {
  const program = new Command('iommu-orch')
    .description('Event-sourced orchestrator for the PPC64 sPAPR TCE IOMMU under iommufd')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showSuggestionAfterError();
  const dbOption = () => new Option('--db <file>', 'SQLite event log').makeOptionMandatory();

  program
    .command('run')
    .description('run a scenario (topology + commands) into an event log and check its expectations')
    .argument('<scenario>', 'scenario JSON file (docs/scenario-format.md)')
    .addOption(dbOption())
    .option('--json', 'machine-readable results')
    .option('--append', 'continue an existing log instead of requiring a new one')
    .addOption(new Option('--clock <kind>', 'event timestamps').choices(['scenario', 'system']).default('scenario'))
    .action(async (file: string, opts: { db: string; json?: boolean; append?: boolean; clock: string }) => {
      const scenario = loadScenario(file);
      const clock = opts.clock === 'system' ? systemClock : scenarioClock(scenario);
      setCode(await runCommand(io, scenario, opts.db, clock, { json: opts.json ?? false, append: opts.append ?? false }));
    });

  program
    .command('demo')
    .description('run the demo scenario into a fresh SQLite file, replay it and compare with the live state')
    .option('--db <file>', 'SQLite event log (replaced if present)', 'iommu-orch-demo.sqlite')
    .option('--json', 'machine-readable output')
    .action(async (opts: { db: string; json?: boolean }) => {
      setCode(await demoCommand(io, opts.db, opts.json ?? false));
    });

  const audit = program.command('audit').description('questions answered from the event log');
  audit
    .command('replay')
    .description('the state as of a position (or ISO time), rebuilt from the log')
    .addOption(dbOption())
    .option('--at <position|time>', 'last position to include, or an ISO 8601 time')
    .option('--json', 'canonical JSON state')
    .action(async (opts: { db: string; at?: string; json?: boolean }) => {
      const at = parseAt(opts.at);
      const store = SqliteEventStore.open(opts.db, { readonly: true });
      try {
        const r = await replay(store, at);
        if (opts.json) io.out(canonicalJson({ position: r.position, time: r.time, state: stateView(r.state) }));
        else io.out(renderState(r.state, stateHeading(r.position, r.time)));
      } finally {
        await store.close();
      }
    });
  return program;
}

function parseAt(at: string | undefined): { at?: number; until?: string } {
  if (at === undefined) return {};
  if (/^\d+$/.test(at)) return { at: Number(at) };
  if (!Number.isNaN(Date.parse(at)) && /^\d{4}-\d{2}-\d{2}/.test(at)) return { until: at };
  throw new InputError(`--at wants a position (a non-negative integer) or an ISO 8601 time, got "${at}"`);
}

function scenarioClock(s: Scenario): Clock {
  return logicalClock(s.clock?.start, s.clock?.stepMs);
}

async function runCommand(io: Io, scenario: Scenario, db: string, clock: Clock, opts: { json: boolean; append: boolean }): Promise<number> {
  const store = SqliteEventStore.open(db);
  try {
    const head = await store.head();
    if (head > 0 && !opts.append) throw new InputError(`${db} already holds ${head} events; pass --append to continue it`);
    const orchestrator = await Orchestrator.open(store, { clock });
    const report = await runScenario(orchestrator, scenario);
    if (opts.json) {
      io.out(canonicalJson({
        scenario: report.name, passed: report.passed, results: report.results as never, state: stateView(report.state),
      }));
    } else {
      for (const r of report.results) io.out(renderStep(r));
      io.out('');
      const head = await store.head();
      const last = head > 0 ? (await store.read(head - 1, 1))[0] : undefined;
      io.out(renderState(report.state, stateHeading(head, last?.metadata.time ?? null)));
      const refused = report.results.filter((r) => !r.ok).length;
      const failed = report.results.filter((r) => r.expectationMet === false).length;
      io.out('');
      io.out(`scenario ${report.name}: ${report.results.length} commands, ${report.results.length - refused} accepted, ${refused} refused, ${failed === 0 ? 'all expectations met' : `${failed} expectations NOT met`}`);
    }
    return report.passed ? EXIT.ok : EXIT.failed;
  } finally {
    await store.close();
  }
}

async function demoCommand(io: Io, db: string, json: boolean): Promise<number> {
  for (const suffix of ['', '-wal', '-shm']) if (existsSync(db + suffix)) rmSync(db + suffix);
  const scenario = loadScenario(demoScenarioPath());
  const store = SqliteEventStore.open(db);
  let live;
  try {
    const orchestrator = await Orchestrator.open(store, { clock: scenarioClock(scenario) });
    live = await runScenario(orchestrator, scenario);
  } finally {
    await store.close();
  }
  // Replay through a fresh read-only connection: nothing is shared with the writer.
  const reader = SqliteEventStore.open(db, { readonly: true });
  const replayed = await replay(reader);
  await reader.close();
  const same = canonicalState(replayed.state) === canonicalState(live.state);
  if (json) {
    io.out(canonicalJson({ db, passed: live.passed, replayEqualsLive: same, position: replayed.position, state: stateView(replayed.state) }));
  } else {
    io.out(`Demo: ${scenario.description ?? scenario.name}`);
    io.out('');
    for (const r of live.results) io.out(renderStep(r));
    io.out('');
    io.out(renderState(replayed.state, `Replayed from ${db}: state at position ${replayed.position}`));
    io.out('');
    io.out(`expectations: ${live.passed ? 'all met' : 'NOT all met'}`);
    io.out(`replayed state equals live state: ${same ? 'yes' : 'NO'}`);
  }
  return live.passed && same ? EXIT.ok : EXIT.failed;
}


