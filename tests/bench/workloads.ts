/**
 * The two logs the replay benchmarks fold (store.bench.ts reads them from SQLite, fold.bench.ts folds
 * them in memory). Lifecycle: VMs take devices in turn (unbind, claim, allocate, attach, 8 maps,
 * 4 unmaps, detach, free, release, rebind): every kind of event, about half of them TCE writes.
 * Map churn: maps and unmaps 1 MiB apart across one 2 GiB window, each landing on its own TCE leaf,
 * the worst case for the copy-on-write tables (every event copies a 4 KiB leaf and two directory levels).
 */
import { decide, EVENT_SCHEMA_VERSION, initialState, type Command, type State } from '@iommu-orch/core';
import type { NewEvent } from '@iommu-orch/store';
import { attachedBootCommands, bootCommands } from '../support/arbitraries.js';

export function lifecycleCommands(cycles: number): Command[] {
  const out: Command[] = [...bootCommands];
  // The groups of the boot topology: a group is claimed whole (both NVMe functions share one).
  const groups = [['0000:01:00.0', '0000:01:00.1'], ['0001:01:00.0']];
  for (let c = 0; c < cycles; c++) {
    const devices = groups[c % 2]!;
    const bdf = devices[0]!;
    const context = `vm${c % 5}`;
    const domain = c + 1;
    const driven = bdf === '0001:01:00.0';
    if (driven) out.push({ type: 'unbindDriver', bdf });
    for (const d of devices) out.push({ type: 'claimDevice', context, bdf: d });
    out.push({ type: 'allocPagingDomain', context, bdf, pageShift: 12 }, { type: 'attachDevice', context, domain, bdf });
    for (let m = 0; m < 8; m++) {
      out.push({ type: 'mapPages', context, domain, iova: BigInt(m) << 24n, paddr: 0x4000_0000n, pgsize: 0x1000n, pgcount: 1 + ((c + m) % 16), prot: { read: true, write: m % 2 === 0 } });
    }
    for (let m = 0; m < 4; m++) out.push({ type: 'unmapPages', context, domain, iova: BigInt(m) << 24n, pgsize: 0x1000n, pgcount: 16 });
    out.push({ type: 'detachDevice', context, bdf }, { type: 'freeDomain', context, domain });
    for (const d of devices) out.push({ type: 'releaseDevice', context, bdf: d });
    if (driven) out.push({ type: 'bindDriver', bdf, driver: 'tg3' });
  }
  return out;
}

export function mapChurnCommands(count: number): Command[] {
  const out: Command[] = [...attachedBootCommands];
  const mapped = new Set<number>();
  for (let i = 0; i < count; i++) {
    const slot = (i * 7919) % 2048;
    const where = { context: 'vm1', domain: 1, iova: BigInt(slot) << 20n, pgsize: 0x1000n, pgcount: 1 + (i % 16) } as const;
    if (mapped.delete(slot)) out.push({ type: 'unmapPages', ...where });
    else {
      mapped.add(slot);
      out.push({ type: 'mapPages', ...where, paddr: 0x4000_0000n, prot: { read: true, write: true } });
    }
  }
  return out;
}

/** The events the commands produce, decided in memory, as the orchestrator would append them. */
export function eventsOf(commands: readonly Command[]): NewEvent[] {
  let state: State = initialState;
  const out: NewEvent[] = [];
  commands.forEach((c, i) => {
    const d = decide(state, c);
    if (!d.ok) throw new Error(`workload command ${i} (${c.type}) refused: ${d.error.message}`);
    const metadata = { time: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(), commandId: `cmd-${i}`, commandType: c.type };
    for (const e of d.events) out.push({ eventId: `host:${out.length + 1}`, type: e.type, schemaVersion: EVENT_SCHEMA_VERSION, data: e.data, metadata });
    state = d.state;
  });
  return out;
}

/** The benchmarks' two logs, by name, at the sizes docs/performance.md reports. */
export const replayWorkloads = (): readonly (readonly [string, readonly Command[]])[] => [
  ['VM lifecycle', lifecycleCommands(1500)],
  ['map churn', mapChurnCommands(20000)],
];
