import { dma64Start, domainRefView, fromHex, toHex, windowAt, type IommuEvent, type State } from '@iommu-orch/core';
import { hex4, pageSize, windowText } from '../render.js';
import { ioasDomains, ioasOf } from './iommufd-objects.js';

/**
 * One line per event for timelines, from the event and the state on both sides of it: what changed,
 * and where it matters what it was before (an owner, a group's domain), the before and after.
 */
export function describeEvent(event: IommuEvent, before: State, after: State): string {
  switch (event.type) {
    case 'PhbAdded': {
      const d = event.data;
      return `PHB ${hex4(d.phb)} added: ${d.platform} ${d.generation}, ${d.numPes} PEs`;
    }
    case 'PeCreated': {
      const d = event.data;
      return `PE ${d.pe} created (${d.bus === null ? 'all buses' : `bus ${hex2(d.bus)}`}), 32-bit window space ${range(fromHex(d.tce32Start), fromHex(d.tce32Size))}`;
    }
    case 'PeReleased':
      return `PE ${event.data.pe} released (its last device is gone)`;
    case 'DeviceAdded': {
      const d = event.data;
      const where = d.group === null ? 'a bridge, no group' : `group ${d.group}`;
      return `${d.bdf} added (${hex4(d.vendor)}:${hex4(d.device)} class ${d.classCode.toString(16).padStart(6, '0')}) in PE ${d.pe}, ${where}, driver ${d.driver ?? 'none'}`;
    }
    case 'DeviceRemoved':
      return `${event.data.bdf} removed (${event.data.surprise ? 'surprise' : 'orderly'} hot-removal)`;
    case 'DriverBound':
      return `driver ${event.data.driver} bound to ${event.data.bdf}`;
    case 'DriverUnbound':
      return `driver ${before.devices[event.data.bdf]?.driver ?? '?'} unbound from ${event.data.bdf}`;
    case 'GroupCreated':
      return `group ${event.data.group} created for PE ${event.data.pe}, owned by the kernel`;
    case 'GroupRemoved':
      return `group ${event.data.group} removed (its last device is gone)`;
    case 'DmaOwnerClaimed': {
      const { group, bdf, context } = event.data;
      const was = before.groups[group]?.owner ?? null;
      return was === null
        ? `${context} claimed ${bdf}: group ${group} owner kernel -> ${context} (blocking domain)`
        : `${context} claimed ${bdf} too (group ${group} already owned by ${context}, ${after.groups[group]?.claimed.length ?? 0} claimed)`;
    }
    case 'DmaOwnerReleased': {
      const { group, bdf, context, forced } = event.data;
      const how = forced ? ' (forced by surprise removal)' : '';
      const now = after.groups[group]?.owner ?? null;
      return now === null
        ? `${context} released ${bdf}${how}: group ${group} owner ${context} -> kernel`
        : `${context} released ${bdf}${how}; group ${group} still owned by ${now}`;
    }
    case 'PagingDomainAllocated': {
      const d = event.data;
      return `${d.context} allocated paging domain ${d.domain} for group ${d.group}: ${apertures(after, d.domain)}`;
    }
    case 'PagingDomainFreed': {
      const d = before.domains[event.data.domain];
      const why = event.data.reason === 'user' ? 'freed by its context' : 'freed with its removed group';
      return `paging domain ${event.data.domain}${d ? ` of ${d.context} (group ${d.group})` : ''} ${why}`;
    }
    case 'DeviceAttached':
    case 'DeviceDetached': {
      const { domain, group, bdf } = event.data;
      const from = before.groups[group]?.domain;
      const to = after.groups[group]?.domain;
      const verb = event.type === 'DeviceAttached' ? 'attached to' : 'detached from';
      const change = from && to && domainRefView(from) !== domainRefView(to) ? `: group ${group} ${domainRefView(from)} -> ${domainRefView(to)}` : '';
      return `${bdf} ${verb} paging domain ${domain}${change}`;
    }
    case 'WindowSet': {
      const d = event.data;
      const w = { start: fromHex(d.start), size: fromHex(d.size), pageShift: d.pageShift, table: d.table };
      return `PE ${d.pe} window ${d.slot} set: ${windowText(w)}`;
    }
    case 'WindowUnset': {
      const w = before.pes[event.data.pe]?.windows[event.data.slot];
      return `PE ${event.data.pe} window ${event.data.slot} unset${w ? ` (was ${windowText(w)})` : ''}`;
    }
    case 'BypassSet':
      return `PE ${event.data.pe} bypass ${event.data.enabled ? 'on' : 'off'}`;
    case 'TcesMapped': {
      const d = event.data;
      return `domain ${d.domain} mapped ${pages(before, d)} -> ${d.paddr} ${d.perm}`;
    }
    case 'TcesCleared': {
      const d = event.data;
      return `domain ${d.domain} unmapped ${pages(before, d)}`;
    }
    case 'RemovalRequested': {
      const { bdf, context } = event.data;
      return `removal of ${bdf} requested${context === null ? '' : `: waiting for ${context} to release it`}`;
    }
    case 'SlotRegistered': {
      const d = event.data;
      return `slot ${d.slot} registered for PHB ${hex4(d.phb)} bus ${hex2(d.bus)}: ${d.state}`;
    }
    case 'SlotStateChanged': {
      const was = before.slots[event.data.slot]?.state ?? '?';
      return `slot ${event.data.slot} ${was} -> ${event.data.state}`;
    }
    case 'PhbOptionSet': {
      const d = event.data;
      return `PHB ${hex4(d.phb)} option ${d.option} ${d.enabled ? 'on' : 'off'}: window slot 1 starts at ${toHex(dma64Start(after, d.phb))}`;
    }
    case 'IoasAllocated':
      return `${event.data.context} allocated IOAS ${event.data.ioas}`;
    case 'IoasDestroyed':
      return `${event.data.context} destroyed IOAS ${event.data.ioas}`;
    case 'IoasAreaMapped': {
      const d = event.data;
      const perm = d.write ? (d.read ? 'rw' : 'w') : 'r';
      return `${d.context} mapped ${range(fromHex(d.iova), fromHex(d.length))} -> ${d.paddr} ${perm} in IOAS ${d.ioas}${domainsText(ioasDomains(after, d.context, d.ioas))}`;
    }
    case 'IoasAreaUnmapped': {
      const d = event.data;
      const area = ioasOf(before, d.context, d.ioas)?.areas.find((a) => a.iova === fromHex(d.iova));
      const what = area ? `[${toHex(area.iova)}, ${toHex(area.last)}] -> ${toHex(area.paddr)}` : `the area at ${d.iova}`;
      return `${d.context} unmapped ${what} from IOAS ${d.ioas}${domainsText(ioasDomains(before, d.context, d.ioas))}`;
    }
    case 'IoasAllowedSet': {
      const d = event.data;
      const ranges = d.ranges.map((r) => `[${r.start}, ${r.last}]`).join(' ');
      return `${d.context} set the allowed IOVA of IOAS ${d.ioas}: ${ranges || 'any (no restriction)'}`;
    }
    case 'IoasTestReserved': {
      const d = event.data;
      return `${d.context} reserved [${d.range.start}, ${d.range.last}] in IOAS ${d.ioas}`;
    }
    case 'HwptAllocated': {
      const d = event.data;
      return `${d.context} allocated ${d.auto ? 'automatic ' : ''}HWPT ${d.hwpt} on IOAS ${d.ioas} with paging domain ${d.domain}: ${apertures(after, d.domain)}`;
    }
    case 'HwptDestroyed': {
      const h = before.iommufd[event.data.context]?.objects[event.data.hwpt];
      return `${event.data.context} destroyed HWPT ${event.data.hwpt}${h?.kind === 'hwpt' ? ` (domain ${h.domain}, IOAS ${h.ioas})` : ''}`;
    }
    case 'IommufdDeviceBound': {
      const d = event.data;
      return `${d.context} bound ${d.bdf} to iommufd as DEVICE ${d.device}`;
    }
    case 'IommufdDeviceUnbound':
      return `${event.data.context} unbound DEVICE ${event.data.device}${deviceBdf(before, event.data.context, event.data.device)}`;
    case 'IommufdDeviceAttached': {
      const d = event.data;
      const h = after.iommufd[d.context]?.objects[d.hwpt];
      return `${d.context} attached DEVICE ${d.device}${deviceBdf(after, d.context, d.device)} to HWPT ${d.hwpt}${h?.kind === 'hwpt' ? ` (domain ${h.domain})` : ''}`;
    }
    case 'IommufdDeviceDetached': {
      const d = event.data;
      const dev = before.iommufd[d.context]?.objects[d.device];
      const from = dev?.kind === 'device' && dev.hwpt !== null ? ` from HWPT ${dev.hwpt}` : '';
      return `${d.context} detached DEVICE ${d.device}${deviceBdf(before, d.context, d.device)}${from}`;
    }
    case 'IommufdGroupReplaced': {
      const d = event.data;
      const from = before.groups[d.group]?.domain;
      return `${d.context} replaced the domain of group ${d.group}: ${from ? domainRefView(from) : '?'} -> paging:${d.domain} (HWPT ${d.hwpt}), DEVICE ${d.devices.map((x) => x.device).join(', ')} moved`;
    }
    case 'IommufdClosed':
      return `${event.data.context} closed its /dev/iommu`;
    case 'EehFrozen':
      return `PE ${event.data.pe} frozen (${event.data.cause === 'inject' ? 'injected error' : 'detected on an access'})`;
    case 'EehReported':
      return `PE ${event.data.pe} EEH ${event.data.phase}: ${String(event.data.result)}`;
    case 'EehThawed':
      return `PE ${event.data.pe} ${event.data.what.toUpperCase()} thawed`;
    case 'EehResetAsserted':
      return `PE ${event.data.pe} ${event.data.kind} reset asserted (${event.data.scope})`;
    case 'EehResetDeasserted':
      return `PE ${event.data.pe} reset deasserted`;
    case 'EehRecovered':
      return `PE ${event.data.pe} recovered`;
    case 'EehPermanentFailure':
      return `PE ${event.data.pe} failed permanently: ${event.data.reason}`;
    case 'EehCountRestored':
      return `PE ${event.data.pe} freeze count restored to ${event.data.freezeCount}`;
    case 'GuestTcesPut':
      return `guest LIOBN ${hexId(event.data.liobn)}: ${event.data.tces.length} TCE(s) put from entry ${event.data.index}`;
    case 'GuestTcesStuffed':
      return `guest LIOBN ${hexId(event.data.liobn)}: ${event.data.count} TCE(s) from entry ${event.data.index} set to ${event.data.tce}`;
    case 'KvmTceTableCreated':
      return `KVM TCE table for LIOBN ${hexId(event.data.liobn)}: ${event.data.size} entries of ${pageSize(event.data.pageShift)} at ${event.data.offset}`;
    case 'KvmMemslotSet':
      return `KVM memslot ${event.data.slot}: guest ${event.data.gpa}+${event.data.size} at user ${event.data.ua}`;
    case 'KvmGroupLinked':
      return `${event.data.context} linked group ${event.data.group}'s table to LIOBN ${hexId(event.data.liobn)}`;
    case 'MemoryPreregistered':
      return `memory ${event.data.ua}+${event.data.size} preregistered (${pageSize(event.data.pageShift)} pages)`;
    case 'MemoryUnregistered':
      return `memory ${event.data.ua}+${event.data.size} unregistered`;
    case 'SpaprContainerOpened':
      return `VFIO sPAPR ${event.data.v2 ? 'v2' : 'v1'} container ${event.data.container} opened`;
    case 'SpaprGroupAttached':
      return `container ${event.data.container} took group ${event.data.group}`;
    case 'SpaprGroupDetached':
      return `container ${event.data.container} let group ${event.data.group} go`;
    case 'SpaprEnabled':
      return `container ${event.data.container} ${event.data.enabled ? 'enabled' : 'disabled'}`;
    case 'SpaprWindowsSet':
      return `container ${event.data.container} windows set for group(s) ${event.data.groups.map((g) => g.group).join(', ')}`;
    case 'SpaprRegionReferenced':
      return `container ${event.data.container} ${event.data.referenced ? 'references' : 'dropped'} region ${event.data.ua}+${event.data.size}`;
    case 'SpaprContainerClosed':
      return `container ${event.data.container} closed`;
    case 'IoEntitlementSet':
      return event.data.bytes === null ? 'the partition has no I/O entitlement any more' : `the partition's I/O entitlement is ${event.data.bytes} bytes`;
    case 'HcallFaultSet': {
      const d = event.data;
      return d.code === null ? `PHB ${hex4(d.phb)}'s hypervisor answers TCE hcalls normally again` : `PHB ${hex4(d.phb)}'s hypervisor answers ${d.code} to every TCE hcall after ${d.afterEntries} more entries`;
    }
    case 'HcallEntriesAccepted':
      return `PHB ${hex4(event.data.phb)}'s hypervisor accepted ${event.data.entries} entries of its countdown to a fault`;
    case 'TcesLeaked': {
      const d = event.data;
      return `domain ${d.domain} leaked ${pages(before, d)} -> ${d.paddr}: the hypervisor refused their clear as the table went away, the pages stay pinned`;
    }
  }
}

function hexId(n: number): string {
  return `0x${n.toString(16)}`;
}

/** A domain's windows as "window 0 [start, last] 4K pages; window 1 ...". */
function apertures(state: State, id: number): string {
  const d = state.domains[id];
  if (!d) return `domain ${id} unknown`;
  return d.windows.map((w) => `window ${w.slot} [${toHex(w.start)}, ${toHex(w.last)}] ${pageSize(w.table.pageShift)} pages`).join('; ');
}

/** The paging domains an IOAS fills, as " (domains 3, 4)". */
function domainsText(domains: readonly number[]): string {
  return domains.length === 0 ? '' : ` (domain${domains.length > 1 ? 's' : ''} ${domains.join(', ')})`;
}

function deviceBdf(state: State, context: string, id: number): string {
  const o = state.iommufd[context]?.objects[id];
  return o?.kind === 'device' ? ` (${o.bdf})` : '';
}

function range(start: bigint, size: bigint): string {
  return `[${toHex(start)}, ${toHex(start + size - 1n)}]`;
}

/** A TCE range; its page size is that of the window it lies in (map and unmap refuse any other). */
function pages(state: State, d: { domain: number; iova: string; pgsize: string; pgcount: number }): string {
  const domain = state.domains[d.domain];
  const shift = domain && windowAt(domain, fromHex(d.iova))?.table.pageShift;
  const unit = shift === undefined ? d.pgsize : pageSize(shift);
  return `${range(fromHex(d.iova), fromHex(d.pgsize) * BigInt(d.pgcount))} (${d.pgcount} x ${unit})`;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
