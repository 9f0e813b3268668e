import { toHex, type State } from '@iommu-orch/core';
import { createHash } from 'node:crypto';
import type { EventStore, StoredEvent } from '@iommu-orch/store';
import Database from 'better-sqlite3';
import { InputError } from '../command-schema.js';
import { HOST_STREAM } from '../replay.js';
import { CATEGORIES, entityKey, type Category, type Entity } from './concerns.js';
import { HistoryRecorder, sortPeriods, type CommandRows, type History, type HistoryEntry, type OpenPeriods, type OwnershipPeriod } from './history.js';
import { initialPoint, scanLog, type Bound, type ScanPoint, type ScanStep } from './scan.js';

/**
 * A sidecar index of history: a separate SQLite file the audit keeps beside the log, never inside it.
 * It holds every command with the one-line descriptions of its events, for every entity (device, group,
 * context) the commands that concern it, and the ownership periods; `audit history --index <file>`
 * answers from it without a pass over the log.
 *
 * It is brought up to date before each answer, from where it stopped: the tail of the log is folded
 * (relations only, as history needs) starting from the state the index saved, and written in chunks, each
 * chunk one transaction that also moves the saved state and position. Several auditors may share one
 * index: a chunk commits only if nobody else moved the position meanwhile, else the auditor continues from
 * theirs. The audited log is only read. An index that does not belong to the log (another file, a log
 * rewritten below the indexed position) is emptied and rebuilt.
 *
 * Rows are packed so that a million events make a few hundred thousand rows, not millions: one row per
 * command (its events as JSON), and per entity one row per chunk listing the commands that concern it.
 */
const FORMAT = '3';
const CHUNK = 50_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commands (
  first INTEGER PRIMARY KEY, last INTEGER NOT NULL, command_id TEXT NOT NULL, command TEXT NOT NULL,
  last_ms REAL NOT NULL, kinds INTEGER NOT NULL, events TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS concerns (key TEXT NOT NULL, chunk INTEGER NOT NULL, firsts BLOB NOT NULL, PRIMARY KEY (key, chunk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
  key TEXT NOT NULL, subject TEXT NOT NULL, owner TEXT NOT NULL,
  from_pos INTEGER NOT NULL, from_time TEXT NOT NULL, to_pos INTEGER NOT NULL, to_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS owners_by_key ON owners (key, from_pos);
`;

/** A command's events as stored: [position, time, type, category, summary]. */
type PackedEvent = [number, string, string, Category, string];

interface Meta {
  readonly stream: string;
  /** Fingerprints of the events at position 1 and at `position`: the log the index was built from. */
  readonly firstEvent: string;
  readonly lastEvent: string;
  readonly position: number;
  readonly time: string | null;
  readonly state: string;
  readonly open: string;
}

class Concurrent extends Error {}

export interface IndexedHistoryOptions {
  readonly to?: Bound;
  readonly streamId?: string;
  /** Only entries of these kinds (commands without one are not even read). */
  readonly kinds?: ReadonlySet<Category>;
  /** Events per committed chunk (default CHUNK). */
  readonly chunk?: number;
}

/** Brings the index at `file` up to the log's head, then answers from it. */
export async function indexedHistory(store: EventStore, file: string, entity: Entity, options: IndexedHistoryOptions = {}): Promise<History> {
  const db = openIndex(file);
  try {
    const head = await store.head();
    await catchUp(db, store, options.streamId ?? HOST_STREAM, head, options.chunk ?? CHUNK);
    return query(db, entity, head, options.to, options.kinds);
  } finally {
    db.close();
  }
}

/** Marks files that are history indexes ("IOHI"), as the store marks event logs. */
const APP_ID = 0x494f4849;

/**
 * Opens or creates the index. A SQLite file that is not an index (an event log, anyone's database) is
 * refused before anything is written to it; an index of an older format is emptied and re-created.
 */
function openIndex(file: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { timeout: 60_000 });
    const appId = db.pragma('application_id', { simple: true }) as number;
    const tables = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((t) => t.name);
    if (tables.length > 0 && appId !== APP_ID) throw new InputError(`${file} is a SQLite database but not a history index; it is left as it is`);
    db.pragma('journal_mode = WAL');
    // A cache of the log: losing its last chunk to a power cut costs a re-index, never a wrong answer
    // (a chunk commits with the position it reaches, so the index is never ahead of what it holds).
    db.pragma('synchronous = NORMAL');
    const format = tables.includes('meta') ? db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'format'").get()?.value : undefined;
    if (format !== undefined && format !== FORMAT) for (const t of tables) db.exec(`DROP TABLE "${t.replace(/"/g, '""')}"`);
    db.exec(SCHEMA);
    db.pragma(`application_id = ${APP_ID}`);
    return db;
  } catch (e) {
    db?.close();
    if (e instanceof InputError) throw e;
    const code = (e as { code?: string }).code ?? String(e);
    throw new InputError(`cannot use ${file} as a history index: ${code === 'SQLITE_NOTADB' ? 'it is not a SQLite database' : code}`);
  }
}

function readMeta(db: Database.Database): Partial<Meta> & { format?: string } {
  const rows = db.prepare<[], { key: string; value: string }>('SELECT key, value FROM meta').all();
  const m = Object.fromEntries(rows.map((r) => [r.key, r.value]));
  return { ...m, ...(m.position === undefined ? {} : { position: Number(m.position) }), ...(m.time === undefined ? {} : { time: m.time === '' ? null : m.time }) };
}

/**
 * A digest of the event at `position` (its stream, type, data and metadata), or undefined past the head.
 * Event ids alone do not tell logs apart: every log of one stream numbers them the same way.
 */
async function fingerprint(store: EventStore, position: number): Promise<string | undefined> {
  const e = (await store.read(position - 1, 1))[0];
  return e && digest(e);
}

function digest(e: StoredEvent): string {
  return createHash('sha256').update(JSON.stringify([e.streamId, e.type, e.data, e.metadata])).digest('hex');
}

/**
 * True when the index was built from this log: the log still holds the same first event and the same
 * event at the indexed position (an index ahead of our head, built by an auditor that saw a later head,
 * belongs too). Between the two the log is trusted to be append-only; a hash chain over the log would
 * make this check exact.
 */
async function belongs(meta: Partial<Meta> & { format?: string }, store: EventStore, stream: string): Promise<boolean> {
  if (meta.format !== FORMAT || meta.stream !== stream || meta.position === undefined) return false;
  return meta.firstEvent === (await fingerprint(store, 1)) && meta.lastEvent === (await fingerprint(store, meta.position));
}

function reset(db: Database.Database): void {
  db.transaction(() => {
    for (const t of ['meta', 'commands', 'concerns', 'owners']) db.exec(`DELETE FROM ${t}`);
  }).immediate();
}

async function catchUp(db: Database.Database, store: EventStore, stream: string, head: number, chunk: number): Promise<void> {
  for (;;) {
    const meta = readMeta(db);
    if (meta.position !== undefined && !(await belongs(meta, store, stream))) {
      reset(db);
      continue;
    }
    if ((meta.position ?? 0) >= head) return;
    try {
      await extend(db, store, stream, head, chunk, meta as Partial<Meta>);
      return;
    } catch (e) {
      if (!(e instanceof Concurrent)) throw e;
    }
  }
}

/** Folds the log from the saved point to `head`, writing a chunk at a time. */
async function extend(db: Database.Database, store: EventStore, stream: string, head: number, chunk: number, meta: Partial<Meta>): Promise<void> {
  const start: ScanPoint = meta.position === undefined ? initialPoint : { state: decodeState(meta.state!), position: meta.position, time: meta.time ?? null };
  let expected = meta.position ?? null;
  const firstEvent = meta.firstEvent ?? (await fingerprint(store, 1))!;
  const open: OpenPeriods = meta.open === undefined ? new Map() : decodeOpen(meta.open);
  let rows: CommandRows[] = [];
  let closed: [string, OwnershipPeriod][] = [];
  let buffered = 0;
  const recorder = new HistoryRecorder(
    () => true,
    open,
    (r) => {
      rows.push(r);
      buffered += r.entries.length;
    },
    (key, p) => closed.push([key, p]),
    true,
  );
  const insert = {
    command: db.prepare('INSERT INTO commands (first, last, command_id, command, last_ms, kinds, events) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    concern: db.prepare('INSERT INTO concerns (key, chunk, firsts) VALUES (?, ?, ?)'),
    owner: db.prepare('INSERT INTO owners (key, subject, owner, from_pos, from_time, to_pos, to_time) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    meta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
  // One transaction per chunk, and nothing awaited inside it: the write lock is never held across I/O.
  const flush = (last: ScanStep): void => {
    db.transaction(() => {
      const now = readMeta(db).position ?? null;
      if (now !== expected) throw new Concurrent();
      const byKey = new Map<string, number[]>();
      for (const r of rows) {
        const events: PackedEvent[] = r.entries.map((e) => [e.position, e.time, e.event, e.category, e.summary]);
        const lastMs = Math.max(...r.entries.map((e) => Date.parse(e.time)));
        const kinds = kindMask(new Set(r.entries.map((e) => e.category)));
        insert.command.run(r.first, r.last, r.entries[0]!.commandId, r.entries[0]!.command, lastMs, kinds, JSON.stringify(events));
        for (const k of r.keys) {
          const list = byKey.get(k) ?? [];
          list.push(r.first);
          byKey.set(k, list);
        }
      }
      for (const [k, firsts] of byKey) insert.concern.run(k, firsts[0]!, Buffer.from(new Float64Array(firsts).buffer));
      for (const [key, p] of closed) insert.owner.run(key, p.subject, p.owner, p.from.position, p.from.time ?? '', p.to!.position, p.to!.time ?? '');
      const m: Meta = {
        stream, firstEvent, lastEvent: digest(last.stored), position: last.stored.position, time: last.stored.metadata.time,
        state: encodeState(last.after), open: encodeOpen(open),
      };
      insert.meta.run('format', FORMAT);
      for (const [k, v] of Object.entries(m)) insert.meta.run(k, String(v ?? ''));
    }).immediate();
    expected = last.stored.position;
    rows = [];
    closed = [];
    buffered = 0;
  };
  let last: ScanStep | undefined;
  await scanLog(store, {
    start, head, streamId: stream, fold: 'relations',
    visit: (s) => recorder.step(s),
    commandEnd: (step, complete) => {
      recorder.end(step, complete);
      last = step;
      if (buffered >= chunk) flush(step);
    },
  });
  if (last && last.stored.position !== expected) flush(last);
}

function query(db: Database.Database, entity: Entity, head: number, to: Bound | undefined, kinds: ReadonlySet<Category> | undefined): History {
  if (to && 'position' in to && to.position > head) throw new InputError(`position ${to.position} is past the end of the log (head ${head})`);
  const command = db.prepare<[number], { first: number; command_id: string; command: string; events: string }>(
    'SELECT first, command_id, command, events FROM commands WHERE first <= ? ORDER BY first DESC LIMIT 1',
  );
  const eventsOf = (row: { events: string }): PackedEvent[] => JSON.parse(row.events) as PackedEvent[];
  let limit = head;
  if (to && 'position' in to) limit = to.position;
  if (to && 'time' in to) {
    // The first event later than the time: in the first command whose latest event is later.
    const ms = Date.parse(to.time);
    const row = db.prepare<[number, number], { events: string }>('SELECT events FROM commands WHERE last_ms > ? AND first <= ? ORDER BY first LIMIT 1').get(ms, head);
    const later = row && eventsOf(row).find((e) => Date.parse(e[1]) > ms);
    if (later) limit = later[0] - 1;
  }
  const around = command.get(limit);
  const at = around && eventsOf(around).filter((e) => e[0] <= limit).pop();
  const key = entityKey(entity);
  const firsts = db
    .prepare<[string, number], { firsts: Buffer }>('SELECT firsts FROM concerns WHERE key = ? AND chunk <= ? ORDER BY chunk')
    .all(key, limit)
    .flatMap((r) => [...new Float64Array(r.firsts.buffer, r.firsts.byteOffset, r.firsts.byteLength / 8)])
    .filter((f) => f <= limit);
  const byFirst = db.prepare<[number], { first: number; command_id: string; command: string; kinds: number; events: string }>(
    'SELECT first, command_id, command, kinds, events FROM commands WHERE first = ?',
  );
  const mask = kinds ? kindMask(kinds) : -1;
  let shown = 0;
  const entries = firsts.flatMap((f) => {
    const row = byFirst.get(f)!;
    if ((row.kinds & mask) === 0) return [];
    const list = eventsOf(row)
      .filter((e) => e[0] <= limit && (!kinds || kinds.has(e[3])))
      .map(([position, time, event, category, summary]): HistoryEntry => ({ position, time, commandId: row.command_id, command: row.command, event, category, summary }));
    if (list.length > 0) shown++;
    return list;
  });
  const point = (position: number, time: string) => ({ position, time: time === '' ? null : time });
  const owners: OwnershipPeriod[] = db
    .prepare<[string, number], { subject: string; owner: string; from_pos: number; from_time: string; to_pos: number; to_time: string }>(
      'SELECT subject, owner, from_pos, from_time, to_pos, to_time FROM owners WHERE key = ? AND from_pos <= ?',
    )
    .all(key, limit)
    .map((r) => ({ subject: r.subject, owner: r.owner, from: point(r.from_pos, r.from_time), to: r.to_pos <= limit ? point(r.to_pos, r.to_time) : null }));
  const meta = readMeta(db);
  for (const [subject, o] of decodeOpen(meta.open ?? '[]').get(key) ?? []) {
    if (o.from.position <= limit) owners.push({ subject, owner: o.owner, from: o.from, to: null });
  }
  return { entity, position: at?.[0] ?? 0, time: at?.[1] ?? null, head, commands: shown, entries, owners: sortPeriods(owners) };
}

/** A set of kinds as bits, in CATEGORIES order. */
function kindMask(kinds: ReadonlySet<Category>): number {
  return CATEGORIES.reduce((m, c, i) => (kinds.has(c) ? m | (1 << i) : m), 0);
}

/**
 * The relations state (TCE contents are never folded for history) as JSON, u64 values tagged. A table
 * holding entries cannot be saved this way, and never needs to be.
 */
function encodeState(state: State): string {
  return JSON.stringify(state, (_, v: unknown) => {
    if (typeof v === 'bigint') return { $u64: toHex(v) };
    if (v instanceof BigUint64Array) throw new Error('history index: a TCE table with entries cannot be saved');
    return v;
  });
}

function decodeState(text: string): State {
  return JSON.parse(text, (_, v: unknown) =>
    v !== null && typeof v === 'object' && typeof (v as { $u64?: unknown }).$u64 === 'string' ? BigInt((v as { $u64: string }).$u64) : v,
  ) as State;
}

function encodeOpen(open: OpenPeriods): string {
  return JSON.stringify([...open].map(([key, m]) => [key, [...m]]));
}

function decodeOpen(text: string): OpenPeriods {
  const raw = JSON.parse(text) as [string, [string, { owner: string; from: { position: number; time: string | null } }][]][];
  return new Map(raw.map(([key, m]) => [key, new Map(m)]));
}
