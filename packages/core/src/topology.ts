import { detachDevice } from './domain.js';
import { fail } from './errors.js';
import { releaseDevice, requireDevice } from './group.js';
import { releaseForRemoval } from './idevice.js';
import { ensurePe, peAddDevice, peRemoveDevice } from './pe.js';
import {
  isBridgeClass, normalizeBdf, parseBdf, PHB_PAGE_SHIFTS, PLATFORM_GENERATIONS, type Bdf, type PhbGeneration, type Platform,
} from './pci.js';
import { unmapAll } from './pinning.js';
import { drop, patch, put, without, type Device, type Phb, type State } from './state.js';
import type { DeviceFields } from './commands.js';
import type { Hypervisor } from './platform-hv.js';
import type { Tx } from './tx.js';
import { clearWindows, setDefaultConfig } from './window.js';

/**
 * PCI topology: PHBs and devices, hot-add and hot-remove, kernel driver binding.
 *
 * Invariants: every device's PHB exists; a device sits in exactly one PE (its bus's, or its own for a
 * VF) and in at most one group (none for bridges); a VF's PF lists it; removing the last device of a
 * group removes the group (and frees, after a forced unmap, the paging domains that served it), and the
 * last device of a PE releases the PE (its windows and PE number).
 */
export type TopologyEvent =
  | {
      readonly type: 'PhbAdded';
      readonly data: {
        readonly phb: number;
        readonly platform: Platform;
        readonly generation: PhbGeneration;
        readonly numPes: number;
        readonly pageShifts: readonly number[];
        /** pSeries under PowerVM; absent: QEMU/KVM on pSeries (every log before it existed), nothing on PowerNV. */
        readonly hypervisor?: 'powervm';
      };
    }
  | {
      readonly type: 'DeviceAdded';
      readonly data: {
        readonly bdf: Bdf;
        readonly vendor: number;
        readonly device: number;
        readonly classCode: number;
        readonly bridge: boolean;
        readonly driver: string | null;
        readonly pe: string;
        readonly group: number | null;
        /** Present for a VF: its PF. */
        readonly pf?: Bdf;
        /** Present for a PF with an SR-IOV capability. */
        readonly sriov?: SriovCapability;
      };
    }
  | { readonly type: 'DeviceRemoved'; readonly data: { readonly bdf: Bdf; readonly surprise: boolean } }
  | { readonly type: 'DriverBound'; readonly data: { readonly bdf: Bdf; readonly driver: string } }
  | { readonly type: 'DriverUnbound'; readonly data: { readonly bdf: Bdf } }
  /** First phase of an orderly removal; `context` is the owner asked to release the device, if any. */
  | { readonly type: 'RemovalRequested'; readonly data: { readonly bdf: Bdf; readonly context: string | null } };

export interface SriovCapability {
  readonly totalVfs: number;
  readonly vfOffset: number;
  readonly vfStride: number;
  readonly vfDevice: number;
}

export interface PhbSpec {
  readonly phb: number;
  readonly platform: Platform;
  readonly generation: PhbGeneration;
  readonly numPes?: number;
  /** pSeries only: QEMU's page_size_mask (`pgsz`), which a user may widen beyond 4K|64K (2M, 16M, ...). */
  readonly pageShifts?: readonly number[];
  /** pSeries only: who answers the partition's hcalls (default QEMU/KVM). */
  readonly hypervisor?: Hypervisor;
}

/** Page sizes an sPAPR PHB can offer (the LoPAR query mask's sizes). */
const SPAPR_PAGE_SHIFTS = [12, 16, 21, 24, 25, 26, 27, 28, 34];

export function addPhb(tx: Tx, spec: PhbSpec): void {
  if (!Number.isInteger(spec.phb) || spec.phb < 0 || spec.phb > 0xffff) fail('EINVAL', `PHB number ${spec.phb} is not a 16-bit PCI domain`);
  if (tx.state.phbs[spec.phb]) fail('EEXIST', `PHB ${spec.phb} already exists`);
  if (!PLATFORM_GENERATIONS[spec.platform].includes(spec.generation)) {
    fail('EINVAL', `a ${spec.platform} host has no ${spec.generation} PHB (expected ${PLATFORM_GENERATIONS[spec.platform].join(' or ')})`);
  }
  const numPes = spec.numPes ?? (spec.platform === 'powernv' ? 256 : 1);
  const allowed = spec.platform === 'powernv' ? (spec.generation === 'PHB3' ? [256] : [256, 512]) : [1];
  if (!allowed.includes(numPes)) fail('EINVAL', `${spec.generation} supports ${allowed.join(' or ')} PEs, not ${numPes}`);
  let pageShifts = PHB_PAGE_SHIFTS[spec.generation];
  if (spec.pageShifts !== undefined) {
    if (spec.platform !== 'pseries') fail('EINVAL', 'page sizes are a property of an sPAPR PHB; a PowerNV PHB has those of its generation');
    if (!spec.pageShifts.includes(12) || spec.pageShifts.some((s) => !SPAPR_PAGE_SHIFTS.includes(s))) {
      fail('EINVAL', `sPAPR page shifts ${spec.pageShifts.join(',')}: 12 is required and each must be one of ${SPAPR_PAGE_SHIFTS.join(',')}`);
    }
    pageShifts = [...new Set(spec.pageShifts)].sort((a, b) => a - b);
  }
  const hypervisor = requireHypervisor(tx.state, spec);
  tx.emit({
    type: 'PhbAdded',
    data: { phb: spec.phb, platform: spec.platform, generation: spec.generation, numPes, pageShifts, ...(hypervisor === 'powervm' ? { hypervisor } : {}) },
  });
}

/** A PowerNV host runs on no hypervisor; the pSeries PHBs of one partition share the one it runs under. */
function requireHypervisor(state: State, spec: PhbSpec): Hypervisor | null {
  if (spec.platform !== 'pseries') {
    if (spec.hypervisor !== undefined) fail('EINVAL', 'a PowerNV PHB is driven by the kernel itself: it has no hypervisor');
    return null;
  }
  const hypervisor = spec.hypervisor ?? 'qemu';
  const other = Object.values(state.phbs).find((p) => p.hypervisor !== null && p.hypervisor !== hypervisor);
  if (other) fail('EINVAL', `PHB ${other.domain} runs under ${other.hypervisor}: the pSeries PHBs of a partition share one hypervisor, not ${hypervisor}`);
  return hypervisor;
}

/** A PCI function as addDevice describes it (the command's own fields). */
export type DeviceSpec = DeviceFields;

/** Hot-add (or boot-time probe): PE on first device of the bus, group and DMA set-up on first endpoint. */
export function addDevice(tx: Tx, spec: DeviceSpec): Bdf {
  const addr = parseBdf(spec.bdf);
  const bdf = normalizeBdf(spec.bdf);
  const phb = tx.state.phbs[addr.domain] ?? fail('ENODEV', `no PHB ${addr.domain.toString(16).padStart(4, '0')} for ${bdf}`);
  if (tx.state.devices[bdf]) fail('EEXIST', `device ${bdf} already exists`);
  for (const [name, v, max] of [['vendor', spec.vendor, 0xffff], ['device', spec.device, 0xffff], ['class', spec.classCode, 0xffffff]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max) fail('EINVAL', `${name} id ${v} is out of range for ${bdf}`);
  }
  requireProbeable(tx.state, addr.domain, addr.bus, bdf);
  const bridge = spec.bridge ?? isBridgeClass(spec.classCode);
  const sriov = sriovCapability(spec, bdf, bridge);
  let pe = ensurePe(tx, phb, addr.bus);
  let group: number | null = null;
  if (!bridge) {
    if (pe.group === null) {
      const id = tx.state.nextGroupId;
      tx.emit({ type: 'GroupCreated', data: { group: id, pe: pe.id } });
      setDefaultConfig(tx, tx.state.pes[pe.id]!);
      pe = tx.state.pes[pe.id]!;
    }
    group = pe.group;
  }
  const driver = spec.driver ?? null;
  if (driver !== null && group !== null && tx.state.groups[group]!.owner !== null) {
    fail('EBUSY', `group ${group} is owned by context ${tx.state.groups[group]!.owner}; driver ${driver} cannot use its default domain`);
  }
  tx.emit({
    type: 'DeviceAdded',
    data: {
      bdf, vendor: spec.vendor, device: spec.device, classCode: spec.classCode, bridge, driver, pe: pe.id, group,
      ...(sriov === null ? {} : { sriov }),
    },
  });
  return bdf;
}

/** Validates the SR-IOV fields of a device spec: every VF routing ID must exist on some bus. */
function sriovCapability(spec: DeviceSpec, bdf: Bdf, bridge: boolean): SriovCapability | null {
  if (spec.totalVfs === undefined) {
    if (spec.vfOffset !== undefined || spec.vfStride !== undefined || spec.vfDevice !== undefined) {
      fail('EINVAL', `${bdf}: vfOffset, vfStride and vfDevice need totalVfs`);
    }
    return null;
  }
  if (bridge) fail('EINVAL', `${bdf} is a bridge: bridges have no SR-IOV capability`);
  const cap = { totalVfs: spec.totalVfs, vfOffset: spec.vfOffset ?? 1, vfStride: spec.vfStride ?? 1, vfDevice: spec.vfDevice ?? spec.device };
  for (const [name, v, min] of [['totalVfs', cap.totalVfs, 1], ['vfOffset', cap.vfOffset, 1], ['vfStride', cap.vfStride, 1], ['vfDevice', cap.vfDevice, 0]] as const) {
    if (!Number.isInteger(v) || v < min || v > 0xffff) fail('EINVAL', `${bdf}: ${name} ${v} is out of range`);
  }
  if (routingId(bdf) + cap.vfOffset + (cap.totalVfs - 1) * cap.vfStride > 0xffff) {
    fail('EINVAL', `${bdf}: the routing IDs of ${cap.totalVfs} VFs run past bus ff`);
  }
  return cap;
}

/** The 16-bit routing ID (bus << 8 | devfn) of an address. */
export function routingId(bdf: Bdf): number {
  const a = parseBdf(bdf);
  return (a.bus << 8) | (a.device << 3) | a.fn;
}

/**
 * A device can only be probed on a bus that is powered: a bus served by a hotplug slot needs the slot
 * POPULATED (pnv_php powers the slot before the rescan that finds its devices).
 */
export function requireProbeable(state: State, phb: number, bus: number, bdf: Bdf): void {
  for (const slot of Object.values(state.slots)) {
    if (slot.phb === phb && slot.bus === bus && slot.state !== 'populated') {
      fail('ENODEV', `${bdf} sits behind slot ${slot.name}, which is ${slot.state}: enable the slot first`);
    }
  }
}

/** Driver probe: iommu_device_use_default_domain refuses (EBUSY) a group owned by a user context. */
export function bindDriver(tx: Tx, bdf: Bdf, driver: string): void {
  const dev = requireDevice(tx.state, bdf);
  if (dev.driver !== null) fail('EBUSY', `${bdf} is already bound to ${dev.driver}`);
  if (dev.removalRequested) fail('ENODEV', `${bdf} is being removed`);
  const group = dev.group === null ? undefined : tx.state.groups[dev.group];
  if (group?.owner) fail('EBUSY', `group ${group.id} is owned by context ${group.owner}; ${driver} cannot use its default domain`);
  tx.emit({ type: 'DriverBound', data: { bdf, driver } });
}

export function unbindDriver(tx: Tx, bdf: Bdf): void {
  const dev = requireDevice(tx.state, bdf);
  if (dev.driver === null) fail('ENODEV', `${bdf} has no driver bound`);
  // A PF driver's remove() disables SR-IOV, which would wait on every VF in use: the model asks for it explicitly.
  if (dev.sriov && dev.sriov.vfs.length > 0) fail('EBUSY', `${bdf} has ${dev.sriov.vfs.length} VFs enabled: set numVfs to 0 before unbinding its driver`);
  tx.emit({ type: 'DriverUnbound', data: { bdf } });
}

/**
 * First phase of an orderly removal (the kernel's vfio request(): the owner is asked to release the
 * device). Marks the device, and a PF's VFs first, so no new claim or driver probe gets in while the
 * removal waits; the owner keeps what it holds until it lets go. Returns how many devices were newly
 * marked: asking again changes nothing.
 */
export function requestRemoval(tx: Tx, bdf: Bdf): number {
  const dev = requireDevice(tx.state, bdf);
  let marked = 0;
  for (const target of [...(dev.sriov?.vfs ?? []), bdf]) {
    const d = tx.state.devices[target]!;
    if (d.removalRequested) continue;
    const group = d.group === null ? null : tx.state.groups[d.group]!;
    const context = group?.claimed.includes(target) ? group.owner : null;
    tx.emit({ type: 'RemovalRequested', data: { bdf: target, context } });
    marked++;
  }
  return marked;
}

/**
 * Hot removal of a device (a PF takes its VFs with it, last VF first). An orderly removal of a device a
 * user context has claimed is refused with EBUSY: the kernel's removal waits until the owner releases
 * it. A surprise removal cannot wait: the device is detached and its claim released by force first.
 * A VF is not removed on its own: disabling SR-IOV on its PF removes it.
 */
export function removeDevice(tx: Tx, bdf: Bdf, surprise: boolean): void {
  const dev = requireDevice(tx.state, bdf);
  if (dev.pf !== null) fail('EINVAL', `${bdf} is a VF of ${dev.pf}: VFs are removed by setting the PF's numVfs to 0`);
  for (const vf of [...(dev.sriov?.vfs ?? [])].reverse()) removeFunction(tx, vf, surprise);
  removeFunction(tx, bdf, surprise);
}

/** Removes one PCI function and whatever only it kept alive: its group, those domains, its PE. */
export function removeFunction(tx: Tx, bdf: Bdf, surprise: boolean): void {
  releaseForRemoval(tx, bdf, surprise);
  const dev = requireDevice(tx.state, bdf);
  if (dev.group !== null) {
    const g = tx.state.groups[dev.group]!;
    if (g.claimed.includes(bdf)) {
      if (!surprise) fail('EBUSY', `${bdf} is claimed by context ${g.owner}; removal waits until it is released`);
      const owner = g.owner!;
      if (g.attached.includes(bdf)) detachDevice(tx, owner, bdf);
      releaseDevice(tx, owner, bdf, true);
    }
  }
  if (dev.driver !== null) tx.emit({ type: 'DriverUnbound', data: { bdf } });
  tx.emit({ type: 'DeviceRemoved', data: { bdf, surprise } });
  if (dev.group !== null && tx.state.groups[dev.group]!.devices.length === 0) {
    for (const d of Object.values(tx.state.domains)) {
      if (d.group !== dev.group) continue;
      unmapAll(tx, d.id);
      tx.emit({ type: 'PagingDomainFreed', data: { domain: d.id, reason: 'group-removed' } });
    }
    tx.emit({ type: 'GroupRemoved', data: { group: dev.group } });
  }
  if (tx.state.pes[dev.pe]!.devices.length === 0) {
    clearWindows(tx, dev.pe);
    tx.emit({ type: 'PeReleased', data: { pe: dev.pe } });
  }
}

export function evolveTopology(state: State, event: TopologyEvent): State {
  switch (event.type) {
    case 'PhbAdded': {
      const d = event.data;
      const hypervisor = d.platform === 'pseries' ? d.hypervisor ?? 'qemu' : null;
      const phb: Phb = { domain: d.phb, platform: d.platform, generation: d.generation, numPes: d.numPes, pageShifts: d.pageShifts, hypervisor };
      return patch(state, { phbs: put(state.phbs, d.phb, phb) });
    }
    case 'DeviceAdded': {
      const d = event.data;
      const addr = parseBdf(d.bdf);
      const dev: Device = {
        bdf: d.bdf, phb: addr.domain, bus: addr.bus, vendor: d.vendor, device: d.device, classCode: d.classCode,
        bridge: d.bridge, driver: d.driver, pe: d.pe, group: d.group, pf: d.pf ?? null,
        sriov: d.sriov ? { ...d.sriov, vfs: [] } : null, removalRequested: false,
      };
      let next = peAddDevice(state, d.pe, d.bdf);
      next = patch(next, { devices: put(next.devices, d.bdf, dev) });
      if (d.group !== null) {
        const g = next.groups[d.group]!;
        next = patch(next, { groups: put(next.groups, g.id, { ...g, devices: [...g.devices, d.bdf] }) });
      }
      if (d.pf !== undefined) next = updateVfs(next, d.pf, (vfs) => [...vfs, d.bdf]);
      return next;
    }
    case 'DeviceRemoved': {
      const dev = state.devices[event.data.bdf]!;
      let next = peRemoveDevice(state, dev.pe, dev.bdf);
      next = patch(next, { devices: drop(next.devices, dev.bdf) });
      if (dev.group !== null) {
        const g = next.groups[dev.group]!;
        next = patch(next, { groups: put(next.groups, g.id, { ...g, devices: without(g.devices, dev.bdf) }) });
      }
      if (dev.pf !== null) next = updateVfs(next, dev.pf, (vfs) => without(vfs, dev.bdf));
      return next;
    }
    case 'RemovalRequested': {
      const dev = state.devices[event.data.bdf]!;
      return patch(state, { devices: put(state.devices, dev.bdf, { ...dev, removalRequested: true }) });
    }
    case 'DriverBound':
    case 'DriverUnbound': {
      const dev = state.devices[event.data.bdf]!;
      const driver = event.type === 'DriverBound' ? event.data.driver : null;
      return patch(state, { devices: put(state.devices, dev.bdf, { ...dev, driver }) });
    }
  }
}

function updateVfs(state: State, pf: Bdf, change: (vfs: readonly Bdf[]) => readonly Bdf[]): State {
  const dev = state.devices[pf]!;
  return patch(state, { devices: put(state.devices, pf, { ...dev, sriov: { ...dev.sriov!, vfs: change(dev.sriov!.vfs) } }) });
}
