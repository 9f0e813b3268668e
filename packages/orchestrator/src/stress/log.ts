import { createHash } from 'node:crypto';
import { readAll, type EventStore, type NewEvent, type SqliteEventStore } from '@iommu-orch/store';

/**
 * Batched appends for the stress runner: the runner owns the connection, so it appends synchronously
 * and commits thousands of events per transaction (one fsync each) instead of one per command. A
 * restart happens only after a flush: what the log holds is then exactly what the live state folded.
 */
export class LogWriter {
  private pending: NewEvent[] = [];

  constructor(
    private readonly store: SqliteEventStore,
    private readonly streamId: string,
    private version: number,
    private readonly batchSize = 4096,
  ) {}

  add(events: readonly NewEvent[]): void {
    for (const e of events) this.pending.push(e);
    if (this.pending.length >= this.batchSize) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    this.store.appendSync(this.streamId, this.pending, { expectedVersion: this.version });
    this.version += this.pending.length;
    this.pending = [];
  }
}

/**
 * SHA-256 over every stored row, in position order, field by field as stored: two logs are
 * byte-identical exactly when their digests are equal.
 */
export async function logDigest(store: EventStore): Promise<string> {
  const hash = createHash('sha256');
  for await (const e of readAll(store, 0, 5000)) {
    hash.update(`${e.position}\t${e.streamId}\t${e.streamVersion}\t${e.eventId}\t${e.type}\t${e.schemaVersion}\t${JSON.stringify(e.data)}\t${JSON.stringify(e.metadata)}\n`);
  }
  return hash.digest('hex');
}
