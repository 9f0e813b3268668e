import type { Command, Output } from './commands.js';
import { allocPagingDomain, attachDevice, detachDevice, freeDomain, iovaToPhys, mapPages, unmapPages } from './domain.js';
import { fail, IommuError } from './errors.js';
import type { IommuEvent } from './events.js';
import { claimDevice, releaseDevice } from './group.js';
import { normalizeBdf } from './pci.js';
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
      releaseDevice(tx, context(c.context), bdf(c.bdf));
      return {};
    case 'allocPagingDomain': {
      const id = allocPagingDomain(tx, context(c.context), bdf(c.bdf), c.pageShift ?? 12);
      const d = tx.state.domains[id]!;
      return { domain: id, apertureStart: toHex(d.start), apertureEnd: toHex(d.last), pgsize: toHex(1n << BigInt(d.table.pageShift)) };
    }
    case 'freeDomain':
      freeDomain(tx, context(c.context), c.domain);
      return {};
    case 'attachDevice':
      attachDevice(tx, context(c.context), c.domain, bdf(c.bdf));
      return {};
    case 'detachDevice':
      detachDevice(tx, context(c.context), bdf(c.bdf));
      return {};
    case 'mapPages':
      return { mapped: bytes(mapPages(tx, context(c.context), c.domain, c)) };
    case 'unmapPages':
      return { unmapped: bytes(unmapPages(tx, context(c.context), c.domain, c.iova, c.pgsize, c.pgcount)) };
    case 'iovaToPhys':
      return { phys: toHex(iovaToPhys(tx.state, context(c.context), c.domain, c.iova)) };
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
