import { canonicalState, initialState, invariants, type Command, type State } from '@iommu-orch/core';
import { SqliteEventStore } from '@iommu-orch/store';
import { applyCommand } from '../apply-command.js';
import { logicalClock } from '../clock.js';
import { InputError } from '../command-schema.js';
import { eventBatch } from '../event-batch.js';
import type { Fault } from '../faults.js';
import { HOST_STREAM, replay } from '../replay.js';
import type { StepOutcome } from '../sagas/saga.js';
import { Actor, STRESS_MIX, type StressOp, type World } from './actors.js';
import { LogWriter, logDigest } from './log.js';
import { Prng } from './prng.js';
import { bootCommands, stressSlots, type StressTopology } from './topology.js';

/**
 * The stress runner: K actors run sagas against one host, and a seeded scheduler picks, op by op,
 * whose next step runs, so multi-step operations interleave (attach during removal, map during
 * removal, SR-IOV disable during a VF attach, two contexts racing for one group). Each op is one
 * command through `applyCommand`, the orchestrator's own pure step, with the invariants checked after
 * every event; accepted events go to the SQLite log in batches.
 *
 * Deterministic: the PRNG (seeded by --seed) and a logical clock are the only inputs, so the same
 * arguments give a byte-identical log. The first broken invariant stops the run.
 *
 * --crash-every M: every M ops the runner "dies": the log is closed, reopened and replayed, the replay
 * must equal the live state (and pass every invariant), and the actors restart with nothing in
 * flight; removals a lost saga had begun are found again from the state and finished.
 */
export interface StressOptions {
  readonly seed: number;
  readonly ops: number;
  readonly actors: number;
  readonly db: string;
  readonly topology: StressTopology;
  readonly crashEvery?: number | undefined;
  /** Check the invariants after every event (default true); the benchmark's baseline turns it off. */
  readonly check?: boolean;
  readonly fault?: Fault | undefined;
  readonly progress?: (done: number, total: number) => void;
  /** Weights replacing the default ones for some kinds of op (see STRESS_MIX). */
  readonly mix?: Partial<Record<StressOp, number>>;
}

export interface StressViolation {
  /** Ops run before the one that broke the rule (boot commands are not ops). */
  readonly op: number;
  readonly command: Command | null;
  readonly rule: string;
  readonly detail: string;
}

export interface StressReport {
  readonly seed: number;
  readonly ops: number;
  readonly actors: number;
  /** Events in the log, boot included. */
  readonly events: number;
  /** Commands that built the topology (logged, not counted as ops). */
  readonly boot: number;
  /** Ops accepted (the rest were refused, counted by code in `rejected`). */
  readonly accepted: number;
  readonly rejected: Readonly<Record<string, number>>;
  readonly sagas: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly violations: readonly StressViolation[];
  readonly crashes: number;
  readonly elapsedMs: number;
  readonly logDigest: string;
  /** Accepted commands in order, boot included: the material a reproduction is cut from. */
  readonly history: readonly Command[];
  readonly state: State;
}

/** Event time of op 0; each op is one second later, so freezes spread over hours of event time. */
const EVENT_EPOCH = Date.parse('2026-01-01T00:00:00.000Z');

export async function runStress(o: StressOptions): Promise<StressReport> {
  const check = o.check ?? true;
  const started = performance.now();
  const boot = bootCommands(o.topology);
  requireBootable(o.topology.name, boot);
  // The log id (the hash chain's genesis) comes from the arguments too, so the same arguments give
  // byte-identical files, hashes included.
  let store = SqliteEventStore.open(o.db, { logId: `stress seed=${o.seed} ops=${o.ops} actors=${o.actors} topology=${o.topology.name}` });
  const head = await store.head();
  if (head > 0) {
    await store.close();
    throw new InputError(`${o.db} already holds ${head} events; stress writes a new log`);
  }
  const rng = new Prng(o.seed);
  const clock = logicalClock();
  let state: State = initialState;
  let writer = new LogWriter(store, HOST_STREAM, 0);
  const history: Command[] = [];
  const rejected: Record<string, number> = {};
  const sagas: Record<string, Record<string, number>> = {};
  const violations: StressViolation[] = [];
  let events = 0;
  let accepted = 0;
  let op = 0;
  let crashes = 0;

  const exec = (command: Command): StepOutcome => {
    const a = applyCommand(state, command, { check, fault: o.fault });
    if (!a.ok) {
      rejected[a.error.code] = (rejected[a.error.code] ?? 0) + 1;
      return { ok: false, code: a.error.code };
    }
    accepted++;
    if (a.events.length > 0) {
      writer.add(eventBatch(HOST_STREAM, state.version, a.events, { time: clock.now(), commandType: command.type }));
      events += a.events.length;
    }
    state = a.state;
    history.push(command);
    for (const v of a.violations) violations.push({ op, command, rule: v.rule, detail: v.detail });
    return { ok: true, output: a.output };
  };
  const fullCheck = (s: State) => {
    for (const v of invariants(s)) violations.push({ op, command: null, rule: v.rule, detail: v.detail });
  };
  const crash = async () => {
    writer.flush();
    ({ store, writer, state } = await restart(store, o.db, state, violations, op));
  };

  try {
    for (const c of boot) exec(c);
    accepted = 0;
    if (check) fullCheck(state);
    const world: World = {
      rng,
      view: () => state,
      now: () => EVENT_EPOCH + op * 1000,
      mix: { ...STRESS_MIX, ...o.mix },
      slots: stressSlots(o.topology),
      drivers: new Map(
        history.flatMap((c) => (c.type === 'addDevice' ? [c] : c.type === 'enableSlot' ? [...(c.devices ?? [])] : []))
          .flatMap((d) => (d.driver ? [[d.bdf, d.driver] as const] : [])),
      ),
    };
    const actors = Array.from({ length: o.actors }, (_, i) => new Actor(`vm${i + 1}`));
    let idle = 0;
    while (op < o.ops && violations.length === 0) {
      const actor = actors[rng.int(actors.length)]!;
      const command = actor.next(world);
      if (command === null) {
        if (++idle > actors.length * 1000) throw new Error('stress runner stalled: no actor has anything to run');
        continue;
      }
      idle = 0;
      const result = actor.feed(exec(command));
      if (result) {
        const bySaga = (sagas[result.saga] ??= {});
        bySaga[result.outcome] = (bySaga[result.outcome] ?? 0) + 1;
      }
      op++;
      if (o.progress && op % 1000 === 0) o.progress(op, o.ops);
      if (o.crashEvery && op % o.crashEvery === 0 && op < o.ops && violations.length === 0) {
        await crash();
        for (const a of actors) a.reset();
        crashes++;
      }
    }
    writer.flush();
    if (violations.length === 0 && check) fullCheck(state);
    if (o.crashEvery && violations.length === 0) await crash();
    o.progress?.(op, o.ops);
    const digest = await logDigest(store);
    return {
      seed: o.seed, ops: op, actors: o.actors, events, boot: boot.length, accepted, rejected, sagas, violations, crashes,
      elapsedMs: performance.now() - started, logDigest: digest, history, state,
    };
  } finally {
    writer.flush();
    await store.close();
  }
}

/** A topology the model refuses is bad input: found before anything is written. */
function requireBootable(name: string, boot: readonly Command[]): void {
  let s = initialState;
  for (const c of boot) {
    const a = applyCommand(s, c, { check: false });
    if (!a.ok) throw new InputError(`topology ${name}: ${c.type} ${'bdf' in c ? c.bdf : 'slot' in c ? c.slot : ''} refused: ${a.error.code} ${a.error.message}`);
    s = a.state;
  }
}

/** Kill and restart: flush, close, reopen, replay; the replay must equal the live state. */
async function restart(store: SqliteEventStore, db: string, live: State, violations: StressViolation[], op: number) {
  await store.close();
  const reopened = SqliteEventStore.open(db);
  const { state } = await replay(reopened);
  if (canonicalState(state) !== canonicalState(live)) {
    violations.push({ op, command: null, rule: 'replay-equals-live', detail: `the state replayed from ${db} after ${op} ops differs from the live state` });
  }
  for (const v of invariants(state)) violations.push({ op, command: null, rule: v.rule, detail: `after restart: ${v.detail}` });
  return { store: reopened, writer: new LogWriter(reopened, HOST_STREAM, state.version), state };
}
