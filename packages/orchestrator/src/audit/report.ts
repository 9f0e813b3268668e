import { domainRefView, tableRefView, tceRuns, toHex, type DomainWindow, type PagingDomain, type State } from '@iommu-orch/core';
import type { EventStore } from '@iommu-orch/store';
import { hex4, pageSize } from '../render.js';
import { CATEGORIES, EVENT_CATEGORY, type Category } from './concerns.js';
import { describeEvent } from './describe.js';
import type { HistoryEntry } from './history.js';
import { scanLog, type Bound } from './scan.js';

/**
 * What `audit report` shows, computed in one pass: the topology at the chosen point (PHBs, PEs, groups,
 * devices and their owners), a timeline of the whole log up to that point in fixed buckets of positions
 * (counts per category, so a million events draw as a hundred bars), the latest ownership, attachment,
 * domain, driver and hotplug changes, and how full each window's table is. The HTML page is drawn from
 * this model alone (report-html.ts); `--json` prints it.
 */
export interface ReportDevice {
  readonly bdf: string;
  readonly id: string;
  readonly class: string;
  readonly bridge: boolean;
  readonly driver: string | null;
  readonly claimed: boolean;
  readonly attached: boolean;
}

export interface ReportPe {
  readonly id: string;
  readonly bus: number | null;
  readonly bypass: boolean;
  readonly group: { readonly id: number; readonly owner: string | null; readonly domain: string } | null;
  readonly devices: readonly ReportDevice[];
}

export interface Occupancy {
  readonly label: string;
  readonly pe: string | null;
  /** The window slot (of the PE, or of the domain when no PE window uses it). */
  readonly slot: number;
  readonly start: string;
  readonly last: string;
  readonly pageSize: string;
  /** "kernel", "kernel-ddw" (a pSeries dynamic window) or "domain:N". */
  readonly table: string;
  readonly context: string | null;
  /** Entry count and valid TCEs; null for the kernel's table, whose contents the log does not hold. */
  readonly entries: number | null;
  readonly valid: number | null;
  /** Fraction of valid entries in each of OCCUPANCY_BINS equal slices of the window. */
  readonly bins: readonly number[] | null;
}

export interface TimelineBucket {
  readonly from: number;
  readonly to: number;
  readonly fromTime: string;
  readonly toTime: string;
  readonly counts: Readonly<Record<Category, number>>;
}

export interface ReportModel {
  readonly position: number;
  readonly time: string | null;
  readonly head: number;
  readonly events: number;
  readonly commands: number;
  readonly phbs: readonly { readonly domain: string; readonly platform: string; readonly generation: string; readonly pes: readonly ReportPe[] }[];
  readonly contexts: readonly string[];
  readonly categories: readonly Category[];
  readonly timeline: readonly TimelineBucket[];
  readonly recent: readonly HistoryEntry[];
  readonly windows: readonly Occupancy[];
}

/** How many devices and IOMMU groups the topology holds (what the picture draws). */
export function topologyCounts(m: ReportModel): { devices: number; groups: number } {
  const pes = m.phbs.flatMap((p) => p.pes);
  return { devices: pes.reduce((n, pe) => n + pe.devices.length, 0), groups: pes.filter((pe) => pe.group).length };
}

export const TIMELINE_BUCKETS = 120;
export const OCCUPANCY_BINS = 128;
const RECENT = 200;

export async function auditReport(store: EventStore, options: { to?: Bound; streamId?: string } = {}): Promise<ReportModel> {
  const timeline = new TimelineBuilder();
  const recent: HistoryEntry[] = [];
  let commands = 0;
  const r = await scanLog(store, {
    ...options,
    visit: ({ stored, event, before, after }) => {
      const category = EVENT_CATEGORY[event.type];
      timeline.add(stored.position, stored.metadata.time, category);
      if (category === 'mapping' || category === 'window') return;
      recent.push({
        position: stored.position, time: stored.metadata.time, commandId: stored.metadata.commandId, command: stored.metadata.commandType,
        event: event.type, category, summary: describeEvent(event, before, after),
      });
      if (recent.length > 2 * RECENT) recent.splice(0, recent.length - RECENT);
    },
    commandEnd: () => void commands++,
  });
  const s = r.state;
  return {
    position: r.position,
    time: r.time,
    head: r.head,
    events: timeline.events,
    commands,
    phbs: Object.values(s.phbs).map((p) => ({
      domain: hex4(p.domain), platform: p.platform, generation: p.generation,
      pes: Object.values(s.pes).filter((pe) => pe.phb === p.domain).map((pe) => {
        const g = pe.group === null ? undefined : s.groups[pe.group];
        return {
          id: pe.id, bus: pe.bus, bypass: pe.bypass,
          group: g ? { id: g.id, owner: g.owner, domain: domainRefView(g.domain) } : null,
          devices: pe.devices.map((bdf) => {
            const d = s.devices[bdf]!;
            return {
              bdf, id: `${hex4(d.vendor)}:${hex4(d.device)}`, class: d.classCode.toString(16).padStart(6, '0'), bridge: d.bridge, driver: d.driver,
              claimed: g?.claimed.includes(bdf) ?? false, attached: g?.attached.includes(bdf) ?? false,
            };
          }),
        };
      }),
    })),
    contexts: [...new Set([...Object.values(s.groups).flatMap((g) => (g.owner ? [g.owner] : [])), ...Object.values(s.domains).map((d) => d.context)])].sort(),
    categories: CATEGORIES,
    timeline: timeline.buckets(),
    recent: recent.slice(-RECENT).reverse(),
    windows: occupancies(s),
  };
}

/**
 * Buckets of consecutive events, built as the events stream past without knowing their number: when
 * there are twice as many buckets as wanted, neighbours merge and the bucket size doubles. The result has
 * between TIMELINE_BUCKETS / 2 and TIMELINE_BUCKETS buckets of equal size (the last may be short).
 */
class TimelineBuilder {
  events = 0;
  private size = 1;
  private readonly list: { -readonly [K in keyof TimelineBucket]: TimelineBucket[K] }[] = [];
  private filled = 0;

  add(position: number, time: string, category: Category): void {
    this.events++;
    let last = this.list[this.list.length - 1];
    if (!last || this.filled === this.size) {
      last = { from: position, to: position, fromTime: time, toTime: time, counts: emptyCounts() };
      this.list.push(last);
      this.filled = 0;
      if (this.list.length > 2 * TIMELINE_BUCKETS) this.halve();
    }
    (last.counts as Record<Category, number>)[category]++;
    last.to = position;
    last.toTime = time;
    this.filled++;
  }

  buckets(): TimelineBucket[] {
    while (this.list.length > TIMELINE_BUCKETS) this.halve();
    return this.list;
  }

  private halve(): void {
    const merged = [];
    for (let i = 0; i < this.list.length; i += 2) {
      const a = this.list[i]!;
      const b = this.list[i + 1];
      merged.push(b ? { ...a, to: b.to, toTime: b.toTime, counts: sumCounts(a.counts, b.counts) } : a);
    }
    // The last bucket is full only when every bucket before the merge was.
    const lastPair = this.list.length % 2 === 0;
    this.filled = lastPair ? this.size + this.filled : this.filled;
    this.size *= 2;
    this.list.splice(0, this.list.length, ...merged);
  }
}

function emptyCounts(): Record<Category, number> {
  return Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Record<Category, number>;
}

function sumCounts(a: Readonly<Record<Category, number>>, b: Readonly<Record<Category, number>>): Record<Category, number> {
  return Object.fromEntries(CATEGORIES.map((c) => [c, a[c] + b[c]])) as Record<Category, number>;
}

/** Every programmed window, then every window of a paging domain no PE window uses yet (not attached). */
function occupancies(s: State): Occupancy[] {
  const out: Occupancy[] = [];
  const shown = new Set<number>();
  for (const pe of Object.values(s.pes)) {
    pe.windows.forEach((w, slot) => {
      if (!w) return;
      const d = w.table.kind === 'domain' ? s.domains[w.table.domain] : undefined;
      if (d) shown.add(d.id);
      out.push({
        label: `PE ${pe.id} window ${slot}`, pe: pe.id, slot, start: toHex(w.start), last: toHex(w.start + w.size - 1n),
        pageSize: pageSize(w.pageShift), table: tableRefView(w.table),
        // A window through a domain covers exactly that domain's window of the same slot (core invariant).
        ...tableFill(d, d?.windows.find((x) => x.slot === slot)),
      });
    });
  }
  for (const d of Object.values(s.domains)) {
    if (shown.has(d.id)) continue;
    for (const w of d.windows) {
      out.push({
        label: `domain ${d.id} window ${w.slot} (not attached)`, pe: null, slot: w.slot, start: toHex(w.start), last: toHex(w.last),
        pageSize: pageSize(w.table.pageShift), table: `domain:${d.id}`, ...tableFill(d, w),
      });
    }
  }
  return out;
}

function tableFill(d: PagingDomain | undefined, w: DomainWindow | undefined): Pick<Occupancy, 'context' | 'entries' | 'valid' | 'bins'> {
  if (!d || !w) return { context: null, entries: null, valid: null, bins: null };
  const size = w.table.size;
  const per = size / OCCUPANCY_BINS;
  const bins = new Array<number>(OCCUPANCY_BINS).fill(0);
  for (const run of tceRuns(w.table)) {
    let i = run.index;
    const end = run.index + run.count;
    while (i < end) {
      const bin = Math.min(OCCUPANCY_BINS - 1, Math.floor(i / per));
      const next = Math.min(end, Math.ceil((bin + 1) * per));
      bins[bin]! += Math.max(1, next - i);
      i = Math.max(next, i + 1);
    }
  }
  return { context: d.context, entries: size, valid: w.table.valid, bins: bins.map((n) => Math.min(1, n / per)) };
}
