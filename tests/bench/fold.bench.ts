/**
 * The fold alone (`pnpm bench fold`): core's `evolve` over the replay benchmarks' two logs (workloads.ts),
 * the events already in memory as replay gets them from the store (JSON-parsed payloads). Baseline, in
 * the same run: JSON.parse of the same events' stored text (data and metadata), the least a replay of
 * them can cost, so "fold vs parse" says how much of a replay the fold takes.
 * - transient: pages of 1000 events, each folded inside one `withTransientTables` call, as replay does;
 * - persistent: one `evolve` after another with every intermediate state kept valid, as decide and the
 *   audit's per-event scans do.
 * Target: the transient fold at least 0.5x the parse. Replay = read + fold, so with a read path near
 * the raw read (SELECT + the same parse, about half this parse rate here) a fold at half the parse rate
 * keeps replay at about 0.5x the raw read, the target of issue #3.
 */
import { evolve, initialState, withTransientTables, type IommuEvent, type State } from '@iommu-orch/core';
import { measureTogether, report } from './harness.js';
import { eventsOf, replayWorkloads } from './workloads.js';

const PAGE = 1000;
const ROUNDS = 9;

function foldTransient(events: readonly IommuEvent[]): number {
  let state: State = initialState;
  for (let i = 0; i < events.length; i += PAGE) {
    const from = state;
    state = withTransientTables(() => {
      let s = from;
      for (let k = i; k < Math.min(events.length, i + PAGE); k++) s = evolve(s, events[k]!);
      return s;
    });
  }
  return state.version;
}

function foldPersistent(events: readonly IommuEvent[]): number {
  let state: State = initialState;
  for (const e of events) state = evolve(state, e);
  return state.version;
}

const results: boolean[] = [];
for (const [name, commands] of replayWorkloads()) {
  const stored = eventsOf(commands).map((e) => ({ type: e.type, data: JSON.stringify(e.data), metadata: JSON.stringify(e.metadata) }));
  const events = stored.map((e) => ({ type: e.type, data: JSON.parse(e.data) as unknown }) as IommuEvent);
  const parse = (): number => {
    for (const e of stored) {
      JSON.parse(e.data);
      JSON.parse(e.metadata);
    }
    return stored.length;
  };
  console.log(`fold, ${name} (${events.length} events; events/s)`);
  // Measured apart: the persistent fold's garbage (a 4 KiB leaf copy per TCE event) would land in the
  // garbage collections of whatever runs after it.
  const [transient, parsedWithTransient] = await measureTogether([() => foldTransient(events), parse], ROUNDS);
  results.push(report('  transient fold (pages of 1000) vs JSON.parse of the events', transient!, parsedWithTransient!, { atLeast: 0.5 }, 'ev/s'));
  const [persistent, parsedWithPersistent] = await measureTogether([() => foldPersistent(events), parse], ROUNDS);
  console.log(`  persistent fold: ${Math.round(persistent!.perSecond / 1000)}k ev/s = ${(persistent!.perSecond / parsedWithPersistent!.perSecond).toFixed(2)}x JSON.parse`);
}
console.log(`${results.filter(Boolean).length}/${results.length} targets met`);
