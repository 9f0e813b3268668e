import { canonicalJson, stateView } from '@iommu-orch/core';
import { SqliteEventStore } from '@iommu-orch/store';
import { Option, type Command } from 'commander';
import { logicalClock, systemClock, type Clock } from '../clock.js';
import { InputError } from '../command-schema.js';
import { fault, FAULT_NAMES, type Fault } from '../faults.js';
import { Orchestrator } from '../orchestrator.js';
import { renderState, renderStep, stateHeading } from '../render.js';
import { loadScenario, parseSteps, runScenario, type Scenario } from '../scenario.js';
import { dbOption, EXIT, type CliContext, type Io } from './io.js';

export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('run a scenario (topology + commands) into an event log and check its expectations')
    .argument('<scenario>', 'scenario JSON file (docs/scenario-format.md)')
    .addOption(dbOption())
    .option('--json', 'machine-readable results')
    .option('--append', 'continue an existing log instead of requiring a new one')
    .addOption(new Option('--clock <kind>', 'event timestamps').choices(['scenario', 'system']).default('scenario'))
    .addOption(faultOption())
    .action(async (file: string, opts: { db: string; json?: boolean; append?: boolean; clock: string; fault?: string }) => {
      const scenario = loadScenario(file);
      // A malformed step is refused before the log file is opened (and so created).
      parseSteps(scenario);
      const clock = opts.clock === 'system' ? systemClock : scenarioClock(scenario);
      const injected = opts.fault === undefined ? undefined : fault(opts.fault as Fault['name']);
      ctx.setExitCode(await runCommand(ctx.io, scenario, opts.db, clock, { json: opts.json ?? false, append: opts.append ?? false, fault: injected }));
    });
}

/** The hidden test-only switch that injects a deliberate bug (faults.ts); absent from --help. */
export function faultOption(): Option {
  return new Option('--fault <name>', 'test only: inject a deliberate bug').choices(FAULT_NAMES).hideHelp();
}

export function scenarioClock(s: Scenario): Clock {
  return logicalClock(s.clock?.start, s.clock?.stepMs);
}

/**
 * The log id (hash-chain genesis) of a new log written by a scenario on its own clock: derived from the
 * scenario, so the same scenario gives a byte-identical file. On the system clock nothing is
 * reproducible anyway, and the store picks a random id.
 */
export function scenarioLogId(s: Scenario, clock: Clock): { logId?: string } {
  return clock === systemClock ? {} : { logId: `scenario ${s.name}` };
}

async function runCommand(
  io: Io,
  scenario: Scenario,
  db: string,
  clock: Clock,
  opts: { json: boolean; append: boolean; fault: Fault | undefined },
): Promise<number> {
  const store = SqliteEventStore.open(db, scenarioLogId(scenario, clock));
  try {
    const head = await store.head();
    if (head > 0 && !opts.append) throw new InputError(`${db} already holds ${head} events; pass --append to continue it`);
    const orchestrator = await Orchestrator.open(store, { clock, ...(opts.fault ? { fault: opts.fault } : {}) });
    const report = await runScenario(orchestrator, scenario);
    if (opts.json) {
      io.out(canonicalJson({ scenario: report.name, passed: report.passed, results: report.results as never, state: stateView(report.state) }));
    } else {
      for (const r of report.results) io.out(renderStep(r));
      io.out('');
      const last = await store.head();
      const lastEvent = last > 0 ? (await store.read(last - 1, 1))[0] : undefined;
      io.out(renderState(report.state, stateHeading(last, lastEvent?.metadata.time ?? null)));
      const refused = report.results.filter((r) => !r.ok).length;
      const failed = report.results.filter((r) => r.expectationMet === false).length;
      const broken = report.results.reduce((n, r) => n + (r.violations?.length ?? 0), 0);
      io.out('');
      io.out(
        `scenario ${report.name}: ${report.results.length} commands, ${report.results.length - refused} accepted, ${refused} refused, ${failed === 0 ? 'all expectations met' : `${failed} expectations NOT met`}, ${broken === 0 ? 'no invariant broken' : `${broken} invariant violations`}`,
      );
    }
    return report.passed ? EXIT.ok : EXIT.failed;
  } finally {
    await store.close();
  }
}
