import { fail } from './errors.js';
import { parseBdf, type Bdf } from './pci.js';
import { patch, put, type Slot, type SlotState, type State } from './state.js';
import { addDevice, removeDevice, type DeviceSpec } from './topology.js';
import type { Tx } from './tx.js';

/**
 * PowerNV hotplug slots (drivers/pci/hotplug/pnv_php.c, ppc-platform.md 6.4). A slot serves one bus
 * below a root port; registering it makes it REGISTERED, or POPULATED when its card is already there.
 * Enabling a REGISTERED slot checks presence (an empty slot stays REGISTERED), powers it on and rescans:
 * every function found is added (PE, table and group as for any probe) and the slot is POPULATED.
 * Enabling a POPULATED slot does nothing, as in the kernel. Disabling (from POPULATED or REGISTERED)
 * removes the slot's devices in reverse order, a PF's VFs before the PF, then powers the slot off:
 * REGISTERED. An orderly disable is EBUSY while any of them is held by a context (the orchestrator's
 * removal saga asks owners to release first); a surprise one forces them out. Deregistering a slot
 * that is not POPULATED makes it OFFLINE; registering it again brings it back.
 *
 * Invariant: a slot that is not POPULATED has no device on its bus (topology.ts refuses probes there).
 * VFs are exempt: they live in their PF, whatever bus their routing IDs name.
 */
export type SlotEvent =
  | { readonly type: 'SlotRegistered'; readonly data: { readonly slot: string; readonly phb: number; readonly bus: number; readonly state: SlotState } }
  | { readonly type: 'SlotStateChanged'; readonly data: { readonly slot: string; readonly state: SlotState } };

export function registerSlot(tx: Tx, name: string, phb: number, bus: number): SlotState {
  if (name.length === 0) fail('EINVAL', 'slot name is empty');
  const existing = tx.state.slots[name];
  if (existing && existing.state !== 'offline') fail('EEXIST', `slot ${name} is already registered`);
  const host = tx.state.phbs[phb] ?? fail('ENODEV', `no PHB ${phb}`);
  if (host.platform !== 'powernv') fail('EOPNOTSUPP', `PHB ${phb} is not PowerNV: pnv_php slots exist on PowerNV only`);
  if (!Number.isInteger(bus) || bus < 1 || bus > 0xff) fail('EINVAL', `slot bus ${bus} must be a bus below a root port (1..255)`);
  const clash = Object.values(tx.state.slots).find((s) => s.phb === phb && s.bus === bus && s.state !== 'offline');
  if (clash) fail('EEXIST', `slot ${clash.name} already serves bus ${bus.toString(16)} of PHB ${phb}`);
  const state: SlotState = slotDevices(tx.state, { phb, bus }).length > 0 ? 'populated' : 'registered';
  tx.emit({ type: 'SlotRegistered', data: { slot: name, phb, bus, state } });
  return state;
}

/** Power on and rescan; `card` is what the rescan finds (empty: nothing is present). Returns the devices added. */
export function enableSlot(tx: Tx, name: string, card: readonly DeviceSpec[]): number {
  const slot = requireSlot(tx.state, name);
  if (slot.state === 'offline') fail('ENODEV', `slot ${name} is offline`);
  if (slot.state === 'populated' || card.length === 0) return 0;
  for (const spec of card) {
    const a = parseBdf(spec.bdf);
    if (a.domain !== slot.phb || a.bus !== slot.bus) fail('EINVAL', `${spec.bdf} is not on bus ${slot.bus.toString(16)} of PHB ${slot.phb}, which slot ${name} serves`);
  }
  // Powered before the rescan: the probes below need the bus up.
  tx.emit({ type: 'SlotStateChanged', data: { slot: name, state: 'populated' } });
  for (const spec of card) addDevice(tx, spec);
  return card.length;
}

/** Remove the slot's devices and power it off. Returns the devices removed (VFs included). */
export function disableSlot(tx: Tx, name: string, surprise: boolean): number {
  const slot = requireSlot(tx.state, name);
  if (slot.state === 'offline') fail('ENODEV', `slot ${name} is offline`);
  if (slot.state === 'registered') return 0;
  const before = Object.keys(tx.state.devices).length;
  for (const bdf of slotDevices(tx.state, slot).reverse()) removeDevice(tx, bdf, surprise);
  tx.emit({ type: 'SlotStateChanged', data: { slot: name, state: 'registered' } });
  return before - Object.keys(tx.state.devices).length;
}

export function unregisterSlot(tx: Tx, name: string): void {
  const slot = requireSlot(tx.state, name);
  if (slot.state === 'populated') fail('EBUSY', `slot ${name} is populated: disable it first`);
  if (slot.state === 'offline') return;
  tx.emit({ type: 'SlotStateChanged', data: { slot: name, state: 'offline' } });
}

export function requireSlot(state: State, name: string): Slot {
  return state.slots[name] ?? fail('ENOENT', `no slot ${name}`);
}

/** The functions on the slot's bus other than VFs (a PF takes its VFs with it), in probe order. */
export function slotDevices(state: State, slot: { readonly phb: number; readonly bus: number }): Bdf[] {
  return Object.values(state.devices).filter((d) => d.phb === slot.phb && d.bus === slot.bus && d.pf === null).map((d) => d.bdf);
}

export function evolveSlot(state: State, event: SlotEvent): State {
  switch (event.type) {
    case 'SlotRegistered': {
      const d = event.data;
      return patch(state, { slots: put(state.slots, d.slot, { name: d.slot, phb: d.phb, bus: d.bus, state: d.state }) });
    }
    case 'SlotStateChanged': {
      const slot = state.slots[event.data.slot]!;
      return patch(state, { slots: put(state.slots, slot.name, { ...slot, state: event.data.state }) });
    }
  }
}
