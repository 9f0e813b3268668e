import { canonicalJson, encodeValue, evolve, IommuError, type Command, type Json, type Output, type State } from '@iommu-orch/core';
import { readAll, WrongExpectedVersionError, type CommandRecord, type EventStore, type StoredEvent } from '@iommu-orch/store';
import { Observable, Subject } from 'rxjs';
import { applyCommand, type EventViolation } from './apply-command.js';
import { systemClock, type Clock } from './clock.js';
import { InputError, parseCommand } from './command-schema.js';
import { eventBatch } from './event-batch.js';
import type { Fault } from './faults.js';
import { HOST_STREAM, replay, toDomainEvent } from './replay.js';
import { snapshotOf } from './snapshots.js';
import { subscribeFrom, type SubscribeOptions } from './subscription.js';

export type ExecuteResult =
  | {
      readonly ok: true;
      readonly command: Command;
      readonly output: Output;
      readonly events: readonly StoredEvent[];
      /** Invariants the command's events broke, each after the event that broke it (empty when sound). */
      readonly violations: readonly EventViolation[];
      /** Set when the command id had been executed before: nothing was appended, this is the original result. */
      readonly duplicate?: true;
    }
  | { readonly ok: false; readonly command: Command; readonly error: IommuError };

export interface OrchestratorOptions {
  readonly streamId?: string;
  readonly clock?: Clock;
  /** Re-decide on fresh state this many times when another writer got in first. */
  readonly maxConflictRetries?: number;
  /** Check the invariants after every event (default true); results report what broke. */
  readonly checkInvariants?: boolean;
  /** A test-only fault (faults.ts); never set outside tests and the hidden --fault flag. */
  readonly fault?: Fault;
  /** Store a snapshot of the state each time the stream's version crosses a multiple of this (0: never). */
  readonly snapshotEvery?: number;
}

/** What the store keeps with a command id, so that a re-sent command gets its first answer back. */
interface CommandResult {
  readonly command: Json;
  readonly output: Output;
  readonly violations: readonly EventViolation[];
}

/**
 * Executes commands: validate (zod) -> decide -> append -> evolve -> publish.
 * - A refused command returns a typed error and writes nothing.
 * - Calls are serialised: the decide-append pair of one command never interleaves with another's.
 * - A version conflict (another process appended) folds in the new events and decides again.
 * - A command id makes execution idempotent: a command id the log already holds appends nothing and
 *   returns the original output and events (a different command under a used id is InputError).
 * - `events$` emits each committed event once, after its transaction committed, in log order.
 */
export class Orchestrator {
  private readonly committed = new Subject<StoredEvent>();
  readonly events$: Observable<StoredEvent> = this.committed.asObservable();
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly store: EventStore,
    private current: State,
    private position: number,
    private readonly streamId: string,
    private readonly clock: Clock,
    private readonly maxRetries: number,
    private readonly check: { readonly check: boolean; readonly fault: Fault | undefined },
    private readonly snapshotEvery: number,
  ) {}

  static async open(store: EventStore, options: OrchestratorOptions = {}): Promise<Orchestrator> {
    const streamId = options.streamId ?? HOST_STREAM;
    const { state, position } = await replay(store, { streamId });
    const check = { check: options.checkInvariants ?? true, fault: options.fault };
    return new Orchestrator(
      store, state, position, streamId, options.clock ?? systemClock, options.maxConflictRetries ?? 16, check, options.snapshotEvery ?? 1000,
    );
  }

  get state(): State {
    return this.current;
  }

  /**
   * Executes a command given typed or as raw JSON. Either is validated first: bad input throws
   * InputError (it is not a command the model refused, so no result is returned for it).
   */
  execute(input: Command | unknown, options: { commandId?: string } = {}): Promise<ExecuteResult> {
    const command = parseCommand(input);
    const run = this.queue.then(() => this.executeNow(command, options.commandId));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Like execute, but throws the IommuError of a refused command. */
  async executeOrThrow(input: Command | unknown, options: { commandId?: string } = {}): Promise<Output> {
    const r = await this.execute(input, options);
    if (!r.ok) throw r.error;
    return r.output;
  }

  /** History from `after`, then live events, without gap or duplicate (see subscription.ts). */
  subscribe(after: number, options: Omit<SubscribeOptions, 'wake$'> = {}): Observable<StoredEvent> {
    return subscribeFrom(this.store, after, { ...options, wake$: this.events$ });
  }

  private async executeNow(input: Command, commandId: string | undefined): Promise<ExecuteResult> {
    if (commandId !== undefined) {
      const prior = await this.store.findCommand(commandId);
      if (prior) return this.original(input, prior);
    }
    // A freeze is counted by event time: the command carries the same clock reading as its events.
    let time: string | undefined;
    let command = input;
    if (command.type === 'eehFreeze' && command.at === undefined) {
      time = this.clock.now();
      command = { ...command, at: Date.parse(time) };
    }
    for (let attempt = 0; ; attempt++) {
      const decision = applyCommand(this.current, command, this.check);
      if (!decision.ok) return { ok: false, command, error: decision.error };
      if (decision.events.length === 0) return { ok: true, command, output: decision.output, events: [], violations: [] };
      const version = this.current.version;
      const batch = eventBatch(this.streamId, version, decision.events, { time: time ?? this.clock.now(), commandType: command.type, commandId });
      const every = this.snapshotEvery;
      const snapshot = every > 0 && Math.floor(decision.state.version / every) > Math.floor(version / every) ? snapshotOf(decision.state) : undefined;
      // The command as the caller sent it: a re-send with the same id compares against this.
      const result: CommandResult = { command: encodeValue(input), output: decision.output, violations: decision.violations };
      try {
        const appended = await this.store.append(this.streamId, batch, {
          expectedVersion: version,
          ...(commandId !== undefined && { commandId, commandResult: result }),
          ...(snapshot && { snapshot }),
        });
        if (appended.duplicate) {
          // Another writer committed this command id between our lookup and our append.
          return this.original(input, (await this.store.findCommand(commandId!))!);
        }
        this.current = decision.state;
        this.position = appended.lastPosition;
        const stored = batch.map((e, i) => ({
          ...e, position: appended.firstPosition + i, streamId: this.streamId, streamVersion: version + 1 + i,
        }));
        for (const e of stored) this.committed.next(e);
        return { ok: true, command, output: decision.output, events: stored, violations: decision.violations };
      } catch (e) {
        if (!WrongExpectedVersionError.is(e) || attempt >= this.maxRetries) throw e;
        await this.catchUp();
      }
    }
  }

  /** The first result of a command id the log already holds; its events are folded in first. */
  private async original(command: Command, prior: CommandRecord): Promise<ExecuteResult> {
    const recorded = prior.result as CommandResult;
    if (canonicalJson(recorded.command) !== canonicalJson(encodeValue(command))) {
      throw new InputError(`command id ${prior.commandId} was already used for a different command (${String((recorded.command as { type?: Json }).type)})`);
    }
    await this.catchUp();
    const events = await this.store.read(prior.firstPosition - 1, prior.lastPosition - prior.firstPosition + 1);
    return { ok: true, command, output: recorded.output, events, violations: recorded.violations, duplicate: true };
  }

  /** Folds in events other writers appended since our last position. */
  async catchUp(): Promise<void> {
    for await (const stored of readAll(this.store, this.position)) {
      if (stored.streamId === this.streamId) this.current = evolve(this.current, toDomainEvent(stored));
      this.position = stored.position;
      this.committed.next(stored);
    }
  }

  complete(): void {
    this.committed.complete();
  }
}
