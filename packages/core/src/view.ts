import { iommufdView } from './iommufd-view.js';
import type { DomainRef, DomainWindow, PagingDomain, State, TableRef, Window } from './state.js';
import { pnvTableBytes, pnvTableGeometry } from './tce-levels.js';
import { TCE_PERM_MASK, tcePermName, tceRuns } from './tce-table.js';
import { toHex, toHexRecord } from './u64.js';

/**
 * A lossless, JSON-only view of the state: u64 values as hex, TCE tables as runs of consecutive
 * mappings. Two states are equal exactly when their canonical views are byte-identical; audit commands
 * print this same view.
 */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };

export function stateView(state: State): Json {
  return {
    version: state.version,
    nextGroupId: state.nextGroupId,
    nextDomainId: state.nextDomainId,
    phbs: Object.values(state.phbs).map((p) => ({
      domain: p.domain, platform: p.platform, generation: p.generation, numPes: p.numPes, pageShifts: [...p.pageShifts],
      // QEMU/KVM is implied by the platform (and is every pSeries PHB of a log written before PowerVM was modelled).
      ...(p.hypervisor === 'powervm' ? { hypervisor: p.hypervisor } : {}),
    })),
    pes: Object.values(state.pes).map((pe) => ({
      id: pe.id, phb: pe.phb, number: pe.number, bus: pe.bus, ...(pe.vf === null ? {} : { vf: pe.vf }), devices: [...pe.devices], group: pe.group,
      tableGroup: {
        tce32Start: toHex(pe.tableGroup.tce32Start), tce32Size: toHex(pe.tableGroup.tce32Size),
        pageShifts: [...pe.tableGroup.pageShifts], maxDynamicWindows: pe.tableGroup.maxDynamicWindows, maxLevels: pe.tableGroup.maxLevels,
      },
      windows: pe.windows.map(windowView),
      bypass: pe.bypass,
    })),
    devices: Object.values(state.devices).map((d) => ({
      bdf: d.bdf, vendor: hex4(d.vendor), device: hex4(d.device), class: `0x${d.classCode.toString(16).padStart(6, '0')}`,
      bridge: d.bridge, driver: d.driver, pe: d.pe, group: d.group,
      ...(d.pf === null ? {} : { pf: d.pf }),
      ...(d.sriov === null ? {} : {
        sriov: {
          totalVfs: d.sriov.totalVfs, vfOffset: d.sriov.vfOffset, vfStride: d.sriov.vfStride, vfDevice: hex4(d.sriov.vfDevice),
          numVfs: d.sriov.vfs.length, vfs: [...d.sriov.vfs],
        },
      }),
      ...(d.removalRequested ? { removalRequested: true } : {}),
    })),
    groups: Object.values(state.groups).map((g) => ({
      id: g.id, pe: g.pe, devices: [...g.devices], owner: g.owner, claimed: [...g.claimed], domain: domainRefView(g.domain), attached: [...g.attached],
    })),
    domains: Object.values(state.domains).map((d) => ({
      id: d.id, context: d.context, group: d.group, pe: d.pe,
      windows: d.windows.map((w) => domainWindowView(state, d, w)), mappings: [...domainMappings(d)],
    })),
    slots: Object.values(state.slots).map((s) => ({ name: s.name, phb: s.phb, bus: s.bus, state: s.state })),
    pinned: toHexRecord(state.pinned),
    ...(Object.keys(state.leakedPinned).length === 0 ? {} : { leakedPinned: toHexRecord(state.leakedPinned) }),
    dma64Base: Object.entries(state.dma64Base).map(([phb, base]) => ({ phb: Number(phb), base: toHex(base) })),
    iommufd: iommufdView(state),
    ...(Object.keys(state.eeh).length === 0 ? {} : { eeh: eehView(state) }),
    ...hypervisorView(state),
  };
}

/**
 * One window of a domain. `kernelBytes` is what the PowerNV kernel has allocated for its table now
 * (top level plus the lower levels written so far); null on pSeries, where the hypervisor holds it.
 */
function domainWindowView(state: State, d: PagingDomain, w: DomainWindow): Json {
  const powernv = state.phbs[state.pes[d.pe]!.phb]!.platform === 'powernv';
  const size = w.last - w.start + 1n;
  return {
    slot: w.slot, aperture: [toHex(w.start), toHex(w.last)], pgsize: toHex(1n << BigInt(w.table.pageShift)), levels: w.levels,
    entries: w.table.size, validTces: w.table.valid,
    kernelBytes: powernv ? pnvTableBytes(pnvTableGeometry(w.table.pageShift, size, w.levels), w.table) : null,
  };
}

export type MappingView = {
  readonly iova: string;
  readonly paddr: string;
  readonly pages: number;
  /** "r" (TCE_PCI_READ) or "rw" (READ|WRITE). */
  readonly perm: string;
};

/** A domain's valid TCEs as ranges: consecutive pages, consecutive addresses, same permission. */
export function domainMappings(d: PagingDomain): MappingView[] {
  return d.windows.flatMap((w) => {
    const shift = BigInt(w.table.pageShift);
    return tceRuns(w.table).map((r) => ({
      iova: toHex(w.start + (BigInt(r.index) << shift)),
      paddr: toHex(r.first & ~TCE_PERM_MASK),
      pages: r.count,
      perm: tcePermName(r.first),
    }));
  });
}

function hex4(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

export function domainRefView(ref: DomainRef): string {
  return ref.type === 'paging' ? `paging:${ref.id}` : ref.type;
}

/** What a window translates through: "kernel", "kernel-ddw" (a pSeries dynamic window) or "domain:N". */
export function tableRefView(ref: TableRef): string {
  if (ref.kind === 'domain') return `domain:${ref.domain}`;
  return ref.dynamic ? 'kernel-ddw' : 'kernel';
}

function windowView(w: Window | null): Json {
  return w && { start: toHex(w.start), last: toHex(w.start + w.size - 1n), pageShift: w.pageShift, table: tableRefView(w.table) };
}

/** JSON with object keys sorted at every level: a byte-stable encoding of a view. */
export function canonicalJson(value: Json): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, Json>)[key]!);
    return out;
  }
  return value;
}

export function canonicalState(state: State): string {
  return canonicalJson(stateView(state));
}

/** EEH bookkeeping per PE: everything a recovery changes, kept apart so it can be set aside in comparisons. */
function eehView(state: State): Json {
  return Object.fromEntries(
    Object.entries(state.eeh).map(([pe, r]) => [
      pe,
      { state: r.state, mmioFrozen: r.mmioFrozen, dmaFrozen: r.dmaFrozen, freezeCount: r.freezeCount, tstamp: r.tstamp, result: r.result },
    ]),
  );
}

/** The hypervisor side (guest TCE tables, KVM tables and memslots, preregistered memory), when there is any. */
function hypervisorView(state: State): Record<string, Json> {
  const out: Record<string, Json> = {};
  if (Object.keys(state.guestTces).length > 0) {
    out.guestTces = Object.fromEntries(
      Object.entries(state.guestTces).map(([liobn, t]) => [
        liobn,
        { pageShift: t.pageShift, entries: t.size, valid: t.valid, runs: tceRuns(t).map((r) => ({ index: r.index, count: r.count, first: toHex(r.first) })) },
      ]),
    );
  }
  if (Object.keys(state.kvmTables).length > 0) {
    out.kvmTables = Object.values(state.kvmTables).map((k) => ({
      liobn: toHex(BigInt(k.liobn)), pageShift: k.pageShift, offset: toHex(k.offset), size: k.size, links: k.groups.map((l) => ({ group: l.group, context: l.context })),
    }));
  }
  if (Object.keys(state.memslots).length > 0) {
    out.memslots = Object.values(state.memslots).map((m) => ({ slot: m.slot, gpa: toHex(m.gpa), size: toHex(m.size), ua: toHex(m.ua) }));
  }
  if (Object.keys(state.spapr).length > 0) {
    out.spapr = Object.values(state.spapr).map((c) => ({
      name: c.name, v2: c.v2, memlockPages: c.memlockPages, enabled: c.enabled, groups: c.groups.map((e) => ({ group: e.group, domain: e.domain })), defWindowPending: c.defWindowPending,
      regions: c.regions.map((r) => ({ ua: toHex(r.ua), size: toHex(r.size) })),
    }));
  }
  if (state.prereg.length > 0) {
    out.prereg = state.prereg.map((r) => ({ ua: toHex(r.ua), size: toHex(r.size), pageShift: r.pageShift, users: r.users, ...(r.leaked > 0 ? { leaked: r.leaked } : {}) }));
  }
  const hv = state.platformHv;
  if (hv.entitlement !== null || Object.keys(hv.faults).length > 0) {
    out.platformHv = {
      entitlement: hv.entitlement === null ? null : toHex(hv.entitlement),
      faults: Object.entries(hv.faults).map(([phb, f]) => ({ phb: Number(phb), code: f.code, remaining: f.remaining })),
    };
  }
  return out;
}
