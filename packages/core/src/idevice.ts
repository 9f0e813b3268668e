import { attachDevice, detachDevice } from './domain.js';
import { fail, IommuError } from './errors.js';
import { claimDevice, releaseDevice, requireGroupOf, updateGroup } from './group.js';
import { createHwpt, destroyHwpt } from './hwpt.js';
import { checkReserve } from './io-pagetable.js';
import {
  boundDevice, devicesOn, dropObject, findObject, hwptOfDomain, nextObjectId, objectAt, objectsOf, putObject, rangeData, rangeOf,
  requireObject, type Hwpt, type IDevice, type Ioas, type Range, type RangeData,
} from './iommufd-ctx.js';
import type { Bdf } from './pci.js';
import { patch, put, type State, type Window } from './state.js';
import { Tx } from './tx.js';

/**
 * DEVICE objects: bind, attach, replace, detach, unbind (device.c), with the group rules of the
 * iommu core underneath.
 *
 * - Bind claims DMA ownership for the context (EPERM while a kernel driver or another owner holds the
 *   group). A bound device cannot be destroyed (EBUSY): only unbind (closing the VFIO fd) ends it.
 * - One HWPT per group: the first device attaches the group; a later device of the group choosing
 *   another HWPT is EINVAL; the last detach returns the group to the blocking domain.
 * - Attaching to an IOAS picks a compatible automatic HWPT of that IOAS (EINVAL means "incompatible,
 *   try the next"; anything else fails the attach) or makes one; an automatic HWPT is destroyed with
 *   its last device, after which its id is ENOENT.
 * - Each attached device reserves its reserved regions on the HWPT's IOAS (EADDRINUSE over an area or
 *   an allowed range). The modelled driver reports the PHB's 32-bit MMIO window, where a DMA would
 *   reach MMIO or the MSI decoder rather than memory; it only matters once window 0 reaches 2 GiB.
 * - Replace switches the whole group to another HWPT without passing through blocking.
 */
export type IdeviceEvent =
  | { readonly type: 'IommufdDeviceBound'; readonly data: { readonly context: string; readonly device: number; readonly bdf: Bdf } }
  | { readonly type: 'IommufdDeviceUnbound'; readonly data: { readonly context: string; readonly device: number } }
  | {
      readonly type: 'IommufdDeviceAttached';
      readonly data: { readonly context: string; readonly device: number; readonly hwpt: number; readonly reserved: readonly RangeData[] };
    }
  | { readonly type: 'IommufdDeviceDetached'; readonly data: { readonly context: string; readonly device: number } }
  | {
      /**
       * iommufd_device_replace as one fact: the group moves to the HWPT's domain directly (its windows
       * are reprogrammed, iommu_group_replace_domain), and every device of the group attached through
       * the context moves with it, its reservations going to the new HWPT's IOAS.
       */
      readonly type: 'IommufdGroupReplaced';
      readonly data: {
        readonly context: string;
        readonly group: number;
        readonly hwpt: number;
        readonly domain: number;
        readonly devices: readonly { readonly device: number; readonly reserved: readonly RangeData[] }[];
      };
    };

/** The PHB's 32-bit MMIO window, M32 at 2 GiB up to 4 GiB (MSIs in its top 64 KiB on PowerNV). */
const MMIO32_WINDOW: Range = { start: 0x8000_0000n, last: 0xffff_ffffn };

export function deviceReservedRegions(): Range[] {
  return [MMIO32_WINDOW];
}

/** VFIO_DEVICE_BIND_IOMMUFD: EINVAL when already bound here; the claim decides the rest. */
export function bindDevice(tx: Tx, context: string, bdf: Bdf): number {
  const bound = boundDevice(tx.state, bdf);
  if (bound?.context === context) fail('EINVAL', `${bdf} is already bound as DEVICE ${bound.device.id}`);
  claimDevice(tx, context, bdf);
  const id = nextObjectId(tx.state, context);
  tx.emit({ type: 'IommufdDeviceBound', data: { context, device: id, bdf } });
  return id;
}

/** Closing the VFIO device: detach, destroy the DEVICE object, release DMA ownership. */
export function unbindDevice(tx: Tx, context: string, devId: number, forced = false): void {
  const dev = requireObject(tx.state, context, devId, 'device');
  detachIdevice(tx, context, devId);
  tx.emit({ type: 'IommufdDeviceUnbound', data: { context, device: devId } });
  releaseDevice(tx, context, dev.bdf, forced);
}

/** iommufd_device_attach; returns the HWPT id (the automatic one when attaching to an IOAS). */
export function attachIdevice(tx: Tx, context: string, devId: number, ptId: number): number {
  const dev = requireObject(tx.state, context, devId, 'device');
  const pt = findObject(tx.state, context, ptId) ?? fail('ENOENT', `context ${context} has no object ${ptId}`);
  if (pt.kind === 'device') fail('EINVAL', `object ${ptId} is a DEVICE: attach needs an IOAS or a HWPT`);
  if (dev.hwpt !== null) {
    const current = objectAt(tx.state, context, dev.hwpt, 'hwpt');
    const same = pt.kind === 'hwpt' ? pt.id === current.id : current.auto && current.ioas === pt.id;
    if (same) fail('EBUSY', `DEVICE ${devId} is already attached to HWPT ${current.id}`);
    fail('EINVAL', `DEVICE ${devId} is attached to HWPT ${current.id}; use replace`);
  }
  if (pt.kind === 'hwpt') {
    doAttach(tx, context, dev, pt);
    return pt.id;
  }
  return autoHwpt(tx, context, dev, pt, doAttach);
}

/** iommufd_device_replace: EINVAL unless attached; the same HWPT again is a no-op. */
export function replaceIdevice(tx: Tx, context: string, devId: number, ptId: number): number {
  const dev = requireObject(tx.state, context, devId, 'device');
  const pt = findObject(tx.state, context, ptId) ?? fail('ENOENT', `context ${context} has no object ${ptId}`);
  if (pt.kind === 'device') fail('EINVAL', `object ${ptId} is a DEVICE: replace needs an IOAS or a HWPT`);
  if (dev.hwpt === null) fail('EINVAL', `DEVICE ${devId} is not attached: attach it first`);
  if (pt.kind === 'hwpt') {
    doReplace(tx, context, dev, pt);
    return pt.id;
  }
  return autoHwpt(tx, context, dev, pt, doReplace);
}

/** iommufd_device_detach: nothing to do when not attached. */
export function detachIdevice(tx: Tx, context: string, devId: number): void {
  const dev = requireObject(tx.state, context, devId, 'device');
  if (dev.hwpt === null) return;
  const hwpt = dev.hwpt;
  tx.emit({ type: 'IommufdDeviceDetached', data: { context, device: devId } });
  detachDevice(tx, context, dev.bdf);
  putHwpt(tx, context, hwpt);
}

type AttachFn = (tx: Tx, context: string, dev: IDevice, hwpt: Hwpt) => void;

/**
 * iommufd_device_auto_get_domain: try each automatic HWPT of the IOAS; EINVAL means incompatible and
 * the search goes on, any other refusal is final. None fits: a new automatic HWPT with the default
 * window, which the device then uses.
 */
function autoHwpt(tx: Tx, context: string, dev: IDevice, ioas: Ioas, fn: AttachFn): number {
  for (const id of ioas.hwpts) {
    const h = objectAt(tx.state, context, id, 'hwpt');
    if (!h.auto) continue;
    const trial = new Tx(tx.state);
    try {
      fn(trial, context, dev, h);
    } catch (e) {
      if (IommuError.is(e) && e.code === 'EINVAL') continue;
      throw e;
    }
    for (const event of trial.events) tx.emit(event);
    return id;
  }
  const id = createHwpt(tx, context, dev, ioas, null, true);
  fn(tx, context, dev, objectAt(tx.state, context, id, 'hwpt'));
  return id;
}

function doAttach(tx: Tx, context: string, dev: IDevice, hwpt: Hwpt): void {
  const group = requireGroupOf(tx.state, dev.bdf);
  if (group.domain.type === 'paging') {
    const current = hwptOfDomain(tx.state, group.domain.id);
    if (current?.hwpt.id !== hwpt.id) fail('EINVAL', `group ${group.id} is attached to another HWPT; every device of a group shares one`);
  }
  const reserved = reserveFor(tx.state, context, hwpt.ioas, dev);
  attachDevice(tx, context, hwpt.domain, dev.bdf);
  tx.emit({ type: 'IommufdDeviceAttached', data: { context, device: dev.id, hwpt: hwpt.id, reserved: reserved.map(rangeData) } });
}

function doReplace(tx: Tx, context: string, dev: IDevice, hwpt: Hwpt): void {
  const old = objectAt(tx.state, context, dev.hwpt!, 'hwpt');
  if (old.id === hwpt.id) return;
  const group = requireGroupOf(tx.state, dev.bdf);
  const next = tx.state.domains[hwpt.domain]!;
  if (next.group !== group.id) fail('EINVAL', `HWPT ${hwpt.id}'s domain serves group ${next.group}; DEVICE ${dev.id} is in group ${group.id}`);
  // A domain serves one group, so the devices on the old HWPT are the group's attached devices.
  const members = devicesOn(tx.state, context, old.id);
  const devices = members.map((m) => ({ device: m.id, reserved: reserveFor(tx.state, context, hwpt.ioas, m).map(rangeData) }));
  const pe = tx.state.pes[group.pe]!;
  const freed = new Set(tx.state.domains[old.domain]!.windows.map((w) => w.slot));
  for (const w of next.windows) if (pe.windows[w.slot] && !freed.has(w.slot)) fail('EBUSY', `${pe.id} window slot ${w.slot} is in use`);
  tx.emit({ type: 'IommufdGroupReplaced', data: { context, group: group.id, hwpt: hwpt.id, domain: next.id, devices } });
  putHwpt(tx, context, old.id);
}

/** The device's reserved regions, checked against the IOAS they will be reserved on. */
function reserveFor(state: State, context: string, ioasId: number, dev: IDevice): Range[] {
  const regions = deviceReservedRegions();
  checkReserve(objectAt(state, context, ioasId, 'ioas'), regions, `reserved region of ${dev.bdf}`);
  return regions;
}

/** iommufd_hw_pagetable_put: an automatic HWPT goes with its last device. */
function putHwpt(tx: Tx, context: string, id: number): void {
  const h = objectAt(tx.state, context, id, 'hwpt');
  if (h.auto && devicesOn(tx.state, context, id).length === 0) destroyHwpt(tx, context, id);
}

/**
 * Before a device is removed: a surprise removal unbinds it first (the owner cannot be waited for);
 * and when it is the last device of its group, the HWPTs built on the group's domains go too (the
 * model's domains belong to their group and are freed with it).
 */
export function releaseForRemoval(tx: Tx, bdf: Bdf, surprise: boolean): void {
  const bound = boundDevice(tx.state, bdf);
  if (bound && surprise) unbindDevice(tx, bound.context, bound.device.id, true);
  const group = tx.state.devices[bdf]?.group;
  if (group === null || group === undefined || tx.state.groups[group]!.devices.length !== 1 || boundDevice(tx.state, bdf)) return;
  for (const context of Object.keys(tx.state.iommufd)) {
    for (const obj of objectsOf(tx.state, context)) {
      if (obj.kind === 'hwpt' && tx.state.domains[obj.domain]!.group === group) destroyHwpt(tx, context, obj.id);
    }
  }
}

export function evolveIdevice(state: State, event: IdeviceEvent): State {
  switch (event.type) {
    case 'IommufdDeviceBound': {
      const { context, device, bdf } = event.data;
      return putObject(state, context, { kind: 'device', id: device, bdf, hwpt: null });
    }
    case 'IommufdDeviceUnbound':
      return dropObject(state, event.data.context, event.data.device);
    case 'IommufdDeviceAttached': {
      const { context, device, hwpt, reserved } = event.data;
      return moveDevice(state, context, device, hwpt, reserved);
    }
    case 'IommufdDeviceDetached': {
      const { context, device } = event.data;
      const dev = objectAt(state, context, device, 'device');
      return putObject(unreserve(state, context, dev), context, { ...dev, hwpt: null });
    }
    case 'IommufdGroupReplaced': {
      const e = event.data;
      const g = state.groups[e.group]!;
      const old = state.domains[g.domain.type === 'paging' ? g.domain.id : -1];
      const next = state.domains[e.domain]!;
      const pe = state.pes[g.pe]!;
      const windows: [Window | null, Window | null] = [pe.windows[0], pe.windows[1]];
      for (const w of old?.windows ?? []) windows[w.slot] = null;
      for (const w of next.windows) {
        windows[w.slot] = { start: w.start, size: w.last - w.start + 1n, pageShift: w.table.pageShift, table: { kind: 'domain', domain: next.id } };
      }
      let s = updateGroup(patch(state, { pes: put(state.pes, pe.id, { ...pe, windows }) }), { ...g, domain: { type: 'paging', id: next.id } });
      for (const d of e.devices) s = moveDevice(s, e.context, d.device, e.hwpt, d.reserved);
      return s;
    }
  }
}

/** The device attached to `hwpt`, its reservations moved from its old HWPT's IOAS (if any) to the new one's. */
function moveDevice(state: State, context: string, device: number, hwpt: number, reserved: readonly RangeData[]): State {
  const dev = objectAt(state, context, device, 'device');
  let next = dev.hwpt === null ? state : unreserve(state, context, dev);
  const ioas = objectAt(next, context, objectAt(next, context, hwpt, 'hwpt').ioas, 'ioas');
  const owner = { kind: 'device' as const, id: device };
  next = putObject(next, context, { ...ioas, reserved: [...ioas.reserved, ...reserved.map((r) => ({ ...rangeOf(r), owner }))] });
  return putObject(next, context, { ...dev, hwpt });
}

/** Drops the device's reservations from the IOAS of the HWPT it is attached to. */
function unreserve(state: State, context: string, dev: IDevice): State {
  const ioas = objectAt(state, context, objectAt(state, context, dev.hwpt!, 'hwpt').ioas, 'ioas');
  const reserved = ioas.reserved.filter((r) => !(r.owner.kind === 'device' && r.owner.id === dev.id));
  return putObject(state, context, { ...ioas, reserved });
}
