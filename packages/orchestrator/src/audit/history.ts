import type { IommuEventType, State } from '@iommu-orch/core';
import type { EventStore } from '@iommu-orch/store';
import { addConcerns, entityKey, entityLabel, entityOf, EVENT_CATEGORY, type Category, type Entity } from './concerns.js';
import { describeEvent } from './describe.js';
import { pointLabel, scanLog, type Bound, type ScanStep } from './scan.js';

export interface Point {
  readonly position: number;
  readonly time: string | null;
}

export interface HistoryEntry extends Point {
  readonly time: string;
  readonly commandId: string;
  readonly command: string;
  readonly event: string;
  readonly category: Category;
  readonly summary: string;
}

/** A stretch of the log during which a user context owned DMA of `subject` (a device or a group). */
export interface OwnershipPeriod {
  readonly subject: string;
  readonly owner: string;
  readonly from: Point;
  /** null: still owned at the end of the answer. */
  readonly to: Point | null;
}

export interface History {
  readonly entity: Entity;
  /** The answer covers the log up to this point. */
  readonly position: number;
  readonly time: string | null;
  readonly head: number;
  readonly commands: number;
  readonly entries: readonly HistoryEntry[];
  readonly owners: readonly OwnershipPeriod[];
}

/**
 * The timeline of one device, group or context: every event of every command that concerns it (see
 * concerns.ts), in log order, and the periods during which a user context owned it. One pass over the
 * log up to `to`; a command is kept whole, so a surprise removal shows its forced detach and release too.
 * history-index.ts answers the same question from a sidecar index, without the pass.
 */
export async function auditHistory(
  store: EventStore,
  entity: Entity,
  options: { to?: Bound; streamId?: string; kinds?: ReadonlySet<Category> } = {},
): Promise<History> {
  const key = entityKey(entity);
  const entries: HistoryEntry[] = [];
  const owners: OwnershipPeriod[] = [];
  let commands = 0;
  const recorder = new HistoryRecorder(
    (k) => k === key,
    new Map(),
    (c) => {
      commands++;
      entries.push(...c.entries);
    },
    (_, p) => owners.push(p),
  );
  const { to, streamId } = options;
  const result = await scanLog(store, {
    ...(to ? { to } : {}), ...(streamId ? { streamId } : {}), fold: 'relations',
    visit: (s) => recorder.step(s), commandEnd: (last, complete) => recorder.end(last, complete),
  });
  for (const [subject, o] of recorder.open.get(key) ?? []) owners.push({ subject, owner: o.owner, from: o.from, to: null });
  const h = { entity, position: result.position, time: result.time, head: result.head, commands, entries, owners: sortPeriods(owners) };
  return options.kinds ? onlyKinds(h, options.kinds) : h;
}

/** The history with only the entries of these kinds; `commands` counts the commands still shown. */
function onlyKinds(h: History, kinds: ReadonlySet<Category>): History {
  const entries = h.entries.filter((e) => kinds.has(e.category));
  return { ...h, entries, commands: new Set(entries.map((e) => e.commandId)).size };
}

export function sortPeriods(periods: OwnershipPeriod[]): OwnershipPeriod[] {
  return periods.sort((a, b) => a.from.position - b.from.position || a.subject.localeCompare(b.subject));
}

const OWNERSHIP_CHANGES: ReadonlySet<IommuEventType> = new Set(['DmaOwnerClaimed', 'DmaOwnerReleased', 'DeviceAdded', 'DeviceRemoved', 'GroupRemoved']);

/** One command's rows: its events, for the entities it concerns (among those wanted). */
export interface CommandRows {
  readonly first: number;
  readonly last: number;
  readonly keys: readonly string[];
  readonly entries: readonly HistoryEntry[];
}

/** Open ownership periods: entity key -> subject -> owner since. */
export type OpenPeriods = Map<string, Map<string, { owner: string; from: Point }>>;

/**
 * Turns the scanned events, a command at a time, into history rows for the wanted entities, and keeps
 * their ownership periods: after each complete command that concerns an entity, who owns what of it is
 * compared with the open periods; ownership only changes in commands that concern the entity.
 */
export class HistoryRecorder {
  private steps: ScanStep[] = [];
  private touched = new Set<string>();

  constructor(
    private readonly wanted: (key: string) => boolean,
    readonly open: OpenPeriods,
    private readonly onCommand: (rows: CommandRows) => void,
    private readonly onClosed: (key: string, period: OwnershipPeriod) => void,
    /** Report commands that concern no wanted entity too (an index keeps every command). */
    private readonly everyCommand = false,
  ) {}

  step(s: ScanStep): void {
    this.steps.push(s);
    addConcerns(s.event, s.before, s.after, this.touched);
  }

  end(last: ScanStep, complete: boolean): void {
    const keys = [...this.touched].filter(this.wanted);
    if (keys.length > 0 || this.everyCommand) {
      const entries = this.steps.map((s) => ({
        position: s.stored.position, time: s.stored.metadata.time, commandId: s.stored.metadata.commandId, command: s.stored.metadata.commandType,
        event: s.event.type, category: EVENT_CATEGORY[s.event.type], summary: describeEvent(s.event, s.before, s.after),
      }));
      this.onCommand({ first: this.steps[0]!.stored.position, last: last.stored.position, keys, entries });
      // Who owns a device, a group or a context's groups changes only with a claim or release, or a device
      // or group coming or going: other commands (most of a log: maps and unmaps) cannot change it.
      const changesOwnership = this.steps.some((s) => OWNERSHIP_CHANGES.has(s.event.type));
      if (complete && changesOwnership) for (const key of keys) this.track(key, last);
    }
    this.steps = [];
    this.touched = new Set();
  }

  private track(key: string, last: ScanStep): void {
    const at = { position: last.stored.position, time: last.stored.metadata.time };
    const now = holdings(entityOf(key), last.after);
    const open = this.open.get(key) ?? new Map<string, { owner: string; from: Point }>();
    for (const [subject, o] of open) {
      if (now.get(subject) === o.owner) continue;
      this.onClosed(key, { subject, owner: o.owner, from: o.from, to: at });
      open.delete(subject);
    }
    for (const [subject, owner] of now) if (!open.has(subject)) open.set(subject, { owner, from: at });
    if (open.size > 0) this.open.set(key, open);
    else this.open.delete(key);
  }
}

/** Who owns what of the entity in `state`: subject -> user context. */
function holdings(entity: Entity, state: State): Map<string, string> {
  const out = new Map<string, string>();
  if (entity.kind === 'device') {
    const g = state.devices[entity.bdf]?.group;
    const owner = g === undefined || g === null ? null : (state.groups[g]?.owner ?? null);
    if (owner !== null) out.set(entity.bdf, owner);
  } else if (entity.kind === 'group') {
    const owner = state.groups[entity.id]?.owner ?? null;
    if (owner !== null) out.set(`group ${entity.id}`, owner);
  } else {
    for (const g of Object.values(state.groups)) if (g.owner === entity.name) out.set(`group ${g.id}`, g.owner);
  }
  return out;
}

export function renderHistory(h: History): string {
  const lines = [`History of ${entityLabel(h.entity)} up to ${pointLabel(h)}; log head ${h.head}`];
  if (h.entries.length === 0) {
    lines.push(`  nothing in the log concerns ${entityLabel(h.entity)}`);
    return lines.join('\n');
  }
  lines.push(h.owners.length ? 'Owned by user contexts:' : 'Owned by user contexts: never');
  for (const o of h.owners) {
    lines.push(`  ${o.subject.padEnd(14)} ${o.owner.padEnd(10)} from ${pointLabel(o.from)} ${o.to ? `to ${pointLabel(o.to)}` : 'until now'}`);
  }
  lines.push(`Timeline: ${h.entries.length} events in ${h.commands} commands`);
  const width = String(h.position).length;
  for (const e of h.entries) {
    lines.push(`  ${String(e.position).padStart(width)}  ${e.time ?? '-'}  ${e.command.padEnd(17)} ${e.category.padEnd(10)} ${e.summary}`);
  }
  return lines.join('\n');
}
