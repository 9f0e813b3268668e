/**
 * Audit on a big log: `pnpm bench audit`.
 *
 * Writes a log of AUDIT_BENCH_EVENTS events (default one million) with the seeded workload, then times
 * every audit answer on it. Each figure is events of log covered per second, set against the baseline
 * measured in the same run: reading and parsing every event through the EventStore interface, the least
 * any answer computed from the log has to do. A ratio of 0.25 means the answer costs four reads of the
 * log. The seconds per answer are printed too. Targets: an answer from one pass costs at most about seven
 * reads of the log (0.15x: the pass folds every event, and the fold costs more than reading); the history
 * index is built for at most ten reads, and answers faster than one read.
 */
import { main, type Io } from '@iommu-orch/orchestrator';
import { readAll, SqliteEventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeBigLog } from './big-log.js';
import { measure, report, type Measurement } from './harness.js';

const EVENTS = Number(process.env.AUDIT_BENCH_EVENTS ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-bench-'));
const db = join(dir, 'audit.sqlite');
const silent: Io = { out: () => undefined, err: (t) => process.stderr.write(`${t}\n`) };

try {
  let t = performance.now();
  const written = await writeBigLog(db, EVENTS);
  console.log(`log: ${written} events, ${(statSync(db).size / 2 ** 20).toFixed(0)} MiB, written in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const store = SqliteEventStore.open(db, { readonly: true });
  const head = await store.head();
  // Measured again before every case: the machine is shared, and a ratio only means something when both
  // sides ran under the same load.
  const baseline = async (): Promise<Measurement> => {
    const m = await measure(async () => {
      let n = 0;
      for await (const _ of readAll(store, 0, 2000)) n++;
      return n;
    }, 1);
    console.log(`  baseline: read and parse ${head} events: ${seconds(m, head)} s`);
    return m;
  };

  const run = async (argv: readonly string[]): Promise<void> => {
    const code = await main(['audit', ...argv, '--db', db, '--json'], silent);
    if (code !== 0) throw new Error(`audit ${argv.join(' ')} exited ${code}`);
  };
  const index = join(dir, 'history.idx');
  const mid = String(Math.floor(head / 2));
  // [name, arguments, events of the log the answer covers, target ratio]
  const cases: [string, string[], number, number][] = [
    ['replay (head)', ['replay'], head, 0.15],
    ['replay --at half', ['replay', '--at', mid], Number(mid), 0.15],
    ['history --device (every event of its group)', ['history', '--device', '0000:02:00.1'], head, 0.15],
    ['history --context --kind ownership', ['history', '--context', 'vm2', '--kind', 'ownership'], head, 0.15],
    ['explain', ['explain', '--device', '0000:01:00.0', '--iova', '0x5000'], head, 0.15],
    ['diff --from half', ['diff', '--from', mid], head, 0.15],
    ['report', ['report', '--out', join(dir, 'report.html')], head, 0.15],
  ];
  let ok = true;
  for (const [name, argv, covered, atLeast] of cases) {
    const base = await baseline();
    const m = await measure(async () => (await run(argv), covered), 1);
    ok = report(`audit ${name}`, m, base, { atLeast }, 'events/s') && ok;
    console.log(`  ${seconds(m, covered)} s per answer`);
  }

  // The sidecar index: built once (a pass plus the writes), then each answer is a lookup.
  let base = await baseline();
  t = performance.now();
  await run(['history', '--device', '0000:02:00.1', '--index', index, '--at', '1']);
  const build: Measurement = { perSecond: head / ((performance.now() - t) / 1000) };
  ok = report('audit history index build', build, base, { atLeast: 0.1 }, 'events/s') && ok;
  console.log(`  ${seconds(build, head)} s, index ${(statSync(index).size / 2 ** 20).toFixed(0)} MiB`);
  for (const [name, argv] of [
    ['history --index --device (every event of its group)', ['--device', '0000:02:00.1']],
    ['history --index --context --kind ownership', ['--context', 'vm2', '--kind', 'ownership']],
  ] as const) {
    base = await baseline();
    const m = await measure(async () => (await run(['history', ...argv, '--index', index]), head), 3);
    ok = report(`audit ${name}`, m, base, { atLeast: 1 }, 'events/s') && ok;
    console.log(`  ${seconds(m, head)} s per answer`);
  }
  await store.close();
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function seconds(m: Measurement, covered: number): string {
  return (covered / m.perSecond).toFixed(2);
}
