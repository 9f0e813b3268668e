import { randomUUID } from 'node:crypto';
import { checkExpectedVersion, StoreError } from './errors.js';
import type {
  AppendOptions, AppendResult, CommandRecord, EventRecord, EventStore, FoldRow, NewEvent, Snapshot, StoredEvent,
} from './event-store.js';
import { jsonText, parseMetadata } from './event-store.js';
import { chainHash, genesisHash, sha256Hex } from './hash-chain.js';

/** The shared log behind one or more MemoryEventStore connections. */
interface MemoryLog {
  readonly logId: string;
  readonly records: EventRecord[];
  readonly versions: Map<string, number>;
  readonly eventIds: Set<string>;
  readonly commands: Map<string, CommandRecord>;
  readonly snapshots: Snapshot[];
  head: string;
}

/**
 * An in-memory engine with the same contract as the SQLite store. Rows are kept as the JSON text a real
 * engine stores, so a reader never shares objects with the writer, and the hash chain covers the same
 * bytes. `connect()` opens a second connection to the same log (the contract's concurrent writers).
 */
export class MemoryEventStore implements EventStore {
  private readonly log: MemoryLog;

  constructor(options: { logId?: string } | MemoryLog = {}) {
    if ('records' in options) {
      this.log = options;
    } else {
      const logId = options.logId ?? randomUUID();
      this.log = {
        logId, records: [], versions: new Map(), eventIds: new Set(), commands: new Map(), snapshots: [], head: genesisHash(logId),
      };
    }
  }

  connect(): MemoryEventStore {
    return new MemoryEventStore(this.log);
  }

  async append(streamId: string, events: readonly NewEvent[], options: AppendOptions): Promise<AppendResult> {
    const log = this.log;
    const prior = options.commandId === undefined ? undefined : log.commands.get(options.commandId);
    if (prior) return { firstPosition: prior.firstPosition, lastPosition: prior.lastPosition, nextExpectedVersion: prior.nextExpectedVersion, duplicate: true };
    const actual = log.versions.get(streamId) ?? 0;
    checkExpectedVersion(streamId, options.expectedVersion, actual);
    const batch = new Set<string>();
    for (const e of events) {
      if (log.eventIds.has(e.eventId) || batch.has(e.eventId)) throw new StoreError('DUPLICATE_EVENT_ID', `event id ${e.eventId} is already in the log`);
      batch.add(e.eventId);
    }
    const texts = events.map((e) => ({ data: jsonText(e.data), metadata: jsonText(e.metadata) }));
    const result = jsonText(options.commandResult ?? null);
    // Everything that can fail has run: from here on the append is all or nothing.
    const firstPosition = log.records.length + 1;
    let version = actual;
    events.forEach((e, i) => {
      version++;
      const row = {
        position: log.records.length + 1, streamId, streamVersion: version, eventId: e.eventId, type: e.type, schemaVersion: e.schemaVersion, ...texts[i]!,
      };
      log.head = chainHash(log.head, row);
      log.records.push({ ...row, hash: log.head });
      log.eventIds.add(e.eventId);
    });
    const appended = { firstPosition, lastPosition: log.records.length, nextExpectedVersion: version, duplicate: false };
    if (events.length === 0) return appended;
    log.versions.set(streamId, version);
    if (options.commandId !== undefined) {
      log.commands.set(options.commandId, {
        commandId: options.commandId, streamId, firstPosition, lastPosition: appended.lastPosition, nextExpectedVersion: version,
        result: JSON.parse(result) as unknown,
      });
    }
    if (options.snapshot) {
      log.snapshots.push({
        streamId, position: appended.lastPosition, streamVersion: version, format: options.snapshot.format,
        stateHash: sha256Hex(options.snapshot.state), logHash: log.head, state: options.snapshot.state,
      });
    }
    return appended;
  }

  async read(after: number, limit: number): Promise<StoredEvent[]> {
    return (await this.readRecords(after, limit)).map((r) => ({
      position: r.position,
      streamId: r.streamId,
      streamVersion: r.streamVersion,
      eventId: r.eventId,
      type: r.type,
      schemaVersion: r.schemaVersion,
      data: JSON.parse(r.data) as unknown,
      metadata: parseMetadata(r.metadata),
    }));
  }

  async readFold(after: number, limit: number): Promise<FoldRow[]> {
    return (await this.readRecords(after, limit)).map((r) => ({
      position: r.position, streamId: r.streamId, type: r.type, schemaVersion: r.schemaVersion, data: JSON.parse(r.data) as unknown, metadataText: r.metadata,
    }));
  }

  async readRecords(after: number, limit: number): Promise<EventRecord[]> {
    return this.log.records.slice(after, after + limit);
  }

  async head(): Promise<number> {
    return this.log.records.length;
  }

  async streamVersion(streamId: string): Promise<number> {
    return this.log.versions.get(streamId) ?? 0;
  }

  async findCommand(commandId: string): Promise<CommandRecord | null> {
    return this.log.commands.get(commandId) ?? null;
  }

  async logId(): Promise<string> {
    return this.log.logId;
  }

  async latestSnapshot(streamId: string, position: number): Promise<Snapshot | null> {
    let best: Snapshot | null = null;
    for (const s of this.log.snapshots) if (s.streamId === streamId && s.position <= position && (!best || s.position > best.position)) best = s;
    return best;
  }

  async close(): Promise<void> {}
}
