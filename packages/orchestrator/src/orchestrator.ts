import { evolve, IommuError, type Command, type IommuEvent, type Output, type State } from '@iommu-orch/core';
import { readAll, WrongExpectedVersionError, type EventStore, type StoredEvent } from '@iommu-orch/store';
import { Observable, Subject } from 'rxjs';
import { applyCommand, type EventViolation } from './apply-command.js';
import { systemClock, type Clock } from './clock.js';
import { parseCommand } from './command-schema.js';
import { eventBatch } from './event-batch.js';
import type { Fault } from './faults.js';
import { HOST_STREAM, replay, toDomainEvent } from './replay.js';

export type ExecuteResult =
  | {
      readonly ok: true;
      readonly command: Command;
      readonly output: Output;
      readonly events: readonly StoredEvent[];
      /** Invariants the command's events broke, each after the event that broke it (empty when sound). */
      readonly violations: readonly EventViolation[];
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
}

/**
 * Executes commands: validate (zod) -> decide -> append -> evolve -> publish.
 * - A refused command returns a typed error and writes nothing.
 * - Calls are serialised: the decide-append pair of one command never interleaves with another's.
 * - A version conflict (another process appended) folds in the new events and decides again.
 * - `events$` emits each committed event once, after its transaction committed, in log order.
 */
export class Orchestrator {
  private readonly committed = new Subject<StoredEvent>();
  readonly events$: Observable<StoredEvent> = this.committed.asObservable();
  private queue: Promise<unknown> = Promise.resolve();
  private position: number;

  private constructor(
    readonly store: EventStore,
    private current: State,
    position: number,
    private readonly streamId: string,
    private readonly clock: Clock,
    private readonly maxRetries: number,
    private readonly check: { readonly check: boolean; readonly fault: Fault | undefined },
  ) {
    this.position = position;
  }

  static async open(store: EventStore, options: OrchestratorOptions = {}): Promise<Orchestrator> {
    const streamId = options.streamId ?? HOST_STREAM;
    const { state, position } = await replay(store, { streamId });
    return new Orchestrator(store, state, position, streamId, options.clock ?? systemClock, options.maxConflictRetries ?? 16, {
      check: options.checkInvariants ?? true,
      fault: options.fault,
    });
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
  async executeOrThrow(input: Command | unknown): Promise<Output> {
    const r = await this.execute(input);
    if (!r.ok) throw r.error;
    return r.output;
  }

  private async executeNow(input: Command, commandId: string | undefined): Promise<ExecuteResult> {
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
      try {
        const appended = await this.store.append(this.streamId, batch, { expectedVersion: version });
        this.current = decision.state;
        this.position = appended.lastPosition;
        const stored = batch.map((e, i) => ({
          ...e, position: appended.firstPosition + i, streamId: this.streamId, streamVersion: version + 1 + i,
        }));
        for (const e of stored) this.committed.next(e);
        return { ok: true, command, output: decision.output, events: stored, violations: decision.violations };
      } catch (e) {
        if (!(e instanceof WrongExpectedVersionError) || attempt >= this.maxRetries) throw e;
        await this.catchUp();
      }
    }
  }

  /** Folds in events other writers appended since our last position. */
  async catchUp(): Promise<void> {
    for await (const stored of readAll(this.store, this.position)) {
      if (stored.streamId === this.streamId) this.current = evolve(this.current, toDomainEvent(stored) as IommuEvent);
      this.position = stored.position;
      this.committed.next(stored);
    }
  }

  complete(): void {
    this.committed.complete();
  }
}
