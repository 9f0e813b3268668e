import { iommufdInvariants } from './iommufd-invariants.js';
import type { State } from './state.js';
import { tceRuns } from './tce-table.js';

/**
 * Isolation and consistency rules that must hold after every event. Returns the violations found
 * (empty when the state is sound); each names the rule it breaks.
 */
export interface Violation {
  readonly rule: string;
  readonly detail: string;
}

export function invariants(state: State): Violation[] {
  const out: Violation[] = [];
  const bad = (rule: string, detail: string) => out.push({ rule, detail });

  for (const dev of Object.values(state.devices)) {
    if (!state.phbs[dev.phb]) bad('device-phb', `${dev.bdf} refers to missing PHB ${dev.phb}`);
    const pe = state.pes[dev.pe];
    if (!pe) bad('device-pe', `${dev.bdf} refers to missing PE ${dev.pe}`);
    else if (!pe.devices.includes(dev.bdf)) bad('device-pe', `${dev.pe} does not list ${dev.bdf}`);
    if (dev.bridge && dev.group !== null) bad('bridge-group', `bridge ${dev.bdf} is in group ${dev.group}`);
    if (dev.group !== null) {
      const g = state.groups[dev.group];
      if (!g) bad('device-group', `${dev.bdf} refers to missing group ${dev.group}`);
      else if (!g.devices.includes(dev.bdf)) bad('device-group', `group ${g.id} does not list ${dev.bdf}`);
      else if (dev.driver !== null && g.owner !== null) bad('driver-owned-group', `${dev.bdf} has kernel driver ${dev.driver} in group ${g.id} owned by ${g.owner}`);
    }
  }
  const seen = new Map<string, number>();
  for (const g of Object.values(state.groups)) {
    for (const bdf of g.devices) {
      if (seen.has(bdf)) bad('one-group', `${bdf} is in groups ${seen.get(bdf)} and ${g.id}`);
      seen.set(bdf, g.id);
      if (state.devices[bdf]?.group !== g.id) bad('device-group', `group ${g.id} lists ${bdf}, which is not in it`);
    }
    const pe = state.pes[g.pe];
    if (!pe || pe.group !== g.id) bad('group-pe', `group ${g.id} and PE ${g.pe} disagree`);
    if ((g.owner === null) !== (g.claimed.length === 0)) bad('owner-claims', `group ${g.id}: owner ${g.owner} with ${g.claimed.length} claims`);
    if (g.owner === null && g.domain.type !== 'platform') bad('kernel-on-platform', `kernel-owned group ${g.id} is on a ${g.domain.type} domain`);
    if (g.owner !== null && g.domain.type === 'platform') bad('user-off-platform', `group ${g.id} owned by ${g.owner} is on the platform domain`);
    if ((g.domain.type === 'paging') !== (g.attached.length > 0)) bad('attached-paging', `group ${g.id}: ${g.attached.length} attached on ${g.domain.type}`);
    for (const bdf of g.claimed) if (!g.devices.includes(bdf)) bad('claims-in-group', `group ${g.id} claims foreign ${bdf}`);
    for (const bdf of g.attached) if (!g.claimed.includes(bdf)) bad('attached-claimed', `group ${g.id}: ${bdf} attached but not claimed`);
    if (g.domain.type === 'paging') {
      const d = state.domains[g.domain.id];
      if (!d) bad('group-domain', `group ${g.id} is on missing domain ${g.domain.id}`);
      else {
        if (d.group !== g.id) bad('group-domain', `group ${g.id} is on domain ${d.id}, which serves group ${d.group}`);
        if (d.context !== g.owner) bad('domain-owner', `group ${g.id} (owner ${g.owner}) is on domain ${d.id} of context ${d.context}`);
        for (const dw of d.windows) {
          const w = pe?.windows[dw.slot];
          if (!w || w.table.kind !== 'domain' || w.table.domain !== d.id) bad('window-programmed', `group ${g.id} is on domain ${d.id} but ${g.pe} slot ${dw.slot} does not translate through it`);
        }
      }
    }
  }
  for (const pe of Object.values(state.pes)) {
    if (!state.phbs[pe.phb]) bad('pe-phb', `${pe.id} refers to missing PHB ${pe.phb}`);
    for (const bdf of pe.devices) if (state.devices[bdf]?.pe !== pe.id) bad('pe-device', `${pe.id} lists ${bdf}, which is not in it`);
    if (pe.group !== null && !state.groups[pe.group]) bad('pe-group', `${pe.id} refers to missing group ${pe.group}`);
    pe.windows.forEach((w, slot) => {
      if (!w || w.table.kind !== 'domain') return;
      const d = state.domains[w.table.domain];
      const dw = d?.windows.find((x) => x.slot === slot);
      if (!d) bad('window-table', `${pe.id} slot ${slot} translates through missing domain ${w.table.domain}`);
      else if (d.pe !== pe.id || !dw || dw.start !== w.start || dw.last !== w.start + w.size - 1n || dw.table.pageShift !== w.pageShift) {
        bad('window-table', `${pe.id} slot ${slot} does not match domain ${d.id}'s aperture`);
      }
    });
  }
  for (const d of Object.values(state.domains)) {
    if (!state.groups[d.group]) bad('domain-group', `domain ${d.id} serves missing group ${d.group}`);
    if (!state.pes[d.pe]) bad('domain-pe', `domain ${d.id} refers to missing PE ${d.pe}`);
    if (d.windows.length < 1 || d.windows.length > 2 || d.windows.some((w, i) => i > 0 && w.slot <= d.windows[i - 1]!.slot)) {
      bad('domain-windows', `domain ${d.id} has windows in slots ${d.windows.map((w) => w.slot).join(',')}`);
    }
    for (const w of d.windows) {
      const entries = Number((w.last - w.start + 1n) >> BigInt(w.table.pageShift));
      if (entries !== w.table.size) bad('tce-in-window', `domain ${d.id} slot ${w.slot}: table of ${w.table.size} entries for a ${entries}-entry window`);
      const runs = tceRuns(w.table);
      const valid = runs.reduce((n, r) => n + r.count, 0);
      if (valid !== w.table.valid) bad('tce-count', `domain ${d.id} slot ${w.slot}: ${valid} valid TCEs, counted ${w.table.valid}`);
      const lastRun = runs[runs.length - 1];
      if (lastRun && lastRun.index + lastRun.count > w.table.size) bad('tce-in-window', `domain ${d.id} slot ${w.slot}: TCE beyond the window`);
    }
    if (d.id >= state.nextDomainId) bad('ids', `domain ${d.id} is not below nextDomainId ${state.nextDomainId}`);
  }
  for (const g of Object.values(state.groups)) if (g.id >= state.nextGroupId) bad('ids', `group ${g.id} is not below nextGroupId`);
  iommufdInvariants(state, bad);
  return out;
}
