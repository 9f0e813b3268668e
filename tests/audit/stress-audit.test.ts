import { canonicalJson, stateView, type Command, type Json } from '@iommu-orch/core';
import { defaultTopologyPath, loadTopology, replay, runStress, type StressReport } from '@iommu-orch/orchestrator';
import { readAll, SqliteEventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditJson } from '../support/cli.js';

/**
 * The audit commands on a log the stress runner wrote (4 actors racing sagas, surprise removals,
 * SR-IOV enable/disable, hot-add). Expectations come from the runner's accepted command sequence
 * (`report.history`), matched to the positions of their events by reading the log in order, and from
 * a small tracker below that reads the commands (and, for which devices came and went and which domain
 * id an allocation got, the data of DeviceAdded/DeviceRemoved/PagingDomainAllocated events). It never
 * calls the model, the replay or the audit code to build an expectation.
 *
 * Seed 12: the runner's standalone unmaps pick a random start page among 4096, so few clear anything
 * (seed 11 at 3000 ops has none); seed 12 has a handful, enough for the "cleared by" answers.
 */
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-stress-'));
const db = join(dir, 'stress.sqlite');

interface LoggedEvent {
  readonly position: number;
  readonly type: string;
  readonly data: Record<string, unknown>;
}

/** One accepted command that wrote events, with the tracker's view around it. */
interface Step {
  readonly command: Command;
  readonly events: readonly LoggedEvent[];
  readonly first: number;
  readonly last: number;
  /** Devices the command names, in its own fields or its events' data (a PF's removal request marks its VFs). */
  readonly named: ReadonlySet<string>;
  /** Group of each named device, and every group the command acts on, on either side of the command. */
  readonly groups: ReadonlySet<number>;
  /** Devices of those groups, before or after the command. */
  readonly members: ReadonlySet<string>;
  /** Owner of each of those groups just before the command. */
  readonly ownersBefore: ReadonlyMap<number, string>;
  /** Forced releases this command made (surprise removal of a claimed device): bdf -> context. */
  readonly forced: ReadonlyMap<string, string>;
}

interface Group {
  readonly devices: Set<string>;
  owner: string | null;
  readonly claimed: Set<string>;
  readonly attached: Set<string>;
  domain: number | null;
}

interface Page {
  readonly pgsize: bigint;
  readonly paddr: bigint;
  readonly position: number;
}

interface Domain {
  readonly context: string;
  readonly group: number;
  /** Page start IOVA -> what maps it. */
  readonly pages: Map<bigint, Page>;
  /** Page start IOVA -> position of the unmap that last cleared it (while not mapped again). */
  readonly cleared: Map<bigint, number>;
}

interface Period {
  subject: string;
  owner: string;
  from: number;
  to: number | null;
}

/**
 * Bookkeeping of the command stream: group membership from the log's DeviceAdded/DeviceRemoved data;
 * owners, attachments and mappings from the commands (kernel rules: the first claim makes the group the
 * context's, the last release gives it back; a surprise removal of a claimed device releases it by
 * force; unmap clears from its start up to the first page that is not mapped).
 */
class Tracker {
  readonly devices = new Map<string, number | null>();
  readonly groups = new Map<number, Group>();
  readonly domains = new Map<number, Domain>();
  /** Ownership periods per subject: a bdf, or `group N`. */
  readonly periods = new Map<string, Period[]>();
  private readonly open = new Map<string, Period>();
  readonly steps: Step[] = [];
  /** Pages an unmap cleared while its domain was attached: asked about right after that unmap. */
  readonly unmapped: { bdf: string; domain: number; iovas: bigint[]; at: number }[] = [];
  /** Every page IOVA each group's domains ever mapped. */
  readonly everMapped = new Map<number, Set<bigint>>();

  /** Slot name -> populated, from the commands. */
  readonly slots = new Map<string, boolean>();
  /** Devices marked for removal (RemovalRequested data), until they go. */
  readonly requested = new Set<string>();

  /**
   * Accepted commands that change nothing, so write no event: a query; an unmap whose first page is
   * not mapped (unmap stops at the first empty page); asking again for a removal already asked for
   * (the device and its VFs); setting the VF count it already has; enabling a populated slot or
   * disabling an empty one.
   */
  writesNothing(c: Command): boolean {
    switch (c.type) {
      case 'iovaToPhys':
        return true;
      case 'unmapPages':
        return !this.domains.get(c.domain)?.pages.has(c.iova);
      case 'requestRemoval':
        return [c.bdf, ...this.vfsOf(c.bdf)].every((b) => this.requested.has(b));
      case 'setNumVfs':
        return this.vfsOf(c.bdf).length === c.numVfs;
      case 'enableSlot':
        return this.slots.get(c.slot) === true || (c.devices ?? []).length === 0;
      case 'disableSlot':
        return this.slots.get(c.slot) === false;
      default:
        return false;
    }
  }

  private readonly pfOf = new Map<string, string>();

  vfsOf(pf: string): string[] {
    return [...this.pfOf].filter(([, p]) => p === pf).map(([vf]) => vf);
  }

  apply(command: Command, events: readonly LoggedEvent[]): void {
    const first = events[0]!.position;
    const last = events[events.length - 1]!.position;
    const named = new Set<string>();
    if ('bdf' in command && typeof command.bdf === 'string') named.add(command.bdf);
    const groups = new Set<number>();
    const groupOf = (bdf: string) => this.devices.get(bdf) ?? null;
    const addGroupOf = (bdf: string) => {
      const g = groupOf(bdf);
      if (g !== null) groups.add(g);
    };
    // SR-IOV on a PF changes its VF list, not its group: a sibling function of the PF is not concerned.
    if (command.type !== 'setNumVfs') for (const b of named) addGroupOf(b);
    if ('domain' in command && typeof command.domain === 'number') {
      const d = this.domains.get(command.domain);
      if (d) groups.add(d.group);
    }
    const ownersBefore = new Map<number, string>();
    const noteOwner = (g: number) => {
      const owner = this.groups.get(g)?.owner;
      if (owner && !ownersBefore.has(g)) ownersBefore.set(g, owner);
    };
    for (const g of groups) noteOwner(g);
    const membersBefore = new Set<string>();
    const noteMembers = (g: number) => {
      for (const b of this.groups.get(g)?.devices ?? []) membersBefore.add(b);
    };
    for (const g of groups) noteMembers(g);
    const forced = new Map<string, string>();

    switch (command.type) {
      case 'claimDevice': {
        const g = this.groups.get(groupOf(command.bdf)!)!;
        expect(g.owner === null || g.owner === command.context).toBe(true);
        g.owner = command.context;
        g.claimed.add(command.bdf);
        break;
      }
      case 'releaseDevice': {
        const g = this.groups.get(groupOf(command.bdf)!)!;
        g.claimed.delete(command.bdf);
        if (g.claimed.size === 0) g.owner = null;
        break;
      }
      case 'attachDevice': {
        const g = this.groups.get(groupOf(command.bdf)!)!;
        g.attached.add(command.bdf);
        g.domain = command.domain;
        break;
      }
      case 'detachDevice': {
        const g = this.groups.get(groupOf(command.bdf)!)!;
        g.attached.delete(command.bdf);
        if (g.attached.size === 0) g.domain = null;
        break;
      }
      case 'freeDomain':
        this.domains.delete(command.domain);
        break;
      case 'registerSlot':
      case 'disableSlot':
        this.slots.set(command.slot, false);
        break;
      case 'enableSlot':
        this.slots.set(command.slot, true);
        break;
      case 'mapPages': {
        const d = this.domains.get(command.domain)!;
        for (let i = 0n; i < BigInt(command.pgcount); i++) {
          const iova = command.iova + i * command.pgsize;
          d.pages.set(iova, { pgsize: command.pgsize, paddr: command.paddr + i * command.pgsize, position: first });
          d.cleared.delete(iova);
          const ever = this.everMapped.get(d.group) ?? new Set();
          this.everMapped.set(d.group, ever.add(iova));
        }
        break;
      }
      case 'unmapPages': {
        const d = this.domains.get(command.domain)!;
        const iovas: bigint[] = [];
        for (let i = 0n; i < BigInt(command.pgcount); i++) {
          const iova = command.iova + i * command.pgsize;
          if (!d.pages.has(iova)) break;
          d.pages.delete(iova);
          d.cleared.set(iova, first);
          iovas.push(iova);
        }
        const g = this.groups.get(d.group)!;
        if (g.domain === command.domain) this.unmapped.push({ bdf: [...g.attached][0]!, domain: command.domain, iovas, at: last });
        break;
      }
      default:
        break;
    }

    // Devices coming and going (enableSlot, disableSlot, setNumVfs), in event order.
    for (const e of events) {
      if (typeof e.data.bdf === 'string') {
        named.add(e.data.bdf);
        const g = groupOf(e.data.bdf);
        if (g !== null) {
          groups.add(g);
          noteOwner(g);
          noteMembers(g);
        }
      }
      if (e.type === 'RemovalRequested') {
        this.requested.add(e.data.bdf as string);
      } else if (e.type === 'PagingDomainAllocated') {
        this.domains.set(e.data.domain as number, { context: e.data.context as string, group: e.data.group as number, pages: new Map(), cleared: new Map() });
      } else if (e.type === 'DeviceAdded') {
        const bdf = e.data.bdf as string;
        const gid = e.data.group as number | null;
        named.add(bdf);
        this.devices.set(bdf, gid);
        if (typeof e.data.pf === 'string') this.pfOf.set(bdf, e.data.pf);
        if (gid !== null) {
          groups.add(gid);
          let g = this.groups.get(gid);
          if (!g) this.groups.set(gid, (g = { devices: new Set(), owner: null, claimed: new Set(), attached: new Set(), domain: null }));
          g.devices.add(bdf);
        }
      } else if (e.type === 'DeviceRemoved') {
        const bdf = e.data.bdf as string;
        named.add(bdf);
        const gid = groupOf(bdf);
        this.devices.delete(bdf);
        this.pfOf.delete(bdf);
        this.requested.delete(bdf);
        if (gid === null) continue;
        const g = this.groups.get(gid)!;
        if (g.claimed.has(bdf)) {
          // Only a surprise removal may take a claimed device: an orderly one waits for the release.
          expect(command).toMatchObject({ type: 'disableSlot', surprise: true });
          forced.set(bdf, g.owner!);
          g.attached.delete(bdf);
          g.claimed.delete(bdf);
          if (g.attached.size === 0) g.domain = null;
          if (g.claimed.size === 0) g.owner = null;
        }
        g.devices.delete(bdf);
        if (g.devices.size === 0) {
          this.groups.delete(gid);
          for (const [id, d] of this.domains) if (d.group === gid) this.domains.delete(id);
        }
      }
    }
    const members = new Set([...membersBefore, ...[...groups].flatMap((g) => [...(this.groups.get(g)?.devices ?? [])])]);
    this.steps.push({ command, events, first, last, named, groups, members, ownersBefore, forced });
    this.trackPeriods(last);
  }

  /** Who owns what now: every present device of an owned group, and every owned group. */
  owners(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [id, g] of this.groups) {
      if (g.owner === null) continue;
      out.set(`group ${id}`, g.owner);
      for (const bdf of g.devices) out.set(bdf, g.owner);
    }
    return out;
  }

  private trackPeriods(at: number): void {
    const now = this.owners();
    for (const [subject, p] of this.open) {
      if (now.get(subject) === p.owner) continue;
      p.to = at;
      this.open.delete(subject);
    }
    for (const [subject, owner] of now) {
      if (this.open.has(subject)) continue;
      const p = { subject, owner, from: at, to: null };
      this.open.set(subject, p);
      const list = this.periods.get(subject) ?? [];
      list.push(p);
      this.periods.set(subject, list);
    }
  }

  /** Group -> owner (or "kernel"), for the diff. */
  groupOwners(): Map<number, string> {
    return new Map([...this.groups].map(([id, g]) => [id, g.owner ?? 'kernel']));
  }
}

let report: StressReport;
let tracker: Tracker;
let head: number;
/** The tracker's group owners at `mid` (the last position of the middle command). */
let mid: number;
let midOwners: Map<number, string>;

beforeAll(async () => {
  // EEH and KVM traffic are left out of this run's mix: a permanent failure or a full-hotplug recovery
  // re-numbers groups and removes devices by rules the tracker below does not re-derive; their audit
  // audit answers are checked on the EEH scenario logs in eeh-audit.test.ts.
  report = await runStress({ seed: 12, ops: 3000, actors: 4, db, topology: loadTopology(defaultTopologyPath()), mix: { eeh: 0, kvm: 0 } });
  expect(report.violations).toEqual([]);
  const store = SqliteEventStore.open(db);
  const batches: { commandId: string; commandType: string; events: LoggedEvent[] }[] = [];
  for await (const e of readAll(store, 0, 5000)) {
    const meta = e.metadata as { commandId: string; commandType: string };
    const lastBatch = batches[batches.length - 1];
    const event = { position: e.position, type: e.type, data: e.data as Record<string, unknown> };
    if (lastBatch?.commandId === meta.commandId) lastBatch.events.push(event);
    else batches.push({ commandId: meta.commandId, commandType: meta.commandType, events: [event] });
  }
  head = await store.head();
  await store.close();
  // Every accepted command writes events but those the tracker calls no-ops (`writesNothing`): the rest
  // and the log's command batches are the same sequence.
  tracker = new Tracker();
  let next = 0;
  for (const c of report.history) {
    if (tracker.writesNothing(c)) continue;
    const batch = batches[next++];
    expect(batch?.commandType, `command ${next} of the log`).toBe(c.type);
    tracker.apply(c, batch!.events);
    if (next === Math.floor(batches.length / 2)) {
      mid = tracker.steps[tracker.steps.length - 1]!.last;
      midOwners = tracker.groupOwners();
    }
  }
  expect(next).toBe(batches.length);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const json = <T>(...argv: string[]): Promise<T> => auditJson<T>(...argv, '--db', db);

interface HistoryJson {
  head: number;
  entries: { position: number; command: string; event: string; summary: string }[];
  owners: { subject: string; owner: string; from: { position: number }; to: { position: number } | null }[];
}

const CONTEXTS = ['vm1', 'vm2', 'vm3', 'vm4'];
const range = (s: Step) => Array.from({ length: s.last - s.first + 1 }, (_, i) => s.first + i);
const periodsOf = (subjects: (s: string) => boolean) =>
  [...tracker.periods].filter(([s]) => subjects(s)).flatMap(([, ps]) => ps)
    .map((p) => ({ subject: p.subject, owner: p.owner, from: p.from, to: p.to }))
    .sort((a, b) => a.from - b.from || a.subject.localeCompare(b.subject));
const ownersJson = (h: HistoryJson) => h.owners.map((o) => ({ subject: o.subject, owner: o.owner, from: o.from.position, to: o.to?.position ?? null }));

describe('audit on a stress-run log (seed 12, 3000 ops, 4 actors, power9)', () => {
  it('the run raced claims, surprise removals, SR-IOV and hot-add', () => {
    const kinds = new Set(tracker.steps.map((s) => s.command.type));
    for (const k of ['claimDevice', 'releaseDevice', 'attachDevice', 'detachDevice', 'mapPages', 'unmapPages', 'freeDomain', 'setNumVfs', 'enableSlot', 'disableSlot']) {
      expect(kinds).toContain(k);
    }
    expect(tracker.steps.some((s) => s.forced.size > 0)).toBe(true);
    // The tracker's forced releases are exactly the log's forced DmaOwnerReleased.
    const logged = tracker.steps.flatMap((s) => s.events.filter((e) => e.type === 'DmaOwnerReleased' && e.data.forced).map((e) => `${e.position}:${e.data.bdf as string}:${e.data.context as string}`));
    const mine = tracker.steps.flatMap((s) => [...s.forced].map(([bdf, ctx]) => `${s.events.find((e) => e.type === 'DmaOwnerReleased' && e.data.bdf === bdf)?.position}:${bdf}:${ctx}`));
    expect(mine).toEqual(logged);
  });

  it('history --device: every claim, release, attach, detach, add and removal naming it, with its context, and its ownership periods', async () => {
    const claimed = new Set(tracker.steps.flatMap((s) => (s.command.type === 'claimDevice' ? [s.command.bdf] : [])));
    const vfs = new Set(tracker.steps.flatMap((s) => s.events.filter((e) => e.type === 'DeviceAdded' && e.data.pf).map((e) => e.data.bdf as string)));
    // A multifunction device: a claimed function whose group holds another function.
    const multi = [...claimed].filter((b) => tracker.steps.some((s) => s.events.some((e) => e.type === 'DeviceAdded' && e.data.bdf !== b && e.data.group !== null
      && s.events.some((f) => f.type === 'DeviceAdded' && f.data.bdf === b && f.data.group === e.data.group))));
    const vf = [...claimed].filter((b) => vfs.has(b));
    expect(multi.length).toBeGreaterThan(0);
    expect(vf.length).toBeGreaterThan(0);
    // The stress runner adds and removes devices through slots (enableSlot, disableSlot) and SR-IOV
    // (setNumVfs), never with addDevice/removeDevice after boot: those are the additions and removals.
    const WATCHED = new Set(['claimDevice', 'releaseDevice', 'attachDevice', 'detachDevice', 'enableSlot', 'disableSlot', 'setNumVfs']);
    let forcedSeen = 0;
    for (const bdf of claimed) {
      const h = await json<HistoryJson>('history', '--device', bdf);
      expect(h.head).toBe(head);
      const at = new Map(h.entries.map((e) => [e.position, e]));
      const steps = tracker.steps.filter((s) => WATCHED.has(s.command.type) && s.named.has(bdf));
      expect(steps.length, bdf).toBeGreaterThan(0);
      for (const s of steps) {
        for (const p of range(s)) expect(at.get(p)?.command, `${bdf}: ${s.command.type} at ${p}`).toBe(s.command.type);
        const c = s.command;
        if (c.type === 'claimDevice' || c.type === 'releaseDevice') {
          const e = s.events.find((x) => x.type === (c.type === 'claimDevice' ? 'DmaOwnerClaimed' : 'DmaOwnerReleased'))!;
          expect(at.get(e.position)!.summary).toMatch(new RegExp(`^${c.context} ${c.type === 'claimDevice' ? 'claimed' : 'released'} ${bdf}`));
        }
        const forcedBy = s.forced.get(bdf);
        if (forcedBy) {
          forcedSeen++;
          const e = s.events.find((x) => x.type === 'DmaOwnerReleased' && x.data.bdf === bdf)!;
          expect(at.get(e.position)!.summary).toMatch(new RegExp(`^${forcedBy} released ${bdf} \\(forced by surprise removal\\)`));
        }
      }
      // Exactly the commands that name it or act on a group it is (or was, or becomes) a member of,
      // directly or through one of the group's domains; each command whole.
      const expected = tracker.steps.filter((s) => s.named.has(bdf) || s.members.has(bdf)).flatMap(range);
      expect(h.entries.map((e) => e.position), bdf).toEqual(expected);
      expect(ownersJson(h), `${bdf} owners`).toEqual(periodsOf((s) => s === bdf));
    }
    expect(forcedSeen).toBeGreaterThan(0);
  });

  it('history --context: exactly the commands it issued and the forced releases it suffered, and the groups it owned when', async () => {
    for (const ctx of CONTEXTS) {
      const h = await json<HistoryJson>('history', '--context', ctx);
      // What the context issued; a surprise removal that took a device it claimed, or any group it owned
      // (the group's domains are freed); a removal request aimed at it (the owner of the named device).
      const expected = tracker.steps
        .filter((s) => ('context' in s.command && s.command.context === ctx) || [...s.forced.values()].includes(ctx)
          || ((s.command.type === 'requestRemoval' || s.command.type === 'disableSlot' || s.command.type === 'setNumVfs') && [...s.ownersBefore.values()].includes(ctx)))
        .flatMap(range);
      expect(h.entries.map((e) => e.position), ctx).toEqual(expected);
      expect(ownersJson(h), `${ctx} owners`).toEqual(periodsOf((s) => s.startsWith('group ')).filter((p) => p.owner === ctx));
    }
  });

  it('explain at the head: live mappings are reachable at paddr + offset and name their mapPages; unmapped pages are not', async () => {
    let reachable = 0;
    let cleared = 0;
    for (const [gid, g] of tracker.groups) {
      if (g.owner === null || g.domain === null) continue;
      const d = tracker.domains.get(g.domain)!;
      expect(d.group).toBe(gid);
      const bdf = [...g.attached][0]!;
      for (const [iova, page] of [...d.pages].slice(0, 4)) {
        const offset = BigInt((iova % 7n) * 0x1d1n) % 0x1000n;
        const x = await json<ExplainJson>('explain', '--device', bdf, '--iova', `0x${(iova + offset).toString(16)}`);
        expect(x.verdict, `${bdf} ${iova.toString(16)}`).toBe('reachable');
        expect(x.reachable).toBe(true);
        expect(x.domain).toMatchObject({ id: g.domain, context: d.context });
        expect(x.tce?.phys).toBe(`0x${(page.paddr + offset).toString(16)}`);
        expect(x.mappedBy).toMatchObject({ position: page.position, command: 'mapPages' });
        reachable++;
      }
      // Pages an earlier domain of this group mapped and this one does not: nothing maps them now.
      for (const iova of [...(tracker.everMapped.get(gid) ?? [])].filter((v) => ![...d.pages].some(([p, m]) => p <= v && v < p + m.pgsize)).slice(0, 3)) {
        const x = await json<ExplainJson>('explain', '--device', bdf, '--iova', `0x${iova.toString(16)}`);
        expect(x.reachable, `${bdf} ${iova.toString(16)}`).toBe(false);
        expect(['empty-tce', 'outside-window']).toContain(x.verdict);
        if (x.verdict === 'empty-tce') expect(x.clearedBy?.position).toBe(d.cleared.get(iova));
        cleared++;
      }
    }
    // Right after an unmap of an attached domain, its pages are empty and name that unmap.
    for (const u of tracker.unmapped) {
      for (const iova of u.iovas.slice(0, 3)) {
        const x = await json<ExplainJson>('explain', '--device', u.bdf, '--iova', `0x${iova.toString(16)}`, '--at', String(u.at));
        expect({ verdict: x.verdict, reachable: x.reachable, domain: x.domain?.id, clearedBy: x.clearedBy?.position }).toEqual({ verdict: 'empty-tce', reachable: false, domain: u.domain, clearedBy: u.at });
        cleared++;
      }
    }
    // Pages of domains nobody has attached (detached, not freed): no device reaches them.
    for (const d of tracker.domains.values()) {
      const g = tracker.groups.get(d.group)!;
      if (g.domain !== null || d.pages.size === 0) continue;
      const [iova] = [...d.pages][0]!;
      const x = await json<ExplainJson>('explain', '--device', [...g.devices][0]!, '--iova', `0x${iova.toString(16)}`);
      expect(x.reachable).toBe(false);
    }
    expect(reachable).toBeGreaterThan(3);
    expect(cleared).toBeGreaterThan(0);
    expect(tracker.unmapped.length).toBeGreaterThan(0);
  });

  it('diff --from <mid> --to <head>: the ownership changes of the claims, releases and removals between them', async () => {
    const d = await json<{ diff: { ownership: { group: number; from: string; to: string }[] } }>('diff', '--from', String(mid), '--to', String(head));
    const now = tracker.groupOwners();
    const ids = [...new Set([...midOwners.keys(), ...now.keys()])];
    const owner = (m: Map<number, string>, g: number) => m.get(g) ?? 'none';
    const user = (o: string) => CONTEXTS.includes(o);
    const expected = ids.filter((g) => owner(midOwners, g) !== owner(now, g) && (user(owner(midOwners, g)) || user(owner(now, g))))
      .map((g) => `${g}:${owner(midOwners, g)}->${owner(now, g)}`).sort();
    expect(expected.length).toBeGreaterThan(0);
    expect(d.diff.ownership.map((o) => `${o.group}:${o.from}->${o.to}`).sort()).toEqual(expected);
  });

  it('replay --at p is replay(store, { at: p })', async () => {
    const store = SqliteEventStore.open(db);
    try {
      for (const p of [tracker.steps[0]!.last, Math.floor(head / 3), mid, head]) {
        const r = await json<{ position: number; state: Json }>('replay', '--at', String(p));
        expect(r.position).toBe(p);
        expect(canonicalJson(r.state)).toBe(canonicalJson(stateView((await replay(store, { at: p })).state)));
      }
    } finally {
      await store.close();
    }
  });
});

interface ExplainJson {
  verdict: string;
  reachable: boolean;
  tce?: { phys: string };
  domain?: { id: number; context: string };
  mappedBy?: { position: number; command: string };
  clearedBy?: { position: number };
}
