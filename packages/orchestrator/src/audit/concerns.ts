import { slotDevices, type IommuEvent, type IommuEventType, type State } from '@iommu-orch/core';

/**
 * Which devices, groups and contexts an event concerns. Event data names few objects (a TcesMapped
 * names only its domain), so the answer is computed from the data plus the state on both sides of the
 * event: a domain stands for its context and its group; a group for its devices and its owner; a PE for
 * its devices and its group. Looking at both sides keeps the objects an event creates (after) and those
 * it removes (before).
 *
 * The rule is read off the fields an event carries (bdf, pf, group, pe, domain, context, a window's
 * table, a hotplug slot's name, a PHB, and the iommufd objects a context's ioas, hwpt and device ids
 * name), so a new event kind that names its objects the same way is classified without a change here;
 * only a window being unset needs the state to know which domain it translated through. The iommufd
 * objects stand for what they hold: a DEVICE for its PCI device, a HWPT for its domain, an IOAS for the
 * domains of its HWPTs (an area mapped into an IOAS is written into each of them). A slot stands for
 * the devices on its bus, a PHB option for the PHB's PEs, and a VF for its PF while the VF comes or
 * goes (the PF's VF list changes).
 *
 * A device's history therefore holds its group's and its PE's events while it is a member: a sibling
 * function being claimed, a mapping in the group's domain and a window set on the PE all change what the
 * device can reach.
 */
export type Entity =
  | { readonly kind: 'device'; readonly bdf: string }
  | { readonly kind: 'group'; readonly id: number }
  | { readonly kind: 'context'; readonly name: string };

export function entityKey(e: Entity): string {
  return e.kind === 'device' ? `device:${e.bdf}` : e.kind === 'group' ? `group:${e.id}` : `context:${e.name}`;
}

export function entityOf(key: string): Entity {
  const [kind, id] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
  return kind === 'device' ? { kind, bdf: id } : kind === 'group' ? { kind, id: Number(id) } : { kind: 'context', name: id };
}

export function entityLabel(e: Entity): string {
  return e.kind === 'device' ? `device ${e.bdf}` : e.kind === 'group' ? `group ${e.id}` : `context ${e.name}`;
}

/** Adds the keys of every entity `event` concerns to `out`. */
export function addConcerns(event: IommuEvent, before: State, after: State, out: Set<string>): void {
  // Most events change one record; an unchanged record is the same object on both sides and is read once.
  const states = [before, after];
  const context = (name: string): void => void out.add(`context:${name}`);
  const group = (id: number): void => {
    out.add(`group:${id}`);
    for (const s of states) {
      const g = s.groups[id];
      if (!g || (s === after && g === before.groups[id])) continue;
      for (const bdf of g.devices) out.add(`device:${bdf}`);
      if (g.owner !== null) context(g.owner);
    }
  };
  const device = (bdf: string): void => {
    out.add(`device:${bdf}`);
    for (const s of states) {
      const d = s.devices[bdf];
      if (d?.group !== undefined && d.group !== null) group(d.group);
      if (d?.pf && before.devices[d.pf] !== after.devices[d.pf]) out.add(`device:${d.pf}`);
    }
  };
  const pe = (id: string): void => {
    for (const s of states) {
      const p = s.pes[id];
      if (!p || (s === after && p === before.pes[id])) continue;
      for (const bdf of p.devices) out.add(`device:${bdf}`);
      if (p.group !== null) group(p.group);
    }
  };
  const domain = (id: number): void => {
    for (const s of states) {
      const d = s.domains[id];
      if (!d || (s === after && d === before.domains[id])) continue;
      context(d.context);
      group(d.group);
    }
  };
  // iommufd object ids are per context: they name an object only together with the event's context.
  const object = (name: string, id: number, kind: 'ioas' | 'hwpt' | 'device'): void => {
    for (const s of states) {
      const o = s.iommufd[name]?.objects[id];
      if (!o || o.kind !== kind || (s === after && o === before.iommufd[name]?.objects[id])) continue;
      if (o.kind === 'device') device(o.bdf);
      else if (o.kind === 'hwpt') domain(o.domain);
      else for (const h of o.hwpts) object(name, h, 'hwpt');
    }
  };
  const slot = (name: string): void => {
    for (const s of states) {
      const sl = s.slots[name];
      if (sl) for (const bdf of slotDevices(s, sl)) device(bdf);
    }
  };
  const phb = (n: number): void => {
    for (const s of states) for (const p of Object.values(s.pes)) if (p.phb === n) pe(p.id);
  };
  const data = event.data as Readonly<Record<string, unknown>>;
  if (typeof data.bdf === 'string') device(data.bdf);
  if (typeof data.group === 'number') group(data.group);
  if (typeof data.pe === 'string') pe(data.pe);
  if (typeof data.domain === 'number') domain(data.domain);
  if (typeof data.context === 'string') {
    const name = data.context;
    context(name);
    // DeviceAdded's `device` is a PCI device id, not an object: it has no context.
    if (typeof data.ioas === 'number') object(name, data.ioas, 'ioas');
    if (typeof data.hwpt === 'number') object(name, data.hwpt, 'hwpt');
    if (typeof data.device === 'number') object(name, data.device, 'device');
  }
  // A VFIO sPAPR container is its owner's context; SpaprWindowsSet lists every group it programs.
  if (typeof data.container === 'string') context(data.container);
  if (event.type === 'SpaprWindowsSet') for (const g of event.data.groups) group(g.group);
  // A hotplug slot is named by a string, a window slot (WindowSet/Unset) by its number. A PHB stands for
  // its PEs only in an event that names nothing narrower on it (PeCreated names its PE).
  if (typeof data.slot === 'string') slot(data.slot);
  else if (typeof data.phb === 'number' && data.pe === undefined) phb(data.phb);
  if (event.type === 'WindowSet' && event.data.table.kind === 'domain') domain(event.data.table.domain);
  if (event.type === 'WindowUnset') {
    const table = before.pes[event.data.pe]?.windows[event.data.slot]?.table;
    if (table?.kind === 'domain') domain(table.domain);
  }
}

/**
 * What kind of change an event is, for timelines. A table over every event type: a new event kind does
 * not compile until it is given a category.
 */
export type Category = 'topology' | 'hotplug' | 'driver' | 'ownership' | 'domain' | 'attachment' | 'window' | 'mapping' | 'eeh';

export const CATEGORIES: readonly Category[] = ['topology', 'hotplug', 'driver', 'ownership', 'domain', 'attachment', 'window', 'mapping', 'eeh'];

export const EVENT_CATEGORY: Readonly<Record<IommuEventType, Category>> = {
  PhbAdded: 'topology',
  PeCreated: 'hotplug',
  PeReleased: 'hotplug',
  DeviceAdded: 'hotplug',
  DeviceRemoved: 'hotplug',
  GroupCreated: 'hotplug',
  GroupRemoved: 'hotplug',
  DriverBound: 'driver',
  DriverUnbound: 'driver',
  DmaOwnerClaimed: 'ownership',
  DmaOwnerReleased: 'ownership',
  PagingDomainAllocated: 'domain',
  PagingDomainFreed: 'domain',
  DeviceAttached: 'attachment',
  DeviceDetached: 'attachment',
  WindowSet: 'window',
  WindowUnset: 'window',
  BypassSet: 'window',
  TcesMapped: 'mapping',
  TcesCleared: 'mapping',
  RemovalRequested: 'hotplug',
  SlotRegistered: 'hotplug',
  SlotStateChanged: 'hotplug',
  PhbOptionSet: 'topology',
  IoasAllocated: 'domain',
  IoasDestroyed: 'domain',
  IoasAllowedSet: 'domain',
  IoasTestReserved: 'domain',
  IoasAreaMapped: 'mapping',
  IoasAreaUnmapped: 'mapping',
  HwptAllocated: 'domain',
  HwptDestroyed: 'domain',
  IommufdDeviceBound: 'ownership',
  IommufdDeviceUnbound: 'ownership',
  IommufdClosed: 'ownership',
  IommufdDeviceAttached: 'attachment',
  IommufdDeviceDetached: 'attachment',
  IommufdGroupReplaced: 'attachment',
  EehFrozen: 'eeh',
  EehReported: 'eeh',
  EehThawed: 'eeh',
  EehResetAsserted: 'eeh',
  EehResetDeasserted: 'eeh',
  EehRecovered: 'eeh',
  EehPermanentFailure: 'eeh',
  EehCountRestored: 'eeh',
  // The guest's own TCE tables (pSeries hypercalls) and KVM's view of them.
  GuestTcesPut: 'mapping',
  GuestTcesStuffed: 'mapping',
  KvmTceTableCreated: 'domain',
  KvmMemslotSet: 'domain',
  KvmGroupLinked: 'attachment',
  MemoryPreregistered: 'mapping',
  MemoryUnregistered: 'mapping',
  // A VFIO sPAPR container is a user context holding groups.
  SpaprContainerOpened: 'ownership',
  SpaprGroupAttached: 'ownership',
  SpaprGroupDetached: 'ownership',
  SpaprEnabled: 'attachment',
  SpaprWindowsSet: 'window',
  SpaprRegionReferenced: 'mapping',
  SpaprContainerClosed: 'ownership',
  // The platform hypervisor of a pSeries partition: its knobs are configuration, its countdown moves with maps.
  IoEntitlementSet: 'topology',
  HcallFaultSet: 'topology',
  HcallEntriesAccepted: 'mapping',
  TcesLeaked: 'mapping',
};
