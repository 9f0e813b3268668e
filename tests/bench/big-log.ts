import { logicalClock, Orchestrator } from '@iommu-orch/orchestrator';
import {
  SqliteEventStore, type AppendOptions, type AppendResult, type CommandRecord, type EventRecord, type EventStore, type FoldRow, type NewEvent, type Snapshot, type StoredEvent,
} from '@iommu-orch/store';
import { runWorkload } from '../support/workload.js';

/**
 * Writes a big event log for the audit benchmark: the seeded workload, driven through the Orchestrator,
 * until the log holds `events` events. The Orchestrator appends one command per transaction; with
 * synchronous=FULL that is one fsync per command, hours for a million events. So the bench puts a
 * write-behind buffer between them: appends are collected and committed to SQLite in large batches,
 * in order, with the expected version checked by the store on every batch. The resulting file is the
 * same log a command-by-command run would write (same rows, positions, ids and metadata), without the
 * per-command records and snapshots: the audit reads neither.
 */
class WriteBehindStore implements EventStore {
  private pending: NewEvent[] = [];
  private committedVersion = 0;
  private version = 0;

  constructor(
    private readonly inner: SqliteEventStore,
    private readonly streamId: string,
    private readonly batch: number,
  ) {}

  async append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> {
    if (streamId !== this.streamId || options.expectedVersion !== this.version) {
      throw new Error(`write-behind store: unexpected append to ${streamId} at ${String(options.expectedVersion)}`);
    }
    this.pending.push(...events);
    const firstPosition = this.version + 1;
    this.version += events.length;
    if (this.pending.length >= this.batch) this.flush();
    return { firstPosition, lastPosition: this.version, nextExpectedVersion: this.version, duplicate: false };
  }

  flush(): void {
    if (this.pending.length === 0) return;
    this.inner.appendSync(this.streamId, this.pending, { expectedVersion: this.committedVersion });
    this.committedVersion = this.version;
    this.pending = [];
  }

  async read(after: number, limit: number): Promise<StoredEvent[]> {
    this.flush();
    return this.inner.read(after, limit);
  }

  async readFold(after: number, limit: number): Promise<FoldRow[]> {
    this.flush();
    return this.inner.readFold(after, limit);
  }

  async head(): Promise<number> {
    this.flush();
    return this.inner.head();
  }

  async streamVersion(streamId: string): Promise<number> {
    this.flush();
    return this.inner.streamVersion(streamId);
  }

  async readRecords(after: number, limit: number): Promise<EventRecord[]> {
    this.flush();
    return this.inner.readRecords(after, limit);
  }

  async findCommand(): Promise<CommandRecord | null> {
    return null;
  }

  async logId(): Promise<string | null> {
    return this.inner.logId();
  }

  async latestSnapshot(): Promise<Snapshot | null> {
    return null;
  }

  async close(): Promise<void> {
    this.flush();
  }
}

/** Writes the workload log into a new SQLite file; returns its event count. */
export async function writeBigLog(file: string, events: number, seed = 7): Promise<number> {
  const sqlite = SqliteEventStore.open(file);
  try {
    const store = new WriteBehindStore(sqlite, 'host', 20_000);
    const orch = await Orchestrator.open(store, { clock: logicalClock('2026-03-01T00:00:00.000Z', 250) });
    await runWorkload(orch, { seed, events, record: false });
    await store.close();
    return await sqlite.head();
  } finally {
    await sqlite.close();
  }
}
