import {
  domainRefView, TCE_PCI_READ, TCE_PCI_WRITE, tcePermName, tceRuns, toHex, type MappingView, type PagingDomain, type State, type TceRun, type TceTable, type Window,
} from '@iommu-orch/core';
import type { EventStore } from '@iommu-orch/store';
import { InputError } from '../command-schema.js';
import { pageSize, windowText } from '../render.js';
import { pointLabel, scanLog, type Bound, type ScanPoint } from './scan.js';

/**
 * What changed between two points of the log, object by object. Mappings are compared as ranges: the
 * two tables are swept run by run (a run is consecutive pages at consecutive addresses with one
 * permission), so the cost follows the number of runs, never the number of pages.
 */
export interface Change<T> {
  readonly from: T;
  readonly to: T;
}

export interface GroupChange {
  readonly id: number;
  readonly domain?: Change<string>;
  readonly devices?: SetChange;
  readonly claimed?: SetChange;
  readonly attached?: SetChange;
}

export interface SetChange {
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

export interface DomainMappingChange {
  readonly domain: number;
  readonly context: string;
  readonly group: number;
  readonly mapped: readonly MappingView[];
  readonly unmapped: readonly MappingView[];
}

/** One window of a paging domain: its slot, aperture (first and last bus address) and page size. */
export interface DomainWindowView {
  readonly slot: number;
  readonly aperture: readonly [string, string];
  readonly pageSize: string;
}

export interface StateDiff {
  readonly devices: {
    readonly added: readonly { readonly bdf: string; readonly pe: string; readonly group: number | null; readonly driver: string | null }[];
    readonly removed: readonly string[];
    readonly drivers: readonly (Change<string | null> & { readonly bdf: string })[];
  };
  readonly pes: { readonly created: readonly string[]; readonly released: readonly string[] };
  readonly groups: { readonly created: readonly number[]; readonly removed: readonly number[]; readonly changed: readonly GroupChange[] };
  /** Group owner changes to or from a user context: "kernel" when none owns it, "none" where the group does not exist. */
  readonly ownership: readonly (Change<string> & { readonly group: number; readonly devices: readonly string[] })[];
  readonly domains: {
    readonly allocated: readonly { readonly id: number; readonly context: string; readonly group: number; readonly windows: readonly DomainWindowView[] }[];
    readonly freed: readonly number[];
  };
  readonly windows: readonly (Change<string | null> & { readonly pe: string; readonly slot: number })[];
  readonly bypass: readonly (Change<boolean> & { readonly pe: string })[];
  readonly mappings: readonly DomainMappingChange[];
}

export interface AuditDiff {
  readonly from: { readonly position: number; readonly time: string | null };
  readonly to: { readonly position: number; readonly time: string | null };
  readonly head: number;
  readonly changes: number;
  readonly diff: StateDiff;
}

/** Folds to `from`, keeps that state, continues the same pass to `to`, and compares. */
export async function auditDiff(store: EventStore, from: Bound, to: Bound | undefined, streamId?: string): Promise<AuditDiff> {
  const stream = streamId === undefined ? {} : { streamId };
  const a = await scanLog(store, { to: from, ...stream });
  const backwards = to && ('position' in to ? to.position < a.position : a.time !== null && Date.parse(a.time) > Date.parse(to.time));
  if (backwards) throw new InputError(`--to is before --from (${pointLabel(a)})`);
  const b = await scanLog(store, { ...(to ? { to } : {}), start: a, head: a.head, ...stream });
  const diff = stateDiff(a.state, b.state);
  return { from: at(a), to: at(b), head: a.head, changes: countChanges(diff), diff };
}

function at(p: ScanPoint): { position: number; time: string | null } {
  return { position: p.position, time: p.time };
}

export function stateDiff(a: State, b: State): StateDiff {
  // "none" where the group does not exist; a group appearing or going while the kernel owns it is not an
  // ownership change (groups.created / removed say it).
  const owner = (s: State, id: number): string => (s.groups[id] ? (s.groups[id].owner ?? 'kernel') : 'none');
  const user = (o: string): boolean => o !== 'kernel' && o !== 'none';
  const groupIds = union(Object.keys(a.groups), Object.keys(b.groups)).map(Number);
  const ownership = groupIds.flatMap((id) => {
    const [from, to] = [owner(a, id), owner(b, id)];
    const devices = (b.groups[id] ?? a.groups[id])!.devices;
    return from === to || !(user(from) || user(to)) ? [] : [{ group: id, devices: [...devices], from, to }];
  });
  const changed = groupIds.flatMap((id): GroupChange[] => {
    const [ga, gb] = [a.groups[id], b.groups[id]];
    if (!ga || !gb) return [];
    const c: { -readonly [K in keyof GroupChange]: GroupChange[K] } = { id };
    if (domainRefView(ga.domain) !== domainRefView(gb.domain)) c.domain = { from: domainRefView(ga.domain), to: domainRefView(gb.domain) };
    for (const k of ['devices', 'claimed', 'attached'] as const) {
      const sc = setChange(ga[k], gb[k]);
      if (sc) c[k] = sc;
    }
    return Object.keys(c).length > 1 ? [c] : [];
  });
  const peIds = union(Object.keys(a.pes), Object.keys(b.pes));
  const windows = peIds.flatMap((pe) =>
    ([0, 1] as const).flatMap((slot) => {
      const [from, to] = [windowOf(a, pe, slot), windowOf(b, pe, slot)];
      return from === to ? [] : [{ pe, slot, from, to }];
    }),
  );
  const bypass = peIds.flatMap((pe) => {
    const [from, to] = [a.pes[pe]?.bypass ?? false, b.pes[pe]?.bypass ?? false];
    return from === to ? [] : [{ pe, from, to }];
  });
  const domainIds = union(Object.keys(a.domains), Object.keys(b.domains)).map(Number);
  const mappings = domainIds.flatMap((id) => {
    const m = mappingChange(a.domains[id], b.domains[id]);
    return m.mapped.length || m.unmapped.length ? [m] : [];
  });
  return {
    devices: {
      added: Object.values(b.devices).filter((d) => !a.devices[d.bdf]).map((d) => ({ bdf: d.bdf, pe: d.pe, group: d.group, driver: d.driver })),
      removed: Object.keys(a.devices).filter((bdf) => !b.devices[bdf]),
      drivers: Object.values(b.devices).flatMap((d) => {
        const before = a.devices[d.bdf];
        return before && before.driver !== d.driver ? [{ bdf: d.bdf, from: before.driver, to: d.driver }] : [];
      }),
    },
    pes: { created: peIds.filter((p) => !a.pes[p]), released: peIds.filter((p) => !b.pes[p]) },
    groups: { created: groupIds.filter((g) => !a.groups[g]), removed: groupIds.filter((g) => !b.groups[g]), changed },
    ownership,
    domains: {
      allocated: Object.values(b.domains).filter((d) => !a.domains[d.id]).map((d) => ({
        id: d.id, context: d.context, group: d.group,
        windows: d.windows.map((w) => ({ slot: w.slot, aperture: [toHex(w.start), toHex(w.last)] as const, pageSize: pageSize(w.table.pageShift) })),
      })),
      freed: Object.values(a.domains).filter((d) => !b.domains[d.id]).map((d) => d.id),
    },
    windows,
    bypass,
    mappings,
  };
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

function setChange(a: readonly string[], b: readonly string[]): SetChange | undefined {
  const added = b.filter((x) => !a.includes(x));
  const removed = a.filter((x) => !b.includes(x));
  return added.length || removed.length ? { added, removed } : undefined;
}

function windowOf(s: State, pe: string, slot: 0 | 1): string | null {
  const w: Window | null | undefined = s.pes[pe]?.windows[slot];
  return w ? windowText(w) : null;
}

/**
 * Range diff of one domain's tables between two states, window by window (a range never spans two
 * windows). A domain id is never reused and a domain keeps its windows, so a domain on one side only was
 * allocated (everything mapped) or freed (everything unmapped) in between.
 */
function mappingChange(a: PagingDomain | undefined, b: PagingDomain | undefined): DomainMappingChange {
  const d = (b ?? a)!;
  const mapped: MappingView[] = [];
  const unmapped: MappingView[] = [];
  d.windows.forEach((w, i) => {
    const [ta, tb] = [a?.windows[i]?.table, b?.windows[i]?.table];
    if (ta === tb) return;
    const change = tableChange(ta, tb, w.start, BigInt(w.table.pageShift));
    mapped.push(...change.mapped);
    unmapped.push(...change.unmapped);
  });
  return { domain: d.id, context: d.context, group: d.group, mapped, unmapped };
}

/** Range diff of one window's table; `start` is the window's first bus address. */
function tableChange(a: TceTable | undefined, b: TceTable | undefined, start: bigint, shift: bigint): { mapped: MappingView[]; unmapped: MappingView[] } {
  const runsA = a ? tceRuns(a) : [];
  const runsB = b ? tceRuns(b) : [];
  const step = 1n << shift;
  const cuts = [...new Set([...runsA, ...runsB].flatMap((r) => [r.index, r.index + r.count]))].sort((x, y) => x - y);
  const mapped = new RangeBuilder(start, shift);
  const unmapped = new RangeBuilder(start, shift);
  const va = new RunCursor(runsA, step);
  const vb = new RunCursor(runsB, step);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [from, to] = [cuts[i]!, cuts[i + 1]!];
    // Inside one segment each side is a single run or nothing, so comparing the first entry decides it.
    const [x, y] = [va.at(from), vb.at(from)];
    if (x === y) continue;
    if (x !== 0n) unmapped.add(from, to - from, x);
    if (y !== 0n) mapped.add(from, to - from, y);
  }
  return { mapped: mapped.ranges, unmapped: unmapped.ranges };
}

/** Value of entry `index` in a sorted run list, for indexes asked in increasing order. */
class RunCursor {
  private i = 0;
  constructor(
    private readonly runs: readonly TceRun[],
    private readonly step: bigint,
  ) {}

  at(index: number): bigint {
    while (this.i < this.runs.length && this.runs[this.i]!.index + this.runs[this.i]!.count <= index) this.i++;
    const r = this.runs[this.i];
    return r && r.index <= index ? r.first + BigInt(index - r.index) * this.step : 0n;
  }
}

/** Collects changed segments and merges neighbours that continue one another into one range. */
class RangeBuilder {
  readonly ranges: { iova: string; paddr: string; pages: number; perm: string }[] = [];
  private last: { index: number; count: number; value: bigint } | undefined;

  constructor(
    private readonly start: bigint,
    private readonly shift: bigint,
  ) {}

  add(index: number, count: number, value: bigint): void {
    const l = this.last;
    if (l && l.index + l.count === index && l.value + (BigInt(l.count) << this.shift) === value) {
      l.count += count;
      this.ranges[this.ranges.length - 1]!.pages = l.count;
      return;
    }
    this.last = { index, count, value };
    this.ranges.push({
      iova: toHex(this.start + (BigInt(index) << this.shift)), paddr: toHex(value & ~(TCE_PCI_READ | TCE_PCI_WRITE)), pages: count,
      perm: tcePermName(value & (TCE_PCI_READ | TCE_PCI_WRITE)),
    });
  }
}

export function countChanges(d: StateDiff): number {
  return (
    d.devices.added.length + d.devices.removed.length + d.devices.drivers.length + d.pes.created.length + d.pes.released.length +
    d.groups.created.length + d.groups.removed.length + d.groups.changed.length + d.ownership.length + d.domains.allocated.length +
    d.domains.freed.length + d.windows.length + d.bypass.length + d.mappings.reduce((n, m) => n + m.mapped.length + m.unmapped.length, 0)
  );
}

export function renderDiff(r: AuditDiff): string {
  const d = r.diff;
  const lines = [`Changes from ${pointLabel(r.from)} to ${pointLabel(r.to)} (log head ${r.head}): ${r.changes === 0 ? 'none' : r.changes}`];
  const section = (title: string, items: readonly string[]): void => {
    if (items.length === 0) return;
    lines.push(title);
    for (const i of items) lines.push(`  ${i}`);
  };
  section('Devices', [
    ...d.devices.added.map((x) => `+ ${x.bdf} in PE ${x.pe}, ${x.group === null ? 'no group' : `group ${x.group}`}, driver ${x.driver ?? 'none'}`),
    ...d.devices.removed.map((bdf) => `- ${bdf}`),
    ...d.devices.drivers.map((x) => `~ ${x.bdf} driver ${x.from ?? 'none'} -> ${x.to ?? 'none'}`),
  ]);
  section('PEs', [...d.pes.created.map((p) => `+ ${p}`), ...d.pes.released.map((p) => `- ${p}`)]);
  section('Groups', [
    ...d.groups.created.map((g) => `+ group ${g}`),
    ...d.groups.removed.map((g) => `- group ${g}`),
    ...d.groups.changed.map((g) => {
      const parts = [g.domain ? `domain ${g.domain.from} -> ${g.domain.to}` : ''];
      for (const k of ['devices', 'claimed', 'attached'] as const) {
        const c = g[k];
        if (c) parts.push(`${k} ${[...c.added.map((x) => `+${x}`), ...c.removed.map((x) => `-${x}`)].join(' ')}`);
      }
      return `~ group ${g.id}: ${parts.filter(Boolean).join('; ')}`;
    }),
  ]);
  section('Ownership', d.ownership.map((o) => `group ${o.group} (${o.devices.join(' ') || 'no devices'}): ${o.from} -> ${o.to}`));
  section('Domains', [
    ...d.domains.allocated.map((x) => {
      const windows = x.windows.map((w) => `window ${w.slot} [${w.aperture[0]}, ${w.aperture[1]}] ${w.pageSize} pages`);
      return `+ domain ${x.id} of ${x.context} for group ${x.group}: ${windows.join('; ')}`;
    }),
    ...d.domains.freed.map((id) => `- domain ${id}`),
  ]);
  section('Windows', [
    ...d.windows.map((w) => `PE ${w.pe} window ${w.slot}: ${w.from ?? 'unset'} -> ${w.to ?? 'unset'}`),
    ...d.bypass.map((b) => `PE ${b.pe} bypass ${b.from ? 'on' : 'off'} -> ${b.to ? 'on' : 'off'}`),
  ]);
  section('Mappings', d.mappings.flatMap((m) => [
    `domain ${m.domain} of ${m.context} (group ${m.group}):`,
    ...m.mapped.map((x) => `  + ${x.iova} -> ${x.paddr} ${x.perm} x${x.pages}`),
    ...m.unmapped.map((x) => `  - ${x.iova} -> ${x.paddr} ${x.perm} x${x.pages}`),
  ]));
  return lines.join('\n');
}
