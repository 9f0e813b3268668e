import type { Command } from '@iommu-orch/core';
import type { WorkloadStep } from '../support/workload.js';

/**
 * What the audit must answer, worked out from the commands alone: the test's own bookkeeping of the
 * workload (which devices share a group, who owns it, which domain is attached, which pages are mapped
 * by which command), fed only with the commands, whether each was accepted, its outputs and the positions
 * of its events. It never calls the model or the audit code, so it checks them rather than repeats them.
 *
 * Rules it encodes (docs/model.md and docs/audit.md): on PowerNV the endpoints of one bus share a group,
 * on pSeries those of one PHB; a command concerns a device when it acts on that device's group (or on
 * a domain serving it) while the device is a member, and concerns a context when the context acts, owns
 * the group acted on, or holds a domain that is used or freed.
 */
export interface OracleGroup {
  readonly id: number;
  readonly devices: Set<string>;
  owner: string | null;
  readonly claimed: Set<string>;
  readonly attached: Set<string>;
  domain: number | null;
}

export interface MappedPage {
  readonly paddr: bigint;
  readonly perm: 'r' | 'rw';
  /** Position of the TcesMapped event that wrote it. */
  readonly position: number;
}

export interface OracleDomain {
  readonly id: number;
  readonly context: string;
  readonly group: number;
  readonly pageShift: number;
  /** Entries of the window it serves (tce32: 2 GiB on PowerNV, 1 GiB on pSeries). */
  readonly entries: number;
  readonly pages: Map<number, MappedPage>;
  /** Last unmap that cleared each page. */
  readonly cleared: Map<number, number>;
  /** How many maps and unmaps wrote each page: pages written more than once tell the last writer from the first. */
  readonly writes: Map<number, number>;
}

export interface OracleState {
  readonly devices: Map<string, { group: number | null }>;
  readonly groups: Map<number, OracleGroup>;
  readonly domains: Map<number, OracleDomain>;
  /** Last removal of each device: position of its DeviceRemoved is not known here, the command's positions are. */
  readonly removedBy: Map<string, readonly number[]>;
}

export interface Concerns {
  readonly devices: Set<string>;
  readonly groups: Set<number>;
  readonly contexts: Set<string>;
}

const BRIDGES = new Set(['0000:00:00.0', '0001:00:00.0']);
const PSERIES_PHB = 2;

/** The group of `bdf`'s bus (PowerNV) or PHB (pSeries) among the live groups, if one exists. */
function groupKey(bdf: string): string {
  const phb = parseInt(bdf.slice(0, 4), 16);
  return phb === PSERIES_PHB ? `${phb}` : `${phb}:${bdf.slice(5, 7)}`;
}

export class Oracle {
  readonly state: OracleState = { devices: new Map(), groups: new Map(), domains: new Map(), removedBy: new Map() };
  /** For every accepted command that wrote events: what it concerns. Indexed like the steps. */
  readonly concerns: (Concerns | null)[] = [];

  constructor(readonly steps: readonly WorkloadStep[]) {
    for (const s of steps) this.concerns.push(s.ok && s.positions.length > 0 ? this.apply(s) : null);
  }

  /** Oracle state after step `index` (deep copy), by replaying the steps up to it. */
  static at(steps: readonly WorkloadStep[], index: number): OracleState {
    return new Oracle(steps.slice(0, index + 1)).state;
  }

  private groupOf(bdf: string): OracleGroup | undefined {
    const g = this.state.devices.get(bdf)?.group;
    return g === null || g === undefined ? undefined : this.state.groups.get(g);
  }

  private apply(s: WorkloadStep): Concerns {
    const c: Concerns = { devices: new Set(), groups: new Set(), contexts: new Set() };
    const touch = (g: OracleGroup | undefined): void => {
      if (!g) return;
      c.groups.add(g.id);
      for (const d of g.devices) c.devices.add(d);
      if (g.owner) c.contexts.add(g.owner);
    };
    const cmd: Command = s.command;
    const last = s.positions[s.positions.length - 1]!;
    const st = this.state;
    switch (cmd.type) {
      case 'addPhb':
        break;
      case 'addDevice': {
        const group = s.output!.group as number | null;
        st.devices.set(cmd.bdf, { group });
        c.devices.add(cmd.bdf);
        if (group !== null) {
          if (!st.groups.has(group)) st.groups.set(group, { id: group, devices: new Set(), owner: null, claimed: new Set(), attached: new Set(), domain: null });
          st.groups.get(group)!.devices.add(cmd.bdf);
          touch(st.groups.get(group));
        }
        expectSameGroup(this, cmd.bdf, group);
        break;
      }
      case 'removeDevice': {
        const g = this.groupOf(cmd.bdf);
        c.devices.add(cmd.bdf);
        touch(g);
        st.devices.delete(cmd.bdf);
        st.removedBy.set(cmd.bdf, s.positions);
        if (!g) break;
        g.attached.delete(cmd.bdf);
        if (g.attached.size === 0) g.domain = null;
        g.claimed.delete(cmd.bdf);
        if (g.claimed.size === 0) g.owner = null;
        g.devices.delete(cmd.bdf);
        if (g.devices.size === 0) {
          for (const d of [...st.domains.values()].filter((x) => x.group === g.id)) {
            c.contexts.add(d.context);
            st.domains.delete(d.id);
          }
          st.groups.delete(g.id);
        }
        break;
      }
      case 'bindDriver':
      case 'unbindDriver':
        c.devices.add(cmd.bdf);
        touch(this.groupOf(cmd.bdf));
        break;
      case 'claimDevice': {
        const g = this.groupOf(cmd.bdf)!;
        g.owner = cmd.context;
        g.claimed.add(cmd.bdf);
        touch(g);
        break;
      }
      case 'releaseDevice': {
        const g = this.groupOf(cmd.bdf)!;
        touch(g);
        g.claimed.delete(cmd.bdf);
        if (g.claimed.size === 0) {
          g.owner = null;
          g.domain = null;
        }
        break;
      }
      case 'allocPagingDomain': {
        const g = this.groupOf(cmd.bdf)!;
        const id = s.output!.domain as number;
        const pageShift = cmd.pageShift ?? 12;
        const window = cmd.bdf.startsWith('0002:') ? 1 << 30 : 2 ** 31;
        st.domains.set(id, { id, context: cmd.context, group: g.id, pageShift, entries: window / 2 ** pageShift, pages: new Map(), cleared: new Map(), writes: new Map() });
        touch(g);
        c.contexts.add(cmd.context);
        break;
      }
      case 'freeDomain': {
        const d = st.domains.get(cmd.domain)!;
        touch(st.groups.get(d.group));
        c.contexts.add(d.context);
        st.domains.delete(cmd.domain);
        break;
      }
      case 'attachDevice': {
        const g = this.groupOf(cmd.bdf)!;
        g.attached.add(cmd.bdf);
        g.domain = cmd.domain;
        touch(g);
        break;
      }
      case 'detachDevice': {
        const g = this.groupOf(cmd.bdf)!;
        touch(g);
        g.attached.delete(cmd.bdf);
        if (g.attached.size === 0) g.domain = null;
        break;
      }
      case 'mapPages':
      case 'unmapPages': {
        const d = st.domains.get(cmd.domain)!;
        touch(st.groups.get(d.group));
        c.contexts.add(d.context);
        const first = Number(cmd.iova >> BigInt(d.pageShift));
        if (cmd.type === 'mapPages') {
          const perm = cmd.prot.write ? 'rw' : 'r';
          for (let i = 0; i < cmd.pgcount; i++) {
            d.pages.set(first + i, { paddr: cmd.paddr + BigInt(i) * cmd.pgsize, perm, position: last });
            d.writes.set(first + i, (d.writes.get(first + i) ?? 0) + 1);
          }
        } else {
          const n = Number(BigInt(s.output!.unmapped as number) / cmd.pgsize);
          for (let i = 0; i < n; i++) {
            d.pages.delete(first + i);
            d.cleared.set(first + i, last);
            d.writes.set(first + i, (d.writes.get(first + i) ?? 0) + 1);
          }
        }
        break;
      }
      case 'iovaToPhys':
        break;
    }
    return c;
  }

  /** Positions of every event of every command that concerns `key` ("device:..", "group:N", "context:.."). */
  positionsConcerning(kind: 'device' | 'group' | 'context', id: string | number): number[] {
    return this.steps.flatMap((s, i) => {
      const c = this.concerns[i];
      if (!c) return [];
      const hit = kind === 'device' ? c.devices.has(id as string) : kind === 'group' ? c.groups.has(id as number) : c.contexts.has(id as string);
      return hit ? [...s.positions] : [];
    });
  }

  /**
   * Ownership periods of a device, a group or a context's groups: [owner, subject, from, to|null],
   * each boundary the last position of the command that changed it.
   */
  ownerPeriods(kind: 'device' | 'group' | 'context', id: string | number): { subject: string; owner: string; from: number; to: number | null }[] {
    const out: { subject: string; owner: string; from: number; to: number | null }[] = [];
    const open = new Map<string, { owner: string; from: number }>();
    const replay = new Oracle([]);
    this.steps.forEach((s, i) => {
      if (!this.concerns[i]) return;
      replay.concerns.push(replay.apply(s));
      const now = new Map<string, string>();
      if (kind === 'device') {
        const owner = replay.groupOf(id as string)?.owner;
        if (owner) now.set(id as string, owner);
      } else if (kind === 'group') {
        const owner = replay.state.groups.get(id as number)?.owner;
        if (owner) now.set(`group ${id}`, owner);
      } else {
        for (const g of replay.state.groups.values()) if (g.owner === id) now.set(`group ${g.id}`, g.owner);
      }
      const at = s.positions[s.positions.length - 1]!;
      for (const [subject, o] of open) {
        if (now.get(subject) === o.owner) continue;
        out.push({ subject, owner: o.owner, from: o.from, to: at });
        open.delete(subject);
      }
      for (const [subject, owner] of now) if (!open.has(subject)) open.set(subject, { owner, from: at });
    });
    for (const [subject, o] of open) out.push({ subject, owner: o.owner, from: o.from, to: null });
    return out.sort((a, b) => a.from - b.from || a.subject.localeCompare(b.subject));
  }
}

/** The oracle's own rule for groups: endpoints of one bus (PowerNV) or PHB (pSeries) share one. */
function expectSameGroup(o: Oracle, bdf: string, group: number | null): void {
  if (BRIDGES.has(bdf)) {
    if (group !== null) throw new Error(`oracle: bridge ${bdf} got group ${group}`);
    return;
  }
  for (const [other, d] of o.state.devices) {
    if (other === bdf || BRIDGES.has(other)) continue;
    if ((groupKey(other) === groupKey(bdf)) !== (d.group === group)) throw new Error(`oracle: ${bdf} in group ${group}, ${other} in ${d.group}`);
  }
}
