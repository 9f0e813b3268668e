import { decide, initialState, invariants, invariantsAfter, type Command, type Prot, type State } from '@iommu-orch/core';
import { expect } from 'vitest';

/** Applies commands that must succeed; throws with the command and the error otherwise. */
export function apply(state: State, ...commands: Command[]): State {
  let s = state;
  for (const c of commands) {
    const d = decide(s, c);
    if (!d.ok) throw new Error(`${c.type} refused: ${d.error.code} ${d.error.message}`);
    s = d.state;
  }
  return s;
}

/** The refusal code of a command, or 'ok'. */
export function codeOf(state: State, command: Command): string {
  const d = decide(state, command);
  return d.ok ? 'ok' : d.error.code;
}

export const ROOT_PORT = { vendor: 0x1014, device: 0x04c1, classCode: 0x060400 } as const;
export const NVME = { vendor: 0x1987, device: 0x5008, classCode: 0x010802 } as const;
export const NIC = { vendor: 0x14e4, device: 0x1657, classCode: 0x020000 } as const;

/** A POWER9 PowerNV host: PHB 0 with an NVMe on bus 1, PHB 1 with a two-function NIC on bus 1. */
export function powernvHost(): State {
  return apply(
    initialState,
    { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
    { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB4' },
    { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
    { type: 'addDevice', bdf: '0000:01:00.0', ...NVME },
    { type: 'addDevice', bdf: '0001:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
    { type: 'addDevice', bdf: '0001:01:00.0', ...NIC, driver: 'tg3' },
    { type: 'addDevice', bdf: '0001:01:00.1', ...NIC, driver: 'tg3' },
  );
}

/** powernvHost with 0000:01:00.0 claimed by vm1 and attached to paging domain 1 (4 KiB pages). */
export function attachedHost(pageShift = 12): State {
  return apply(
    powernvHost(),
    { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
    { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift },
    { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' },
  );
}

export const rw: Prot = { read: true, write: true };
export const ro: Prot = { read: true, write: false };
export const wo: Prot = { read: false, write: true };

export function map(iova: bigint, pgcount: number, paddr = 0x2000_0000n, prot: Prot = rw, pgsize = 0x1000n): Command {
  return { type: 'mapPages', context: 'vm1', domain: 1, iova, paddr, pgsize, pgcount, prot };
}

export function unmap(iova: bigint, pgcount: number, pgsize = 0x1000n): Command {
  return { type: 'unmapPages', context: 'vm1', domain: 1, iova, pgsize, pgcount };
}

/** Mellanox ConnectX-5 Ex PF (real-world.md L6): VFs 15b3:1018 from function 2 on. */
export const CX5_PF = { vendor: 0x15b3, device: 0x1019, classCode: 0x020700, totalVfs: 8, vfOffset: 2, vfStride: 1, vfDevice: 0x1018 } as const;

/** A POWER9 host with a ConnectX-5 PF (mlx5_core) at 0002:01:00.0 in slot C2, plus powernvHost. */
export function sriovHost(): State {
  return apply(
    powernvHost(),
    { type: 'addPhb', phb: 2, platform: 'powernv', generation: 'PHB4' },
    { type: 'addDevice', bdf: '0002:00:00.0', ...ROOT_PORT, driver: 'pcieport' },
    { type: 'registerSlot', slot: 'C2', phb: 2, bus: 1 },
    { type: 'enableSlot', slot: 'C2', devices: [{ bdf: '0002:01:00.0', ...CX5_PF, driver: 'mlx5_core' }] },
  );
}

/** The events a command would emit (their types), or the refusal code. */
export function eventTypes(state: State, command: Command): string[] | string {
  const d = decide(state, command);
  return d.ok ? d.events.map((e) => e.type) : d.error.code;
}

/** Every event of an accepted decision keeps the invariants: incrementally after each, in full at the end. */
export function expectInvariantsAlong(before: State, states: readonly State[]): void {
  let prev = before;
  for (const next of states) {
    expect(invariantsAfter(prev, next)).toEqual([]);
    prev = next;
  }
  expect(invariants(prev)).toEqual([]);
}
