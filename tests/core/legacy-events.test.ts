import { canonicalState, decide, fold, initialState, type Command, type IommuEvent } from '@iommu-orch/core';
import { describe, expect, it } from 'vitest';
import { NVME } from '../support/fixtures.js';

/**
 * Logs written before domains had several windows carry one window in PagingDomainAllocated's
 * slot/start/size/pageShift fields. They must still fold to the same state.
 */
describe('PagingDomainAllocated written with one window', () => {
  it('folds to the state the current event gives', () => {
    const commands: Command[] = [
      { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
      { type: 'addDevice', bdf: '0000:01:00.0', ...NVME },
      { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
      { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 16 },
      { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' },
      { type: 'mapPages', context: 'vm1', domain: 1, iova: 0x10000n, paddr: 0x40000000n, pgsize: 0x10000n, pgcount: 3, prot: { read: true, write: true } },
    ];
    let state = initialState;
    const events: IommuEvent[] = [];
    for (const c of commands) {
      const d = decide(state, c);
      if (!d.ok) throw new Error(d.error.message);
      events.push(...d.events);
      state = d.state;
    }
    const legacy = events.map((e): IommuEvent => {
      if (e.type !== 'PagingDomainAllocated') return e;
      const w = e.data.windows![0]!;
      return { type: e.type, data: { domain: e.data.domain, context: e.data.context, group: e.data.group, slot: w.slot, start: w.start, size: w.size, pageShift: w.pageShift } };
    });
    expect(legacy.some((e) => e.type === 'PagingDomainAllocated' && e.data.windows === undefined)).toBe(true);
    expect(canonicalState(fold(legacy, initialState))).toBe(canonicalState(state));
  });
});
