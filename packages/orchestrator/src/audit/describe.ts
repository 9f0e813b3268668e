import { domainRefView, fromHex, toHex, type IommuEvent, type State } from '@iommu-orch/core';
import { hex4, pageSize, windowText } from '../render.js';

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
      const start = fromHex(d.start);
      return `${d.context} allocated paging domain ${d.domain} for group ${d.group}: aperture ${range(start, fromHex(d.size))}, ${pageSize(d.pageShift)} pages`;
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
      const perm = d.perm === 3 ? 'rw' : d.perm === 1 ? 'r' : String(d.perm);
      return `domain ${d.domain} mapped ${pages(before, d)} -> ${d.paddr} ${perm}`;
    }
    case 'TcesCleared': {
      const d = event.data;
      return `domain ${d.domain} unmapped ${pages(before, d)}`;
    }
  }
}

function range(start: bigint, size: bigint): string {
  return `[${toHex(start)}, ${toHex(start + size - 1n)}]`;
}

/** A TCE range; its page size is the domain's (map and unmap refuse any other). */
function pages(state: State, d: { domain: number; iova: string; pgsize: string; pgcount: number }): string {
  const shift = state.domains[d.domain]?.table.pageShift;
  const unit = shift === undefined ? d.pgsize : pageSize(shift);
  return `${range(fromHex(d.iova), fromHex(d.pgsize) * BigInt(d.pgcount))} (${d.pgcount} x ${unit})`;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
