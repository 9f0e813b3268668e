/**
 * A writing process for the crash and multi-writer tests (run with tsx, reading the workspace sources):
 *   tsx --conditions=@iommu-orch/source support/log-writer.ts <db> <writer> <seed> <sequences> [--wait-go] [--snapshot-every N]
 * It opens the log, resumes after the last command of its own that the log holds (re-sending that one,
 * which must come back as a duplicate), and executes the rest with command ids <writer>-<index>.
 * Protocol on stdout, one line each, written synchronously so a kill loses nothing already reported:
 *   ready <resume>            after the log is open and replayed
 *   ok <i> <outcome> <positions> [dup]   after command i returned (outcome: accepted | refused:<code>)
 *   done <conflicts> <version> <state sha256>
 * With --wait-go it waits for a "go" line on stdin before executing anything.
 */
import { canonicalState } from '@iommu-orch/core';
import { Orchestrator } from '@iommu-orch/orchestrator';
import { readAll, sha256Hex, SqliteEventStore, WrongExpectedVersionError, type EventStore } from '@iommu-orch/store';
import { createInterface } from 'node:readline';
import { commandId, indexClock, writerCommands } from './log-writer-commands.js';
import { sayTo } from './say.js';

const [db, writer, seed, sequences, ...flags] = process.argv.slice(2);
if (!db || !writer || !seed || !sequences) throw new Error('usage: log-writer.ts <db> <writer> <seed> <sequences> [--wait-go] [--snapshot-every N]');
const say = (line: string): void => sayTo(1, line);
const flag = (name: string): string | undefined => flags[flags.indexOf(name) + 1];

const commands = writerCommands(Number(seed), Number(sequences));
const store = SqliteEventStore.open(db);
let conflicts = 0;
/** The store, counting the optimistic-concurrency conflicts its appends run into. */
const counting: EventStore = new Proxy(store, {
  get(target, key) {
    if (key === 'append') {
      return async (...args: Parameters<EventStore['append']>) => {
        try {
          return await target.append(...args);
        } catch (e) {
          if (WrongExpectedVersionError.is(e)) conflicts++;
          throw e;
        }
      };
    }
    const value = Reflect.get(target, key) as unknown;
    return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
  },
});

let resume = 0;
for await (const e of readAll(store)) {
  const m = /^(.+)-(\d+)$/.exec(e.metadata.commandId);
  if (m?.[1] === writer) resume = Math.max(resume, Number(m[2]) + 1);
}
const clock = indexClock();
const orchestrator = await Orchestrator.open(counting, { clock, snapshotEvery: Number(flag('--snapshot-every') ?? 1000) });
say(`ready ${resume}`);
if (flags.includes('--wait-go')) {
  for await (const line of createInterface({ input: process.stdin })) if (line.trim() === 'go') break;
}
for (let i = Math.max(0, resume - 1); i < commands.length; i++) {
  clock.index = i;
  const r = await orchestrator.execute(commands[i], { commandId: commandId(writer, i) });
  const outcome = r.ok ? 'accepted' : `refused:${r.error.code}`;
  const positions = r.ok ? r.events.map((e) => e.position).join(',') : '';
  say(`ok ${i} ${outcome} ${positions || '-'}${r.ok && r.duplicate ? ' dup' : ''}`);
}
say(`done ${conflicts} ${orchestrator.state.version} ${sha256Hex(canonicalState(orchestrator.state))}`);
await store.close();
process.exit(0);
