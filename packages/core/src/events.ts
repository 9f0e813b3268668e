import type { DdwEvent } from './ddw.js';
import type { PagingDomainEvent } from './domain.js';
import type { GroupEvent } from './group.js';
import type { HwptEvent } from './hwpt.js';
import type { IdeviceEvent } from './idevice.js';
import type { IoasEvent } from './ioas.js';
import type { IommufdCtxEvent } from './iommufd-destroy.js';
import type { PeEvent } from './pe.js';
import type { TopologyEvent } from './topology.js';
import type { WindowEvent } from './window.js';

/**
 * Every fact the log can hold. Event data is plain JSON (u64 values as hex strings) so that what is
 * stored is exactly what is folded on replay.
 */
export type IommuEvent =
  | TopologyEvent | PeEvent | WindowEvent | GroupEvent | PagingDomainEvent
  | DdwEvent | IoasEvent | HwptEvent | IdeviceEvent | IommufdCtxEvent;
export type IommuEventType = IommuEvent['type'];

/** Schema version of the event payloads written by this code. */
export const EVENT_SCHEMA_VERSION = 1;

const TYPES: Record<IommuEventType, true> = {
  PhbAdded: true, DeviceAdded: true, DeviceRemoved: true, DriverBound: true, DriverUnbound: true,
  PeCreated: true, PeReleased: true,
  WindowSet: true, WindowUnset: true, BypassSet: true,
  GroupCreated: true, GroupRemoved: true, DmaOwnerClaimed: true, DmaOwnerReleased: true,
  PagingDomainAllocated: true, PagingDomainFreed: true, DeviceAttached: true, DeviceDetached: true,
  TcesMapped: true, TcesCleared: true,
  PhbOptionSet: true,
  IoasAllocated: true, IoasDestroyed: true, IoasAreaMapped: true, IoasAreaUnmapped: true, IoasAllowedSet: true, IoasTestReserved: true,
  HwptAllocated: true, HwptDestroyed: true,
  IommufdDeviceBound: true, IommufdDeviceUnbound: true, IommufdDeviceAttached: true, IommufdDeviceReplaced: true,
  IommufdDeviceDetached: true, GroupDomainReplaced: true, IommufdClosed: true,
};
export const EVENT_TYPES = Object.keys(TYPES) as readonly IommuEventType[];

export function isEventType(type: string): type is IommuEventType {
  return Object.hasOwn(TYPES, type);
}
