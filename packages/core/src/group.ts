import { fail } from './errors.js';
import type { Bdf } from './pci.js';
import { drop, patch, put, without, type Device, type DomainRef, type Group, type PeId, type State } from './state.js';
import type { Tx } from './tx.js';
import { clearWindows, setDefaultConfig } from './window.js';

/**
 * IOMMU groups and DMA ownership (drivers/iommu/iommu.c semantics).
 *
 * Invariants:
 * - owner === null  <=>  claimed is empty; a user-owned group is never on the platform domain and a
 *   kernel-owned group is always on it.
 * - domain is paging  <=>  attached is non-empty; attached is a subset of claimed.
 * - A kernel driver bound to a device of a user-owned group is impossible (claim is EPERM while one is
 *   bound, and a driver probe into an owned group is EBUSY).
 */
export type GroupEvent =
  | { readonly type: 'GroupCreated'; readonly data: { readonly group: number; readonly pe: PeId } }
  | { readonly type: 'GroupRemoved'; readonly data: { readonly group: number } }
  | { readonly type: 'DmaOwnerClaimed'; readonly data: { readonly group: number; readonly bdf: Bdf; readonly context: string } }
  | {
      readonly type: 'DmaOwnerReleased';
      readonly data: { readonly group: number; readonly bdf: Bdf; readonly context: string; readonly forced: boolean };
    };

export function requireDevice(state: State, bdf: Bdf): Device {
  return state.devices[bdf] ?? fail('ENODEV', `no device ${bdf}`);
}

/** The device's group; ENODEV for bridges and other devices without one (device_group fails). */
export function requireGroupOf(state: State, bdf: Bdf): Group {
  const dev = requireDevice(state, bdf);
  if (dev.group === null) fail('ENODEV', `${bdf} is a bridge and belongs to no IOMMU group`);
  return state.groups[dev.group]!;
}

/**
 * iommu_device_claim_dma_owner: the first claim of a group moves it from the platform domain to
 * blocking (take_ownership empties the PE's windows); later claims by the same owner only count.
 */
export function claimDevice(tx: Tx, context: string, bdf: Bdf): void {
  const group = requireGroupOf(tx.state, bdf);
  // vfio has dropped the device's registration: the removal only waits for current users.
  if (tx.state.devices[bdf]!.removalRequested) fail('ENODEV', `${bdf} is being removed`);
  const drivers = group.devices.filter((d) => tx.state.devices[d]!.driver !== null);
  if (drivers.length > 0) {
    fail('EPERM', `group ${group.id}: kernel driver ${tx.state.devices[drivers[0]!]!.driver} is bound to ${drivers[0]}`);
  }
  if (group.owner !== null && group.owner !== context) fail('EPERM', `group ${group.id} is owned by context ${group.owner}`);
  if (group.claimed.includes(bdf)) fail('EBUSY', `${bdf} is already claimed by context ${context}`);
  if (group.owner === null) {
    if (group.domain.type !== 'platform') fail('EBUSY', `group ${group.id} is not on its default domain`);
    // The blocking domain's attach (take_ownership) empties the PE before the owner is recorded.
    clearWindows(tx, group.pe);
  }
  tx.emit({ type: 'DmaOwnerClaimed', data: { group: group.id, bdf, context } });
}

/**
 * A group is assigned whole or not at all: before it is attached to a paging domain, every endpoint in
 * it must be claimed by the attaching context (bridges are never in a group and stay with the host).
 * EINVAL, as legacy VFIO answers a device open in a group that is not viable.
 */
export function requireWholeGroup(group: Group, context: string): void {
  const missing = group.devices.filter((d) => !group.claimed.includes(d));
  if (missing.length > 0) {
    fail('EINVAL', `group ${group.id} is not viable for context ${context}: ${missing.join(', ')} not claimed; a group is assigned whole or not at all`);
  }
}

/** iommu_device_release_dma_owner: the last release returns the group to the platform domain. */
export function releaseDevice(tx: Tx, context: string, bdf: Bdf, forced = false): void {
  const group = requireGroupOf(tx.state, bdf);
  if (!group.claimed.includes(bdf)) {
    if (group.owner !== null && group.owner !== context) fail('EPERM', `group ${group.id} is owned by context ${group.owner}`);
    fail('EINVAL', `${bdf} is not claimed by context ${context}`);
  }
  if (group.owner !== context) fail('EPERM', `group ${group.id} is owned by context ${group.owner}`);
  if (group.attached.includes(bdf)) fail('EBUSY', `${bdf} is attached to domain ${domainLabel(group.domain)}; detach it first`);
  tx.emit({ type: 'DmaOwnerReleased', data: { group: group.id, bdf, context, forced } });
  if (tx.state.groups[group.id]!.owner === null) setDefaultConfig(tx, tx.state.pes[group.pe]!);
}

export function domainLabel(ref: DomainRef): string {
  return ref.type === 'paging' ? `paging#${ref.id}` : ref.type;
}

export function evolveGroup(state: State, event: GroupEvent): State {
  switch (event.type) {
    case 'GroupCreated': {
      const { group, pe } = event.data;
      const g: Group = { id: group, pe, devices: [], owner: null, claimed: [], domain: { type: 'platform' }, attached: [] };
      const p = state.pes[pe]!;
      return patch(state, {
        groups: put(state.groups, group, g),
        pes: put(state.pes, pe, { ...p, group }),
        nextGroupId: Math.max(state.nextGroupId, group + 1),
      });
    }
    case 'GroupRemoved': {
      const g = state.groups[event.data.group]!;
      const p = state.pes[g.pe]!;
      return patch(state, { groups: drop(state.groups, g.id), pes: put(state.pes, p.id, { ...p, group: null }) });
    }
    case 'DmaOwnerClaimed': {
      // The first claim switches the group to the blocking domain in the same step.
      const g = state.groups[event.data.group]!;
      const domain: DomainRef = g.owner === null ? { type: 'blocked' } : g.domain;
      return updateGroup(state, { ...g, owner: event.data.context, claimed: [...g.claimed, event.data.bdf], domain });
    }
    case 'DmaOwnerReleased': {
      // The last release returns the group to the platform (default) domain.
      const g = state.groups[event.data.group]!;
      const claimed = without(g.claimed, event.data.bdf);
      const last = claimed.length === 0;
      return updateGroup(state, { ...g, claimed, owner: last ? null : g.owner, domain: last ? { type: 'platform' } : g.domain });
    }
  }
}

export function updateGroup(state: State, group: Group): State {
  return patch(state, { groups: put(state.groups, group.id, group) });
}
