import { WrongExpectedVersionError } from './errors.js';
import type { AppendOptions, AppendResult, EventStore, NewEvent, StoredEvent } from './event-store.js';

/**
 * An in-memory engine with the same contract as the SQLite store (the contract tests run on both).
 * Events are kept as JSON text, as a real engine stores them, so a reader never shares objects with
 * the writer.
 */
export class MemoryEventStore implements EventStore {
  private readonly rows: { position: number; streamId: string; streamVersion: number; json: string }[] = [];
  private readonly versions = new Map<string, number>();
  private readonly ids = new Set<string>();

  async append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> {
    const actual = this.versions.get(streamId) ?? 0;
    const e = options.expectedVersion;
    const ok = e === 'any' || (e === 'no_stream' && actual === 0) || (e === 'stream_exists' && actual > 0) || e === actual;
    if (!ok) throw new WrongExpectedVersionError(streamId, e, actual);
    const batch = new Set<string>();
    for (const ev of events) {
      if (this.ids.has(ev.eventId) || batch.has(ev.eventId)) throw new Error(`duplicate event id ${ev.eventId}`);
      batch.add(ev.eventId);
    }
    const firstPosition = this.rows.length + 1;
    let version = actual;
    for (const ev of events) {
      version++;
      this.rows.push({ position: this.rows.length + 1, streamId, streamVersion: version, json: JSON.stringify(ev) });
      this.ids.add(ev.eventId);
    }
    if (events.length > 0) this.versions.set(streamId, version);
    return { firstPosition, lastPosition: this.rows.length, nextExpectedVersion: version };
  }

  async read(after: number, limit: number): Promise<StoredEvent[]> {
    return this.rows.slice(after, after + limit).map((r) => ({
      ...(JSON.parse(r.json) as NewEvent),
      position: r.position,
      streamId: r.streamId,
      streamVersion: r.streamVersion,
    }));
  }

  async head(): Promise<number> {
    return this.rows.length;
  }

  async streamVersion(streamId: string): Promise<number> {
    return this.versions.get(streamId) ?? 0;
  }

  async close(): Promise<void> {}
}
