import type { Command } from '@iommu-orch/core';
import type { Clock } from '@iommu-orch/orchestrator';
import fc from 'fast-check';
import { attachedBootCommands, commandsArb } from './arbitraries.js';

/**
 * What a log-writer child executes, computed from a seed so that the parent can compute the same list
 * (and the log an uninterrupted run writes): the boot commands, a group claimed by vm1 with paging
 * domain 1 attached, then `count` maps and unmaps in that domain (mostly accepted, so most commands
 * commit), with a random command sequence mixed in every 50.
 */
export function writerCommands(seed: number, count: number): Command[] {
  const out: Command[] = [...attachedBootCommands];
  const op = fc.record({ slot: fc.integer({ min: 0, max: 2047 }), pgcount: fc.integer({ min: 1, max: 16 }), unmap: fc.boolean(), write: fc.boolean() });
  const [ops] = fc.sample(fc.array(op, { minLength: count, maxLength: count }), { seed, numRuns: 1 });
  const random = fc.sample(commandsArb, { seed, numRuns: Math.ceil(count / 50) });
  ops!.forEach((o, i) => {
    // 1 MiB apart: maps of different slots never overlap; a slot mapped twice is EEXIST.
    const iova = BigInt(o.slot) << 20n;
    const where = { context: 'vm1', domain: 1, iova, pgsize: 0x1000n, pgcount: o.pgcount } as const;
    out.push(o.unmap ? { type: 'unmapPages', ...where } : { type: 'mapPages', ...where, paddr: 0x4000_0000n + iova, prot: { read: true, write: o.write } });
    if (i % 50 === 49) out.push(...random[(i - 49) / 50]!);
  });
  return out;
}

/** Command i is stamped with second i of the run, whichever process executes it. */
export function indexClock(): Clock & { index: number } {
  return {
    index: 0,
    now() {
      return new Date(Date.UTC(2026, 0, 1) + this.index * 1000).toISOString();
    },
  };
}

export const commandId = (writer: string, i: number): string => `${writer}-${i}`;
