import {
  decide, EVENT_SCHEMA_VERSION, evolve, IommuError, type Command, type IommuEvent, type Output, type State,
} from '@iommu-orch/core';
import { readAll, WrongExpectedVersionError, type EventStore, type NewEvent, type StoredEvent } from '@iommu-orch/store';
import { Observable, Subject } from 'rxjs';
import { systemClock, type Clock } from './clock.js';
import { parseCommand } from './command-schema.js';
import { HOST_STREAM, replay, toDomainEvent } from './replay.js';

export type ExecuteResult =
  | { readonly ok: true; readonly command: Command; readonly output: Output; readonly events: readonly StoredEvent[] }
  | { readonly ok: false; readonly command: Command; readonly error: IommuError };

export interface OrchestratorOptions {
  readonly streamId?: string;
  readonly clock?: Clock;
  /** Re-decide on fresh state this many times when another writer got in first. */
  readonly maxConflictRetries?: number;
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
  ) {
    this.position = position;
  }

  static async open(store: EventStore, options: OrchestratorOptions = {}): Promise<Orchestrator> {
    const streamId = options.streamId ?? HOST_STREAM;
    const { state, position } = await replay(store, { streamId });
    return new Orchestrator(store, state, position, streamId, options.clock ?? systemClock, options.maxConflictRetries ?? 16);
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

  private async executeNow(command: Command, commandId: string | undefined): Promise<ExecuteResult> {
    for (let attempt = 0; ; attempt++) {
      const decision = decide(this.current, command);
      if (!decision.ok) return { ok: false, command, error: decision.error };
      if (decision.events.length === 0) return { ok: true, command, output: decision.output, events: [] };
      const version = this.current.version;
      const meta = { time: this.clock.now(), commandId: commandId ?? `${this.streamId}:${version + 1}`, commandType: command.type };
      const batch: NewEvent[] = decision.events.map((e, i) => ({
        eventId: `${this.streamId}:${version + 1 + i}`,
        type: e.type,
        schemaVersion: EVENT_SCHEMA_VERSION,
        data: e.data,
        metadata: meta,
      }));
      try {
        const appended = await this.store.append(this.streamId, batch, { expectedVersion: version });
        this.current = decision.state;
        this.position = appended.lastPosition;
        const stored = batch.map((e, i) => ({
          ...e, position: appended.firstPosition + i, streamId: this.streamId, streamVersion: version + 1 + i,
        }));
        for (const e of stored) this.committed.next(e);
        return { ok: true, command, output: decision.output, events: stored };
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
