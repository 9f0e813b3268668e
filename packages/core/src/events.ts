import type { DdwEvent } from './ddw.js';
import type { EehEvent } from './eeh.js';
import type { GuestTceEvent } from './guest-tce.js';
import type { KvmTceEvent } from './kvm-tce.js';
import type { PlatformHvEvent } from './platform-hv.js';
import type { PreregEvent } from './prereg.js';
import type { SpaprEvent } from './vfio-spapr.js';
import type { PagingDomainEvent } from './domain.js';
import type { GroupEvent } from './group.js';
import type { HwptEvent } from './hwpt.js';
import type { IdeviceEvent } from './idevice.js';
import type { IoasEvent } from './ioas.js';
import type { IommufdCtxEvent } from './iommufd-destroy.js';
import type { PeEvent } from './pe.js';
import type { SlotEvent } from './slot.js';
import type { TopologyEvent } from './topology.js';
import type { WindowEvent } from './window.js';

/**
 * Every fact the log can hold. Event data is plain JSON (u64 values as hex strings) so that what is
 * stored is exactly what is folded on replay.
 */
export type IommuEvent =
  | TopologyEvent | PeEvent | WindowEvent | GroupEvent | PagingDomainEvent | SlotEvent
  | DdwEvent | IoasEvent | HwptEvent | IdeviceEvent | IommufdCtxEvent | EehEvent
  | GuestTceEvent | KvmTceEvent | PreregEvent | SpaprEvent | PlatformHvEvent;
export type IommuEventType = IommuEvent['type'];

/**
 * Schema version of the event payloads written by this code. Bump it when a payload changes shape, and
 * add an upcaster for the old shape in upcast.ts when old rows need one; rows are never rewritten.
 * - 1: the first catalogue.
 * - 2: DeviceAdded may carry `pf` and `sriov`, PeCreated `vf` (SR-IOV); a build reading up to 1 would
 *   fold those events without them and build another state, so it must refuse them.
 * - 3: PagingDomainAllocated carries its `windows` (one or two) instead of one window's
 *   slot/start/size/pageShift, and a kernel table may be `dynamic` (a pSeries DDW); a build reading up
 *   to 2 would fold those wrongly. Versions 1 and 2 of these events read the same as before (evolve
 *   takes both shapes; no upcaster).
 * - 4: TcesMapped.perm in words ("r", "rw") instead of TCE bits (1, 3): upcast.ts lifts older rows.
 * - 5: PhbAdded may carry `hypervisor: "powervm"` (platform-hv.ts); a build reading up to 4 would fold
 *   such a PHB as QEMU's, so it must refuse it. Older rows read the same (absent = QEMU; no upcaster).
 */
export const EVENT_SCHEMA_VERSION = 5;

const TYPES: Record<IommuEventType, true> = {
  PhbAdded: true, DeviceAdded: true, DeviceRemoved: true, DriverBound: true, DriverUnbound: true,
  PeCreated: true, PeReleased: true,
  WindowSet: true, WindowUnset: true, BypassSet: true,
  GroupCreated: true, GroupRemoved: true, DmaOwnerClaimed: true, DmaOwnerReleased: true,
  PagingDomainAllocated: true, PagingDomainFreed: true, DeviceAttached: true, DeviceDetached: true,
  TcesMapped: true, TcesCleared: true,
  RemovalRequested: true, SlotRegistered: true, SlotStateChanged: true,
  PhbOptionSet: true,
  IoasAllocated: true, IoasDestroyed: true, IoasAreaMapped: true, IoasAreaUnmapped: true, IoasAllowedSet: true, IoasTestReserved: true,
  HwptAllocated: true, HwptDestroyed: true,
  IommufdDeviceBound: true, IommufdDeviceUnbound: true, IommufdDeviceAttached: true, IommufdDeviceDetached: true,
  IommufdGroupReplaced: true, IommufdClosed: true,
  EehFrozen: true, EehReported: true, EehThawed: true, EehResetAsserted: true, EehResetDeasserted: true, EehRecovered: true,
  EehPermanentFailure: true, EehCountRestored: true,
  GuestTcesPut: true, GuestTcesStuffed: true, KvmTceTableCreated: true, KvmMemslotSet: true, KvmGroupLinked: true,
  MemoryPreregistered: true, MemoryUnregistered: true,
  SpaprContainerOpened: true, SpaprGroupAttached: true, SpaprGroupDetached: true, SpaprEnabled: true, SpaprWindowsSet: true, SpaprRegionReferenced: true,
  SpaprContainerClosed: true,
  IoEntitlementSet: true, HcallFaultSet: true, HcallEntriesAccepted: true, TcesLeaked: true,
};
export const EVENT_TYPES = Object.keys(TYPES) as readonly IommuEventType[];

export function isEventType(type: string): type is IommuEventType {
  return Object.hasOwn(TYPES, type);
}
