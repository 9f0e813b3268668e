import type { PagingDomainEvent } from './domain.js';
import type { GroupEvent } from './group.js';
import type { PeEvent } from './pe.js';
import type { SlotEvent } from './slot.js';
import type { TopologyEvent } from './topology.js';
import type { WindowEvent } from './window.js';

/**
 * Every fact the log can hold. Event data is plain JSON (u64 values as hex strings) so that what is
 * stored is exactly what is folded on replay.
 */
export type IommuEvent = TopologyEvent | PeEvent | WindowEvent | GroupEvent | PagingDomainEvent | SlotEvent;
export type IommuEventType = IommuEvent['type'];

/**
 * Schema version of the event payloads written by this code. Bump it when a payload changes shape, and
 * add an upcaster for the old shape in upcast.ts when old rows need one; rows are never rewritten.
 * - 1: the first catalogue.
 * - 2: DeviceAdded may carry `pf` and `sriov`, PeCreated `vf` (SR-IOV); a build reading up to 1 would
 *   fold those events without them and build another state, so it must refuse them. Version 1 events
 *   read the same as before (no upcaster).
 * - 3: TcesMapped.perm in words ("r", "rw") instead of TCE bits (1, 3).
 */
export const EVENT_SCHEMA_VERSION = 3;

const TYPES: Record<IommuEventType, true> = {
  PhbAdded: true, DeviceAdded: true, DeviceRemoved: true, DriverBound: true, DriverUnbound: true,
  PeCreated: true, PeReleased: true,
  WindowSet: true, WindowUnset: true, BypassSet: true,
  GroupCreated: true, GroupRemoved: true, DmaOwnerClaimed: true, DmaOwnerReleased: true,
  PagingDomainAllocated: true, PagingDomainFreed: true, DeviceAttached: true, DeviceDetached: true,
  TcesMapped: true, TcesCleared: true,
  RemovalRequested: true, SlotRegistered: true, SlotStateChanged: true,
};
export const EVENT_TYPES = Object.keys(TYPES) as readonly IommuEventType[];

export function isEventType(type: string): type is IommuEventType {
  return Object.hasOwn(TYPES, type);
}
