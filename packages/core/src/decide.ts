import type { Command, Output } from './commands.js';
import { setPhbOption } from './ddw.js';
import { allocPagingDomain, attachDevice, detachDevice, freeDomain, iovaToPhys, mapPages, unmapPages } from './domain.js';
import { eehFail, eehFreeze, eehHotplugReset, eehReport, eehReset, eehResume, eehThaw } from './eeh.js';
import { fail, IommuError } from './errors.js';
import { vfioEehPeOp } from './vfio-eeh.js';
import { hcallUnhandled } from './hcall-dispatch.js';
import { hGetTce, hPutTce, hPutTceIndirect, hStuffTce, kvmCreateSpaprTce, kvmLinkGroup, kvmSetMemslot } from './kvm-tce.js';
import { injectHcallFault, platformHvInfo, setIoEntitlement } from './platform-hv.js';
import { registerMemory, unregisterMemory } from './prereg.js';
import {
  spaprAttachGroup, spaprClose, spaprDisable, spaprEnable, spaprGetInfo, spaprMapDma, spaprOpen, spaprRegisterMemory, spaprTceCreate,
  spaprTceRemove, spaprUnmapDma, spaprUnregisterMemory,
} from './vfio-spapr.js';
import type { IommuEvent } from './events.js';
import { claimDevice, releaseDevice } from './group.js';
import { apertures, hwptAlloc } from './hwpt.js';
import { getHwInfo } from './hw-info.js';
import { attachIdevice, bindDevice, detachIdevice, replaceIdevice, unbindDevice } from './idevice.js';
import { ioasAddReserved, ioasAlloc, ioasAllowIovas, ioasCopy, ioasIovaRanges, ioasMap, ioasUnmap } from './ioas.js';
import { objectAt, rangeData, refuseIfIommufdDevice, refuseIfIommufdDomain } from './iommufd-ctx.js';
import { closeContext, destroyObject } from './iommufd-destroy.js';
import { normalizeBdf } from './pci.js';
import { rtasCreate, rtasQuery, rtasRemove, rtasReset } from './rtas.js';
import { disableSlot, enableSlot, registerSlot, unregisterSlot } from './slot.js';
import { setNumVfs } from './sriov.js';
import type { State } from './state.js';
import { addDevice, addPhb, bindDriver, removeDevice, requestRemoval, unbindDriver } from './topology.js';
import { Tx } from './tx.js';
import { toHex } from './u64.js';

export type Decision =
  | {
      readonly ok: true;
      readonly events: readonly IommuEvent[];
      readonly output: Output;
      readonly state: State;
      /** The state after each event (the last one is `state`). */
      readonly states: readonly State[];
    }
  | { readonly ok: false; readonly error: IommuError };

/**
 * decide(state, command) -> events | typed error. Pure: the same state and command always give the
 * same answer. A refused command yields no events at all. `state` in an accepted decision is the fold
 * of its events, handed back so callers need not fold twice.
 */
export function decide(state: State, command: Command): Decision {
  const tx = new Tx(state);
  try {
    const output = run(tx, command);
    return { ok: true, events: tx.events, output, state: tx.state, states: tx.states };
  } catch (e) {
    if (IommuError.is(e)) return { ok: false, error: e };
    throw e;
  }
}

function run(tx: Tx, c: Command): Output {
  switch (c.type) {
    case 'addPhb':
      addPhb(tx, c);
      return { phb: c.phb };
    case 'addDevice': {
      const bdf = addDevice(tx, c);
      const dev = tx.state.devices[bdf]!;
      return { bdf, pe: dev.pe, group: dev.group };
    }
    case 'removeDevice':
      removeDevice(tx, bdf(c.bdf), c.surprise ?? false);
      return {};
    case 'requestRemoval':
      return { requested: requestRemoval(tx, bdf(c.bdf)) };
    case 'setNumVfs': {
      setNumVfs(tx, bdf(c.bdf), c.numVfs, c.vfDriver);
      const vfs = tx.state.devices[bdf(c.bdf)]!.sriov!.vfs;
      return { numVfs: vfs.length, vfs: vfs.join(' ') };
    }
    case 'registerSlot':
      return { slot: c.slot, state: registerSlot(tx, c.slot, c.phb, c.bus) };
    case 'enableSlot': {
      const added = enableSlot(tx, c.slot, c.devices ?? []);
      return { state: tx.state.slots[c.slot]!.state, added };
    }
    case 'disableSlot': {
      const removed = disableSlot(tx, c.slot, c.surprise ?? false);
      return { state: tx.state.slots[c.slot]!.state, removed };
    }
    case 'unregisterSlot':
      unregisterSlot(tx, c.slot);
      return { state: tx.state.slots[c.slot]!.state };
    case 'bindDriver':
      bindDriver(tx, bdf(c.bdf), c.driver);
      return {};
    case 'unbindDriver':
      unbindDriver(tx, bdf(c.bdf));
      return {};
    case 'claimDevice': {
      claimDevice(tx, context(c.context), bdf(c.bdf));
      return { group: tx.state.devices[bdf(c.bdf)]!.group };
    }
    case 'releaseDevice':
      refuseIfIommufdDevice(tx.state, bdf(c.bdf));
      releaseDevice(tx, context(c.context), bdf(c.bdf));
      return {};
    case 'allocPagingDomain': {
      const id = allocPagingDomain(tx, context(c.context), bdf(c.bdf), c.pageShift ?? 12);
      const w = tx.state.domains[id]!.windows[0]!;
      return { domain: id, apertureStart: toHex(w.start), apertureEnd: toHex(w.last), pgsize: toHex(1n << BigInt(w.table.pageShift)) };
    }
    case 'freeDomain':
      refuseIfIommufdDomain(tx.state, c.domain);
      freeDomain(tx, context(c.context), c.domain);
      return {};
    case 'attachDevice':
      refuseIfIommufdDomain(tx.state, c.domain);
      refuseIfIommufdDevice(tx.state, bdf(c.bdf));
      attachDevice(tx, context(c.context), c.domain, bdf(c.bdf));
      return {};
    case 'detachDevice':
      refuseIfIommufdDevice(tx.state, bdf(c.bdf));
      detachDevice(tx, context(c.context), bdf(c.bdf));
      return {};
    case 'mapPages':
      refuseIfIommufdDomain(tx.state, c.domain);
      return { mapped: bytes(mapPages(tx, context(c.context), c.domain, c)) };
    case 'unmapPages':
      refuseIfIommufdDomain(tx.state, c.domain);
      return { unmapped: bytes(unmapPages(tx, context(c.context), c.domain, c.iova, c.pgsize, c.pgcount)) };
    case 'iovaToPhys':
      return { phys: toHex(iovaToPhys(tx.state, context(c.context), c.domain, c.iova)) };
    case 'setPhbOption':
      setPhbOption(tx, c.phb, c.option, c.enabled);
      return {};
    case 'eehFreeze':
      return eehFreeze(tx, bdf(c.bdf), c.cause ?? 'inject', c.at);
    case 'eehReport':
      return eehReport(tx, c.pe, c.phase, c.result);
    case 'eehThaw':
      return eehThaw(tx, c.pe, c.what);
    case 'eehReset':
      return eehReset(tx, c.pe, c.kind ?? 'hot');
    case 'eehResume':
      return eehResume(tx, c.pe);
    case 'eehFail':
      return eehFail(tx, c.pe, c.reason);
    case 'eehHotplugReset':
      return eehHotplugReset(tx, c.pe);
    case 'vfioEehPeOp':
      return vfioEehPeOp(tx, { ...c, context: context(c.context) });
    case 'hPutTce':
      return hPutTce(tx, c.liobn, c.ioba, c.tce, c.layer, c.problemState);
    case 'hPutTceIndirect':
      return hPutTceIndirect(tx, c.liobn, c.ioba, c.tceList, c.tces, c.layer, c.problemState);
    case 'hStuffTce':
      return hStuffTce(tx, c.liobn, c.ioba, c.tce, c.npages, c.layer, c.problemState);
    case 'hGetTce':
      return hGetTce(tx.state, c.liobn, c.ioba, c.layer, c.problemState);
    case 'hcall':
      return hcallUnhandled(tx.state, c.opcode, c.problemState);
    case 'kvmCreateSpaprTce':
      return kvmCreateSpaprTce(tx, c.liobn, c.pageShift, c.offset, c.size);
    case 'kvmSetMemslot':
      return kvmSetMemslot(tx, c.slot, c.gpa, c.size, c.ua);
    case 'kvmLinkGroup':
      return kvmLinkGroup(tx, c.liobn, context(c.context), c.group);
    case 'registerMemory':
      return registerMemory(tx, c.ua, c.size, c.pageShift ?? 12);
    case 'unregisterMemory':
      return unregisterMemory(tx, c.ua, c.size);
    case 'spaprOpen':
      return spaprOpen(tx, context(c.container), c.iommuType, c.memlockPages);
    case 'spaprAttachGroup':
      return spaprAttachGroup(tx, c.container, c.group);
    case 'spaprGetInfo':
      return spaprGetInfo(tx.state, c.container);
    case 'spaprEnable':
      return spaprEnable(tx, c.container);
    case 'spaprDisable':
      return spaprDisable(tx, c.container);
    case 'spaprRegisterMemory':
      return spaprRegisterMemory(tx, c.container, c.vaddr, c.size, c.pageShift ?? 12, c.flags ?? 0);
    case 'spaprUnregisterMemory':
      return spaprUnregisterMemory(tx, c.container, c.vaddr, c.size);
    case 'spaprTceCreate':
      return spaprTceCreate(tx, c.container, c.pageShift, c.windowSize, c.levels, c.flags ?? 0);
    case 'spaprTceRemove':
      return spaprTceRemove(tx, c.container, c.startAddr);
    case 'spaprMapDma':
      return spaprMapDma(tx, c.container, c.vaddr, c.iova, c.size, c.flags);
    case 'spaprUnmapDma':
      return spaprUnmapDma(tx, c.container, c.iova, c.size, c.flags ?? 0);
    case 'spaprClose':
      return spaprClose(tx, c.container);
    case 'setIoEntitlement':
      return setIoEntitlement(tx, c.bytes);
    case 'injectHcallFault':
      return injectHcallFault(tx, c.phb, c.code, c.afterEntries);
    case 'platformHvInfo':
      return platformHvInfo(tx.state, c.phb);
    default:
      return runIommufd(tx, c);
  }
}

type IommufdCommand = Extract<Command, { type: `iommufd${string}` | `ioas${string}` | `hwpt${string}` | `device${string}` | 'getHwInfo' | `rtas${string}` }>;

/** The iommufd ioctls and the RTAS calls. */
function runIommufd(tx: Tx, c: IommufdCommand): Output {
  switch (c.type) {
    case 'iommufdBind':
      return { device: bindDevice(tx, context(c.context), bdf(c.bdf)) };
    case 'iommufdUnbind':
      unbindDevice(tx, context(c.context), c.device);
      return {};
    case 'iommufdDestroy':
      destroyObject(tx, context(c.context), c.id);
      return {};
    case 'iommufdClose':
      closeContext(tx, context(c.context));
      return {};
    case 'ioasAlloc':
      return { ioas: ioasAlloc(tx, context(c.context)) };
    case 'ioasMap':
      return { iova: toHex(ioasMap(tx, context(c.context), { ...c, iova: c.iova ?? 0n })) };
    case 'ioasUnmap':
      return { length: bytes(ioasUnmap(tx, context(c.context), c.ioas, c.iova, c.length)) };
    case 'ioasCopy':
      return { dstIova: toHex(ioasCopy(tx, context(c.context), { ...c, dstIova: c.dstIova ?? 0n })) };
    case 'ioasIovaRanges':
      return ioasIovaRanges(tx.state, context(c.context), c.ioas, c.numIovas);
    case 'ioasAllowIovas':
      ioasAllowIovas(tx, context(c.context), c.ioas, c.ranges);
      return {};
    case 'ioasAddReserved':
      ioasAddReserved(tx, context(c.context), c.ioas, c.start, c.length);
      return {};
    case 'hwptAlloc': {
      const id = hwptAlloc(tx, context(c.context), c.device, c.ptId, c.flags ?? [], c.windows ?? null);
      const domain = objectAt(tx.state, c.context, id, 'hwpt').domain;
      return { hwpt: id, domain, apertures: apertures(tx.state.domains[domain]!).map(rangeData) };
    }
    case 'deviceAttach':
      return { ptId: attachIdevice(tx, context(c.context), c.device, c.ptId) };
    case 'deviceReplace':
      return { ptId: replaceIdevice(tx, context(c.context), c.device, c.ptId) };
    case 'deviceDetach':
      detachIdevice(tx, context(c.context), c.device);
      return {};
    case 'getHwInfo':
      return getHwInfo(tx.state, context(c.context), c.device);
    case 'rtasQueryPeDmaWindow':
      return rtasQuery(tx.state, c.phb);
    case 'rtasCreatePeDmaWindow':
      return rtasCreate(tx, c.phb, c.pageShift, c.windowShift);
    case 'rtasRemovePeDmaWindow':
      return rtasRemove(tx, c.liobn);
    case 'rtasResetPeDmaWindows':
      return rtasReset(tx, c.phb);
  }
}

function bdf(text: string): string {
  return normalizeBdf(text);
}

function context(name: string): string {
  if (name.length === 0) fail('EINVAL', 'context name is empty');
  return name;
}

/** Byte counts are reported as numbers while exact, else as hex. */
function bytes(n: bigint): number | string {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : toHex(n);
}
