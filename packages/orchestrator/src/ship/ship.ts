import { PostgresEventStore, SqliteEventStore, StoreError } from '@iommu-orch/store';

/**
 * Shipping: copies one host's SQLite log into the central PostgreSQL database under the host's name.
 *
 * Rows go over verbatim (positions, ids, payload bytes, hashes) with the command records and snapshots
 * they carry, so the chain verifies centrally with the same genesis. The central log's head is the only
 * resume point: every round reads it and sends the source rows after it, and the import re-checks under
 * the log's row lock that each row continues the positions, the hash chain and its stream's versions.
 * So a shipper killed at any moment (or two racing for one host) leaves no gap and no duplicate: a
 * batch commits whole or not at all, and rows already there are compared and skipped.
 */
export interface ShipOptions {
  /** The host's SQLite log (opened read-only; the host may keep appending). */
  readonly db: string;
  /** PostgreSQL connection URL. */
  readonly to: string;
  readonly host: string;
  /** Keep shipping as the host appends, until `signal` aborts. */
  readonly follow?: boolean;
  readonly signal?: AbortSignal;
  /** Rows per batch (one transaction each). */
  readonly batchSize?: number;
  /** How often --follow looks for new rows in the SQLite file (ms). */
  readonly pollMs?: number;
  /** Called after each committed batch with the central head. */
  readonly onBatch?: (head: number, imported: number) => void;
}

export interface ShipReport {
  readonly host: string;
  readonly logId: string;
  /** Rows this run added centrally (0 when everything was there already). */
  readonly shipped: number;
  /** The central head after the run: position and chain hash. */
  readonly head: number;
  readonly headHash: string;
}

export async function shipLog(o: ShipOptions): Promise<ShipReport> {
  const batchSize = o.batchSize ?? 1000;
  const source = SqliteEventStore.open(o.db, { readonly: true });
  let central: PostgresEventStore | undefined;
  try {
    const logId = await source.logId();
    if (logId === null) throw new StoreError('CORRUPT', `${o.db} predates the hash chain (store schema 1): open it for writing once to add the chain`);
    // One connection: a shipper runs one statement at a time, and fifty of them share one server.
    central = PostgresEventStore.open(o.to, { host: o.host, logId, maxConnections: 1 });
    const centralId = await central.logId();
    if (centralId !== logId) {
      throw new StoreError('LOG_MISMATCH', `host ${o.host} already holds another log in the database (log id ${centralId}, this file has ${logId})`);
    }
    let head = await central.head();
    let shipped = 0;
    for (;;) {
      if (o.signal?.aborted) break;
      const records = await source.readRecords(head, batchSize);
      if (records.length === 0) {
        if (!o.follow) break;
        await sleep(o.pollMs ?? 200, o.signal);
        continue;
      }
      const through = records[records.length - 1]!.position;
      const [commands, snapshots] = await Promise.all([source.readCommands(head, through), source.readSnapshots(head, through)]);
      const r = await central.importBatch({ records, commands, snapshots });
      shipped += r.imported;
      head = r.head;
      o.onBatch?.(head, r.imported);
    }
    const last = head === 0 ? [] : await central.readRecords(head - 1, 1);
    return { host: o.host, logId, shipped, head, headHash: last[0]?.hash ?? '' };
  } finally {
    await Promise.all([source.close(), central?.close()]);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
