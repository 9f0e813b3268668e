import { slotStart } from './ddw.js';
import { qemuTable } from './guest-tce.js';
import { domainMappedBytes } from './pinning.js';
import { iommufdInvariants } from './iommufd-invariants.js';
import type { Bdf } from './pci.js';
import type { PeId, State } from './state.js';
import { tceRuns, tceValidFrom } from './tce-table.js';

/**
 * Isolation and consistency rules that must hold after every event. Each names the rule it breaks.
 *
 * Every rule is checked from an object (a device, group, PE, domain, slot or user context) and reads
 * only that object and its neighbours, the objects it names or that name it. That is what makes the
 * incremental form sound: `invariantsAfter(before, after)` checks the objects one step changed (found
 * by reference: the state is immutable, so an untouched record is the same object) together with their
 * neighbours in both states, and so sees every rule whose inputs changed. `invariants(state)` checks
 * everything, and also walks every TCE table to recount its valid entries.
 *
 * The rules: a device is in at most one group and in its PE, bridges have no group, a VF sits in its
 * own VF PE and its PF lists it; a group's owner exists iff it has claims, a kernel-owned group is on
 * the platform domain and a user-owned one never is, a paging group has attached devices (all claimed,
 * all sharing its one domain), that domain serves the group, belongs to its owner and is what the PE
 * window translates through; PE numbers are unique per PHB; windows that name a domain match its
 * aperture; every valid TCE lies inside the window of its table group; each context has pinned exactly
 * what its mappings pin; a slot that is not populated has no device; nothing refers to a removed
 * device, PE, group, domain or slot; an EEH record's PE exists; every guest TCE table belongs to a
 * live table of its LIOBN; a VFIO container owns its group and its domain is its own. The iommufd
 * layer's rules are in iommufd-invariants.ts.
 */
export interface Violation {
  readonly rule: string;
  readonly detail: string;
}

export function invariants(state: State): Violation[] {
  const c = new Checker(state, true);
  for (const bdf of Object.keys(state.devices)) c.device(bdf);
  for (const id of Object.keys(state.groups)) c.group(Number(id));
  for (const id of Object.keys(state.pes)) c.pe(id);
  for (const id of Object.keys(state.domains)) c.domain(Number(id));
  for (const name of Object.keys(state.slots)) c.slot(name);
  const contexts = new Set([...Object.keys(state.pinned), ...Object.values(state.domains).map((d) => d.context)]);
  for (const ctx of contexts) c.context(ctx);
  iommufdInvariants(state, true, (rule, detail) => c.bad(rule, detail));
  for (const pe of Object.keys(state.eeh)) c.eeh(pe);
  c.guestTces();
  c.spapr();
  return c.out;
}

/**
 * The rules an evolve step from `before` to `after` could have broken: those of every object the step
 * changed or removed, and of their neighbours. Cheap enough to run after every event.
 */
export function invariantsAfter(before: State, after: State): Violation[] {
  const devices = new Set<Bdf>();
  const groups = new Set<number>();
  const pes = new Set<PeId>();
  const domains = new Set<number>();
  const slots = new Set<string>();
  const contexts = new Set<string>();
  const addGroupOf = (id: number | null) => id !== null && groups.add(id);

  for (const bdf of changedKeys(before.devices, after.devices)) {
    devices.add(bdf);
    for (const d of [before.devices[bdf], after.devices[bdf]]) {
      if (!d) continue;
      pes.add(d.pe);
      addGroupOf(d.group);
      if (d.pf !== null) devices.add(d.pf);
      for (const vf of d.sriov?.vfs ?? []) devices.add(vf);
    }
  }
  for (const key of changedKeys(before.groups, after.groups)) {
    const id = Number(key);
    groups.add(id);
    for (const g of [before.groups[key], after.groups[key]]) {
      if (!g) continue;
      pes.add(g.pe);
      for (const bdf of g.devices) devices.add(bdf);
      if (g.domain.type === 'paging') domains.add(g.domain.id);
    }
    for (const s of [before, after]) for (const d of Object.values(s.domains)) if (d.group === id) domains.add(d.id);
  }
  for (const id of changedKeys(before.pes, after.pes)) {
    pes.add(id);
    for (const pe of [before.pes[id], after.pes[id]]) {
      if (!pe) continue;
      for (const bdf of pe.devices) devices.add(bdf);
      addGroupOf(pe.group);
      for (const w of pe.windows) if (w?.table.kind === 'domain') domains.add(w.table.domain);
    }
  }
  for (const key of changedKeys(before.domains, after.domains)) {
    domains.add(Number(key));
    for (const d of [before.domains[key], after.domains[key]]) {
      if (!d) continue;
      groups.add(d.group);
      pes.add(d.pe);
      contexts.add(d.context);
    }
  }
  for (const name of changedKeys(before.slots, after.slots)) slots.add(name);
  for (const ctx of changedKeys(before.pinned, after.pinned)) contexts.add(ctx);
  const eehPes = new Set([...changedKeys(before.eeh, after.eeh), ...changedKeys(before.pes, after.pes)]);

  const c = new Checker(after, false);
  if (after.nextGroupId < before.nextGroupId) c.bad('ids', `nextGroupId went back from ${before.nextGroupId} to ${after.nextGroupId}`);
  if (after.nextDomainId < before.nextDomainId) c.bad('ids', `nextDomainId went back from ${before.nextDomainId} to ${after.nextDomainId}`);
  for (const bdf of devices) c.device(bdf);
  for (const id of groups) c.group(id);
  for (const id of pes) c.pe(id);
  for (const id of domains) c.domain(id);
  for (const name of slots) c.slot(name);
  for (const ctx of contexts) c.context(ctx);
  for (const pe of eehPes) c.eeh(pe);
  if (before.guestTces !== after.guestTces || before.pes !== after.pes || before.kvmTables !== after.kvmTables) c.guestTces();
  if (before.spapr !== after.spapr || before.groups !== after.groups || before.domains !== after.domains) c.spapr();
  // iommufd rules read objects, their domains, groups and devices: any change to those re-checks them.
  const iommufdInputs = before.iommufd !== after.iommufd || before.domains !== after.domains || before.groups !== after.groups || before.devices !== after.devices;
  if (iommufdInputs) iommufdInvariants(after, false, (rule, detail) => c.bad(rule, detail));
  return c.out;
}

/** Keys whose value is not the same object in both records (added, removed or replaced). */
function changedKeys<V>(a: Readonly<Record<string, V>>, b: Readonly<Record<string, V>>): string[] {
  if (a === b) return [];
  const out: string[] = [];
  let common = 0;
  for (const k in b) {
    const old = a[k];
    if (old === undefined) out.push(k);
    else {
      common++;
      if (old !== b[k]) out.push(k);
    }
  }
  // Only look for removed keys when `a` has some `b` lacks.
  if (Object.keys(a).length !== common) for (const k in a) if (b[k] === undefined) out.push(k);
  return out;
}

/** The per-object rules. A missing object has no rules of its own: its former neighbours are checked. */
class Checker {
  readonly out: Violation[] = [];
  constructor(
    private readonly s: State,
    private readonly deep: boolean,
  ) {}

  bad(rule: string, detail: string): void {
    this.out.push({ rule, detail });
  }

  /** Every guest TCE table belongs to a live table of its LIOBN (a KVM table or an enabled PHB window) and fits it. */
  guestTces(): void {
    for (const [key, t] of Object.entries(this.s.guestTces)) {
      const liobn = Number(BigInt(key));
      const kt = this.s.kvmTables[key];
      const g = kt ? { pageShift: kt.pageShift, size: kt.size } : qemuTable(this.s, liobn);
      if (!g) this.bad('guest-tce-dangling', `TCEs of LIOBN ${key}, which has no table`);
      else if (g.pageShift !== t.pageShift || g.size !== t.size) this.bad('guest-tce-geometry', `LIOBN ${key}: contents of 2^${t.pageShift} x ${t.size}, table of 2^${g.pageShift} x ${g.size}`);
    }
  }

  /** A VFIO container owns the groups it holds, and each group's domain exists, is its own and serves that group. */
  spapr(): void {
    for (const c of Object.values(this.s.spapr)) {
      for (const e of c.groups) {
        if (this.s.groups[e.group]?.owner !== c.name) this.bad('spapr-group', `container ${c.name} holds group ${e.group}, which it does not own`);
        if (e.domain === null) continue;
        const d = this.s.domains[e.domain];
        if (!d || d.context !== c.name || d.group !== e.group) this.bad('spapr-domain', `container ${c.name} names domain ${e.domain}, which is not its own for group ${e.group}`);
      }
    }
  }

  /** An EEH record belongs to a PE that exists; a counted freeze has its time stamp. */
  eeh(id: PeId): void {
    const rec = this.s.eeh[id];
    if (!rec) return;
    if (!this.s.pes[id]) this.bad('eeh-dangling', `EEH record of PE ${id}, which does not exist`);
    if (rec.freezeCount > 0 && rec.tstamp === null) this.bad('eeh-count', `PE ${id} counts ${rec.freezeCount} freezes without a time stamp`);
  }

  device(bdf: Bdf): void {
    const s = this.s;
    const dev = s.devices[bdf];
    if (!dev) return;
    if (!s.phbs[dev.phb]) this.bad('device-phb', `${bdf} refers to missing PHB ${dev.phb}`);
    const pe = s.pes[dev.pe];
    if (!pe) this.bad('device-pe', `${bdf} refers to missing PE ${dev.pe}`);
    else if (!pe.devices.includes(bdf)) this.bad('device-pe', `${dev.pe} does not list ${bdf}`);
    else if ((pe.vf === null) !== (dev.pf === null) || (pe.vf !== null && pe.vf !== bdf)) this.bad('vf-pe', `${bdf} sits in ${pe.id}, which serves ${pe.vf === null ? 'a bus' : `VF ${pe.vf}`}`);
    if (dev.bridge && dev.group !== null) this.bad('bridge-group', `bridge ${bdf} is in group ${dev.group}`);
    if (dev.group !== null) {
      const g = s.groups[dev.group];
      if (!g) this.bad('device-group', `${bdf} refers to missing group ${dev.group}`);
      else if (!g.devices.includes(bdf)) this.bad('device-group', `group ${g.id} does not list ${bdf}`);
      else if (dev.driver !== null && g.owner !== null) this.bad('driver-owned-group', `${bdf} has kernel driver ${dev.driver} in group ${g.id} owned by ${g.owner}`);
    }
    if (dev.pf !== null) {
      const pf = s.devices[dev.pf];
      if (!pf?.sriov?.vfs.includes(bdf)) this.bad('vf-pf', `VF ${bdf} refers to PF ${dev.pf}, which does not list it`);
    }
    if (dev.sriov) {
      if (dev.sriov.vfs.length > dev.sriov.totalVfs) this.bad('vf-count', `${bdf} has ${dev.sriov.vfs.length} VFs, TotalVFs ${dev.sriov.totalVfs}`);
      for (const vf of dev.sriov.vfs) if (s.devices[vf]?.pf !== bdf) this.bad('vf-pf', `PF ${bdf} lists ${vf}, which is not its VF`);
    }
    if (dev.pf === null) {
      for (const slot of Object.values(s.slots)) {
        if (slot.phb === dev.phb && slot.bus === dev.bus && slot.state !== 'populated') this.bad('slot-populated', `${bdf} sits behind slot ${slot.name}, which is ${slot.state}`);
      }
    }
  }

  group(id: number): void {
    const s = this.s;
    const g = s.groups[id];
    if (!g) return;
    for (const bdf of g.devices) if (s.devices[bdf]?.group !== id) this.bad('one-group', `group ${id} lists ${bdf}, which is not in it`);
    const pe = s.pes[g.pe];
    if (!pe || pe.group !== id) this.bad('group-pe', `group ${id} and PE ${g.pe} disagree`);
    if ((g.owner === null) !== (g.claimed.length === 0)) this.bad('owner-claims', `group ${id}: owner ${g.owner} with ${g.claimed.length} claims`);
    if (g.owner === null && g.domain.type !== 'platform') this.bad('kernel-on-platform', `kernel-owned group ${id} is on a ${g.domain.type} domain`);
    if (g.owner !== null && g.domain.type === 'platform') this.bad('user-off-platform', `group ${id} owned by ${g.owner} is on the platform domain`);
    if ((g.domain.type === 'paging') !== (g.attached.length > 0)) this.bad('attached-paging', `group ${id}: ${g.attached.length} attached on ${g.domain.type}`);
    for (const bdf of g.claimed) if (!g.devices.includes(bdf)) this.bad('claims-in-group', `group ${id} claims foreign ${bdf}`);
    for (const bdf of g.attached) if (!g.claimed.includes(bdf)) this.bad('attached-claimed', `group ${id}: ${bdf} attached but not claimed`);
    if (g.domain.type === 'paging') {
      const d = s.domains[g.domain.id];
      if (!d) this.bad('group-domain', `group ${id} is on missing domain ${g.domain.id}`);
      else {
        if (d.group !== id) this.bad('group-domain', `group ${id} is on domain ${d.id}, which serves group ${d.group}`);
        if (d.context !== g.owner) this.bad('domain-owner', `group ${id} (owner ${g.owner}) is on domain ${d.id} of context ${d.context}`);
        for (const dw of d.windows) {
          const w = pe?.windows[dw.slot];
          if (!w || w.table.kind !== 'domain' || w.table.domain !== d.id) this.bad('window-programmed', `group ${id} is on domain ${d.id} but ${g.pe} slot ${dw.slot} does not translate through it`);
        }
      }
    }
    if (id >= s.nextGroupId) this.bad('ids', `group ${id} is not below nextGroupId ${s.nextGroupId}`);
  }

  pe(id: PeId): void {
    const s = this.s;
    const pe = s.pes[id];
    if (!pe) return;
    const phb = s.phbs[pe.phb];
    if (!phb) this.bad('pe-phb', `${id} refers to missing PHB ${pe.phb}`);
    else {
      if (pe.number < 0 || pe.number >= Math.max(1, phb.numPes - 1)) this.bad('pe-number', `${id}: PE number ${pe.number} is outside 0..${phb.numPes - 2}`);
      for (const other of Object.values(s.pes)) {
        if (other !== pe && other.phb === pe.phb && other.number === pe.number) this.bad('pe-number', `${id} and ${other.id} share PE number ${pe.number}`);
      }
    }
    for (const bdf of pe.devices) if (s.devices[bdf]?.pe !== id) this.bad('pe-device', `${id} lists ${bdf}, which is not in it`);
    if (pe.vf !== null && pe.devices.some((bdf) => bdf !== pe.vf)) this.bad('vf-pe', `VF PE ${id} holds devices other than ${pe.vf}`);
    if (pe.group !== null && s.groups[pe.group]?.pe !== id) this.bad('pe-group', `${id} refers to group ${pe.group}, which is missing or elsewhere`);
    pe.windows.forEach((w, slot) => {
      if (!w) return;
      if (w.start !== slotStart(s, pe, slot as 0 | 1)) this.bad('window-slot', `${id} slot ${slot} starts at ${w.start}, not at the slot's bus address`);
      if (w.table.kind !== 'domain') return;
      const d = s.domains[w.table.domain];
      const dw = d?.windows.find((x) => x.slot === slot);
      if (!d) this.bad('window-table', `${id} slot ${slot} translates through missing domain ${w.table.domain}`);
      else if (d.pe !== id || !dw || dw.start !== w.start || dw.last !== w.start + w.size - 1n || dw.table.pageShift !== w.pageShift) {
        this.bad('window-table', `${id} slot ${slot} does not match domain ${d.id}'s aperture`);
      }
    });
  }

  domain(id: number): void {
    const s = this.s;
    const d = s.domains[id];
    if (!d) return;
    const group = s.groups[d.group];
    if (!group) this.bad('domain-group', `domain ${id} serves missing group ${d.group}`);
    else if (group.pe !== d.pe) this.bad('domain-group', `domain ${id} is on ${d.pe}, its group ${group.id} on ${group.pe}`);
    const pe = s.pes[d.pe];
    if (!pe) this.bad('domain-pe', `domain ${id} refers to missing PE ${d.pe}`);
    // One or two windows in slot order, each starting at its slot's bus address, never overlapping.
    d.windows.forEach((w, i) => {
      const prev = d.windows[i - 1];
      if (prev && (prev.slot >= w.slot || prev.last >= w.start)) this.bad('domain-windows', `domain ${id}: windows ${prev.slot} and ${w.slot} are out of order or overlap`);
      if (pe && w.start !== slotStart(s, pe, w.slot)) this.bad('tce-in-window', `domain ${id}'s window ${w.slot} does not start at slot ${w.slot} of ${pe.id}`);
      const entries = Number((w.last - w.start + 1n) >> BigInt(w.table.pageShift));
      if (entries !== w.table.size) this.bad('tce-in-window', `domain ${id} slot ${w.slot}: table of ${w.table.size} entries for a ${entries}-entry window`);
      if (tceValidFrom(w.table, w.table.size)) this.bad('tce-in-window', `domain ${id} slot ${w.slot}: valid TCE beyond the window`);
      if (this.deep) {
        const valid = tceRuns(w.table).reduce((n, r) => n + r.count, 0);
        if (valid !== w.table.valid) this.bad('tce-count', `domain ${id} slot ${w.slot}: ${valid} valid TCEs, counted ${w.table.valid}`);
      }
    });
    if (d.windows.length < 1 || d.windows.length > 2) this.bad('domain-windows', `domain ${id} has ${d.windows.length} windows`);
    if (id >= s.nextDomainId) this.bad('ids', `domain ${id} is not below nextDomainId ${s.nextDomainId}`);
  }

  slot(name: string): void {
    const s = this.s;
    const slot = s.slots[name];
    if (!slot) return;
    if (!s.phbs[slot.phb]) this.bad('slot-phb', `slot ${name} refers to missing PHB ${slot.phb}`);
    if (slot.state === 'offline') return;
    for (const other of Object.values(s.slots)) {
      if (other !== slot && other.state !== 'offline' && other.phb === slot.phb && other.bus === slot.bus) this.bad('slot-bus', `slots ${name} and ${other.name} serve one bus`);
    }
    if (slot.state !== 'populated') {
      for (const d of Object.values(s.devices)) {
        if (d.phb === slot.phb && d.bus === slot.bus && d.pf === null) this.bad('slot-populated', `${d.bdf} sits behind slot ${name}, which is ${slot.state}`);
      }
    }
  }

  /** Pinned bytes of a context equal valid TCEs x IOMMU page size over its domains. */
  context(ctx: string): void {
    const s = this.s;
    let mapped = 0n;
    for (const d of Object.values(s.domains)) if (d.context === ctx) mapped += domainMappedBytes(d);
    const pinned = s.pinned[ctx];
    if (pinned !== undefined && pinned <= 0n) this.bad('pinned-pages', `context ${ctx} has a pinned count of ${pinned}`);
    if ((pinned ?? 0n) !== mapped) this.bad('pinned-pages', `context ${ctx} has 0x${(pinned ?? 0n).toString(16)} bytes pinned, its mappings pin 0x${mapped.toString(16)}`);
  }
}
