import {
  domainRefView, fromHex, tableRefView, tceGet, TCE_PCI_READ, TCE_PCI_WRITE, toHex, windowAt, type IommuEvent, type State, type Window,
} from '@iommu-orch/core';
import type { EventStore } from '@iommu-orch/store';
import { pageSize, windowText } from '../render.js';
import { describeEvent } from './describe.js';
import { ioasDomains, ioasOf } from './iommufd-objects.js';
import { pointLabel, scanLog, type Bound, type ScanStep } from './scan.js';

export type Verdict = 'reachable' | 'no-device' | 'no-group' | 'kernel-owned' | 'not-attached' | 'outside-window' | 'empty-tce';

export interface EventRef {
  readonly position: number;
  readonly time: string;
  readonly commandId: string;
  readonly command: string;
  readonly summary: string;
}

export interface WindowRef {
  readonly slot: number;
  readonly start: string;
  readonly last: string;
  readonly pageSize: string;
  readonly table: string;
}

export interface Explanation {
  readonly device: string;
  readonly iova: string;
  readonly position: number;
  readonly time: string | null;
  readonly head: number;
  readonly reachable: boolean;
  readonly verdict: Verdict;
  /** One sentence: why (not). */
  readonly reason: string;
  readonly pe?: { readonly id: string; readonly windows: readonly WindowRef[]; readonly bypass: boolean };
  readonly group?: {
    readonly id: number;
    readonly owner: string | null;
    readonly domain: string;
    readonly claimed: boolean;
    readonly attached: boolean;
  };
  readonly window?: WindowRef;
  /** `aperture`: that of the domain's window the IOVA lies in; `apertures`: every window's, in slot order. */
  readonly domain?: {
    readonly id: number;
    readonly context: string;
    readonly aperture: readonly [string, string];
    readonly apertures: readonly (readonly [string, string])[];
  };
  readonly tce?: { readonly index: number; readonly value: string; readonly page: string; readonly phys: string; readonly perm: 'r' | 'rw' | 'w' };
  /** The map that wrote the TCE (reachable), or the last unmap that cleared it (empty-tce). */
  readonly mappedBy?: EventRef;
  readonly clearedBy?: EventRef;
  /** When the device is absent: its last removal. */
  readonly removedBy?: EventRef;
}

/**
 * Can `bdf` reach `iova` at the end of the scan, and why. The answer follows the hardware path, not the
 * bookkeeping: device -> its PE -> the PE's window (TVE) that covers the IOVA -> the table behind it ->
 * the TCE. On POWER the PE is the unit of translation, so a function of a multifunction device that is
 * not attached itself still translates through the window its attached sibling programmed; the answer
 * says so. A kernel-owned group translates through the kernel's own table, which the log does not hold.
 *
 * The map that created a TCE is the last event that wrote that page of that domain: a TcesMapped
 * covering it, or for a domain behind an iommufd HWPT an IOAS area mapped over it (written into every
 * HWPT domain of the IOAS) or the HWPT's allocation (which fills its domain from the IOAS's areas). A
 * valid TCE cannot be overwritten (map refuses with EEXIST), so nothing after it wrote that entry.
 */
export async function auditExplain(store: EventStore, bdf: string, iova: bigint, options: { to?: Bound; streamId?: string } = {}): Promise<Explanation> {
  const lastMap = new Map<number, ScanStep>();
  const lastClear = new Map<number, ScanStep>();
  let removed: ScanStep | undefined;
  const r = await scanLog(store, {
    ...options,
    visit: (step) => {
      const e = step.event;
      if (e.type === 'DeviceRemoved' && e.data.bdf === bdf) removed = step;
      for (const domain of tceWrites(e, step.before, step.after, iova, true)) lastMap.set(domain, step);
      for (const domain of tceWrites(e, step.before, step.after, iova, false)) lastClear.set(domain, step);
    },
  });
  const s = r.state;
  const base = { device: bdf, iova: toHex(iova), position: r.position, time: r.time, head: r.head };
  const no = (verdict: Verdict, reason: string, more: Partial<Explanation> = {}): Explanation => ({ ...base, reachable: false, verdict, reason, ...more });

  const dev = s.devices[bdf];
  if (!dev) {
    const reason = removed ? `${bdf} is not present: it was removed at ${pointLabel(ref(removed))}` : `${bdf} never appeared in the log`;
    return no('no-device', reason, removed ? { removedBy: ref(removed) } : {});
  }
  const peState = s.pes[dev.pe]!;
  const pe = { id: peState.id, windows: peState.windows.flatMap((w, slot) => (w ? [windowRef(w, slot)] : [])), bypass: peState.bypass };
  if (dev.group === null) return no('no-group', `${bdf} is a bridge: it belongs to no IOMMU group and does no DMA of its own`, { pe });
  const g = s.groups[dev.group]!;
  const group = { id: g.id, owner: g.owner, domain: domainRefView(g.domain), claimed: g.claimed.includes(bdf), attached: g.attached.includes(bdf) };
  const slot = peState.windows.findIndex((w) => w !== null && iova >= w.start && iova <= w.start + w.size - 1n);
  const w = slot < 0 ? null : peState.windows[slot]!;
  const ctx = { pe, group };
  const kernel = (): Explanation => {
    const through = w ? ` (window ${slot}: ${windowText(w)})` : peState.bypass ? ' or its bypass window' : '';
    return no('kernel-owned', `group ${g.id} is owned by the kernel (${domainRefView(g.domain)} domain): DMA goes through the kernel's own table${through}, whose DMA-API mappings the log does not hold; no user context can map there`, ctx);
  };
  if (g.owner === null) return kernel();
  if (w === null) {
    if (pe.windows.length === 0) {
      return no('not-attached', `group ${g.id} is owned by ${g.owner} but on the ${domainRefView(g.domain)} domain: PE ${pe.id} has no DMA window, so its devices reach nothing`, ctx);
    }
    return no('outside-window', `IOVA ${toHex(iova)} is outside every window of PE ${pe.id}: ${pe.windows.map((x) => `window ${x.slot} [${x.start}, ${x.last}]`).join(', ')}`, ctx);
  }
  if (w.table.kind === 'kernel') return kernel();
  const domainState = s.domains[w.table.domain]!;
  // A PE window through a domain covers exactly one window of that domain (core invariant).
  const dw = windowAt(domainState, iova)!;
  const window = windowRef(w, slot);
  const aperture = (x: { start: bigint; last: bigint }): readonly [string, string] => [toHex(x.start), toHex(x.last)];
  const domain = { id: domainState.id, context: domainState.context, aperture: aperture(dw), apertures: domainState.windows.map(aperture) };
  const shift = BigInt(dw.table.pageShift);
  const index = Number((iova - dw.start) >> shift);
  const value = tceGet(dw.table, index);
  const found = { ...ctx, window, domain };
  if (value === 0n) {
    const cleared = lastClear.get(domainState.id);
    const when = cleared ? `; it was last unmapped at ${pointLabel(ref(cleared))}` : '; nothing was ever mapped there';
    return no('empty-tce', `TCE ${index} of window ${dw.slot} of domain ${domainState.id} (IOVA ${toHex(iova)}) is empty${when}`, { ...found, ...(cleared ? { clearedBy: ref(cleared) } : {}) });
  }
  const pageMask = (1n << shift) - 1n;
  const page = value & ~(TCE_PCI_READ | TCE_PCI_WRITE) & ~pageMask;
  const perm = (value & TCE_PCI_WRITE ? (value & TCE_PCI_READ ? 'rw' : 'w') : 'r') as 'r' | 'rw' | 'w';
  const tce = { index, value: toHex(value), page: toHex(page), phys: toHex(page | (iova & pageMask)), perm };
  const mapped = lastMap.get(domainState.id);
  const through = group.attached ? '' : `, although ${bdf} is not attached itself: PE ${pe.id} translates for all its functions`;
  const access = perm === 'rw' ? 'read and write' : perm === 'r' ? 'read only' : 'write only';
  return {
    ...base, reachable: true, verdict: 'reachable',
    reason: `${bdf} reaches IOVA ${toHex(iova)} -> ${tce.phys} (${access}) through domain ${domainState.id} of ${domainState.context}${through}`,
    ...found, tce, ...(mapped ? { mappedBy: ref(mapped) } : {}),
  };
}

function windowRef(w: Window, slot: number): WindowRef {
  return {
    slot, start: toHex(w.start), last: toHex(w.start + w.size - 1n), pageSize: pageSize(w.pageShift),
    table: tableRefView(w.table),
  };
}

/**
 * The domains whose TCE for `iova` the event writes (`map`) or clears (otherwise). TcesMapped,
 * TcesCleared and TcesLeaked (a refused clear: the entry leaves the freed table, its page stays pinned) name their domain; an IOAS area map or unmap writes every HWPT domain of its IOAS, and a
 * HWPT allocation fills its domain with the IOAS's areas. (Freeing a HWPT clears its domain with
 * TcesCleared events.)
 */
function tceWrites(e: IommuEvent, before: State, after: State, iova: bigint, map: boolean): number[] {
  const covers = (first: bigint, last: bigint): boolean => iova >= first && iova <= last;
  switch (e.type) {
    case 'TcesMapped':
    case 'TcesCleared':
    case 'TcesLeaked': {
      const first = fromHex(e.data.iova);
      const hit = (e.type === 'TcesMapped') === map && covers(first, first + fromHex(e.data.pgsize) * BigInt(e.data.pgcount) - 1n);
      return hit ? [e.data.domain] : [];
    }
    case 'IoasAreaMapped': {
      const first = fromHex(e.data.iova);
      return map && covers(first, first + fromHex(e.data.length) - 1n) ? ioasDomains(after, e.data.context, e.data.ioas) : [];
    }
    case 'IoasAreaUnmapped': {
      const area = ioasOf(before, e.data.context, e.data.ioas)?.areas.find((a) => a.iova === fromHex(e.data.iova));
      return !map && area && covers(area.iova, area.last) ? ioasDomains(before, e.data.context, e.data.ioas) : [];
    }
    case 'HwptAllocated': {
      const areas = ioasOf(after, e.data.context, e.data.ioas)?.areas ?? [];
      return map && areas.some((a) => covers(a.iova, a.last)) ? [e.data.domain] : [];
    }
    default:
      return [];
  }
}

function ref(s: ScanStep): EventRef {
  return {
    position: s.stored.position, time: s.stored.metadata.time, commandId: s.stored.metadata.commandId, command: s.stored.metadata.commandType,
    summary: describeEvent(s.event, s.before, s.after),
  };
}

export function renderExplanation(x: Explanation): string {
  const lines = [`${x.device} -> IOVA ${x.iova} at ${pointLabel(x)} (log head ${x.head}): ${x.reachable ? `REACHABLE (${x.tce!.perm})` : `NOT REACHABLE (${x.verdict})`}`];
  lines.push(`  ${x.reason}`);
  if (x.pe) {
    const windows = x.pe.windows.map((w) => `[${w.slot}] ${w.start}..${w.last} ${w.pageSize} ${w.table}`).join('  ') || 'none';
    lines.push(`  PE      ${x.pe.id}: windows ${windows}; bypass ${x.pe.bypass ? 'on' : 'off'}`);
  }
  if (x.group) {
    const g = x.group;
    lines.push(`  group   ${g.id}: owner ${g.owner ?? 'kernel'}, domain ${g.domain}; ${x.device} ${g.claimed ? 'claimed' : 'not claimed'}, ${g.attached ? 'attached' : 'not attached'}`);
  }
  if (x.window) lines.push(`  window  ${x.window.slot}: ${x.window.start}..${x.window.last} ${x.window.pageSize} ${x.window.table}`);
  if (x.domain) {
    const all = x.domain.apertures.length > 1 ? ` (apertures ${x.domain.apertures.map((a) => `[${a[0]}, ${a[1]}]`).join(' ')})` : '';
    lines.push(`  domain  ${x.domain.id} of ${x.domain.context}: aperture [${x.domain.aperture[0]}, ${x.domain.aperture[1]}]${all}`);
  }
  if (x.tce) lines.push(`  TCE     #${x.tce.index} = ${x.tce.value}: page ${x.tce.page}, ${x.tce.perm} -> ${x.tce.phys}`);
  for (const [label, e] of [['mapped', x.mappedBy], ['cleared', x.clearedBy], ['removed', x.removedBy]] as const) {
    if (e) lines.push(`  ${label.padEnd(7)} at ${pointLabel(e)} by ${e.command} (${e.commandId}): ${e.summary}`);
  }
  return lines.join('\n');
}
