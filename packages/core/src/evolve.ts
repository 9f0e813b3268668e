import { evolveDdw } from './ddw.js';
import { evolveDomain } from './domain.js';
import { dropEeh, evolveEeh } from './eeh.js';
import type { IommuEvent } from './events.js';
import { evolveGroup } from './group.js';
import { dropQemuTces, evolveGuestTce } from './guest-tce.js';
import { evolveHwpt } from './hwpt.js';
import { evolveIdevice } from './idevice.js';
import { evolveIoas } from './ioas.js';
import { evolveIommufdCtx } from './iommufd-destroy.js';
import { evolveKvmTce } from './kvm-tce.js';
import { evolvePe } from './pe.js';
import { evolvePlatformHv } from './platform-hv.js';
import { evolvePrereg } from './prereg.js';
import { liobn } from './rtas.js';
import { evolveSlot } from './slot.js';
import { patch, type State } from './state.js';
import { evolveTopology } from './topology.js';
import { closeScope, openScope } from './transient.js';
import { evolveSpapr, forgetInSpapr } from './vfio-spapr.js';
import { evolveWindow } from './window.js';

/** The pure fold: never reads a clock, never fails on an event `decide` produced. */
export function evolve(state: State, event: IommuEvent): State {
  // A transient scope per event (unless a batch's is open): the State and each record it changes are
  // copied once, however many steps of the event change them.
  const opened = openScope();
  try {
    return patch(route(state, event), { version: state.version + 1 });
  } finally {
    closeScope(opened);
  }
}

function route(state: State, event: IommuEvent): State {
  switch (event.type) {
    case 'PhbAdded':
    case 'DeviceAdded':
    case 'DeviceRemoved':
    case 'DriverBound':
    case 'DriverUnbound':
    case 'RemovalRequested':
      return evolveTopology(state, event);
    case 'PeCreated':
      return evolvePe(state, event);
    case 'PeReleased':
      return dropEeh(evolvePe(state, event), event.data.pe);
    case 'WindowSet':
    case 'BypassSet':
      return evolveWindow(state, event);
    case 'WindowUnset': {
      const phb = state.pes[event.data.pe]!.phb;
      const next = evolveWindow(state, event);
      return state.phbs[phb]?.platform === 'pseries' ? dropQemuTces(next, liobn(phb, event.data.slot)) : next;
    }
    case 'GroupRemoved':
      return forgetInSpapr(evolveGroup(state, event), { group: event.data.group });
    case 'DmaOwnerReleased': {
      // A forced release (surprise removal) takes the group from its container too.
      const next = evolveGroup(state, event);
      return next.groups[event.data.group]!.owner === null ? forgetInSpapr(next, { group: event.data.group }) : next;
    }
    case 'GroupCreated':
    case 'DmaOwnerClaimed':
      return evolveGroup(state, event);
    case 'PagingDomainFreed':
      return forgetInSpapr(evolveDomain(state, event), { domain: event.data.domain });
    case 'PagingDomainAllocated':
    case 'DeviceAttached':
    case 'DeviceDetached':
    case 'TcesMapped':
    case 'TcesCleared':
      return evolveDomain(state, event);
    case 'SlotRegistered':
    case 'SlotStateChanged':
      return evolveSlot(state, event);
    case 'PhbOptionSet':
      return evolveDdw(state, event);
    case 'IoasAllocated':
    case 'IoasDestroyed':
    case 'IoasAreaMapped':
    case 'IoasAreaUnmapped':
    case 'IoasAllowedSet':
    case 'IoasTestReserved':
      return evolveIoas(state, event);
    case 'HwptAllocated':
    case 'HwptDestroyed':
      return evolveHwpt(state, event);
    case 'IommufdDeviceBound':
    case 'IommufdDeviceUnbound':
    case 'IommufdDeviceAttached':
    case 'IommufdDeviceDetached':
    case 'IommufdGroupReplaced':
      return evolveIdevice(state, event);
    case 'IommufdClosed':
      return evolveIommufdCtx(state, event);
    case 'EehFrozen':
    case 'EehReported':
    case 'EehThawed':
    case 'EehResetAsserted':
    case 'EehResetDeasserted':
    case 'EehRecovered':
    case 'EehPermanentFailure':
    case 'EehCountRestored':
      return evolveEeh(state, event);
    case 'GuestTcesPut':
    case 'GuestTcesStuffed':
      return evolveGuestTce(state, event);
    case 'KvmTceTableCreated':
    case 'KvmMemslotSet':
    case 'KvmGroupLinked':
      return evolveKvmTce(state, event);
    case 'MemoryPreregistered':
    case 'MemoryUnregistered':
      return evolvePrereg(state, event);
    case 'SpaprContainerOpened':
    case 'SpaprGroupAttached':
    case 'SpaprGroupDetached':
    case 'SpaprEnabled':
    case 'SpaprWindowsSet':
    case 'SpaprRegionReferenced':
    case 'SpaprContainerClosed':
      return evolveSpapr(state, event);
    case 'IoEntitlementSet':
    case 'HcallFaultSet':
    case 'HcallEntriesAccepted':
    case 'TcesLeaked':
      return evolvePlatformHv(state, event);
  }
}

export function fold(events: Iterable<IommuEvent>, state: State): State {
  let s = state;
  for (const e of events) s = evolve(s, e);
  return s;
}
