import { existsSync, rmSync } from 'node:fs';
import { canonicalJson, canonicalState, stateView } from '@iommu-orch/core';
import { SqliteEventStore } from '@iommu-orch/store';
import type { Command } from 'commander';
import { Orchestrator } from '../orchestrator.js';
import { renderState, renderStep } from '../render.js';
import { replay } from '../replay.js';
import { loadScenario, runScenario } from '../scenario.js';
import { demoScenarioPath } from './demo-path.js';
import { EXIT, withReadonlyStore, type CliContext, type Io } from './io.js';
import { scenarioClock, scenarioLogId } from './run.js';

export function registerDemo(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description('run the demo scenario into a fresh SQLite file, replay it and compare with the live state')
    .option('--db <file>', 'SQLite event log (replaced if present)', 'iommu-orch-demo.sqlite')
    .option('--json', 'machine-readable output')
    .action(async (opts: { db: string; json?: boolean }) => {
      ctx.setExitCode(await demo(ctx.io, opts.db, opts.json ?? false));
    });
}

async function demo(io: Io, db: string, json: boolean): Promise<number> {
  for (const suffix of ['', '-wal', '-shm']) if (existsSync(db + suffix)) rmSync(db + suffix);
  const scenario = loadScenario(demoScenarioPath());
  const clock = scenarioClock(scenario);
  const store = SqliteEventStore.open(db, scenarioLogId(scenario, clock));
  let live;
  try {
    const orchestrator = await Orchestrator.open(store, { clock });
    live = await runScenario(orchestrator, scenario);
  } finally {
    await store.close();
  }
  // Replay through a fresh read-only connection: nothing is shared with the writer.
  const replayed = await withReadonlyStore(db, (reader) => replay(reader));
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
