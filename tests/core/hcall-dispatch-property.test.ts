import { decide, initialState, type Command, type State } from '@iommu-orch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NVME } from '../support/fixtures.js';

/**
 * The hcall dispatch answers before any handler: a problem-state call is H_PRIVILEGE under QEMU's
 * TCG dispatch and EPERM (no hcall) under KVM, whatever its arguments, and writes nothing; an opcode
 * outside the TCE four is H_FUNCTION exactly when it is misaligned.
 */
const TCG: Command[] = [
  { type: 'addPhb', phb: 0, platform: 'pseries', generation: 'SPAPR' },
  { type: 'addDevice', bdf: '0000:00:01.0', ...NVME, driver: 'nvme' },
];
const KVM_SETUPS: Command[][] = [
  [],
  [{ type: 'kvmSetMemslot', slot: 0, gpa: 0n, size: 1n << 30n, ua: 0x7f00_0000_0000n }],
  [{ type: 'kvmCreateSpaprTce', liobn: 0x8000_0000, pageShift: 12, offset: 0n, size: 1n << 18n }],
];

function boot(extra: readonly Command[]): State {
  let state = initialState;
  for (const c of [...TCG, ...extra]) {
    const d = decide(state, c);
    if (!d.ok) throw new Error(`${c.type}: ${d.error.message}`);
    state = d.state;
  }
  return state;
}

const liobn = fc.constantFrom(0x8000_0000, 0x8000_0001, 0x8000_000a);
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const layer = fc.constantFrom(undefined, 'kvm' as const, 'qemu' as const);
const hcallArb: fc.Arbitrary<Command> = fc.oneof(
  fc.tuple(liobn, u64, u64, layer).map(([l, i, t, y]): Command => ({ type: 'hPutTce', liobn: l, ioba: i, tce: t, problemState: true, ...(y ? { layer: y } : {}) })),
  fc.tuple(liobn, u64, u64, fc.array(u64, { maxLength: 4 }), layer)
    .map(([l, i, list, ts, y]): Command => ({ type: 'hPutTceIndirect', liobn: l, ioba: i, tceList: list, tces: ts, problemState: true, ...(y ? { layer: y } : {}) })),
  fc.tuple(liobn, u64, u64, fc.nat(1 << 20), layer)
    .map(([l, i, t, n, y]): Command => ({ type: 'hStuffTce', liobn: l, ioba: i, tce: t, npages: n, problemState: true, ...(y ? { layer: y } : {}) })),
  fc.tuple(liobn, u64, layer).map(([l, i, y]): Command => ({ type: 'hGetTce', liobn: l, ioba: i, problemState: true, ...(y ? { layer: y } : {}) })),
  fc.nat(0xffff).map((op): Command => ({ type: 'hcall', opcode: op, problemState: true })),
);

describe('hcall dispatch', () => {
  it('a problem-state hcall is H_PRIVILEGE under TCG, EPERM under KVM, and writes nothing', () => {
    const states = KVM_SETUPS.map(boot);
    fc.assert(
      fc.property(fc.nat(KVM_SETUPS.length - 1), hcallArb, (s, c) => {
        const d = decide(states[s]!, c);
        const kvm = s > 0 || ('layer' in c && c.layer === 'kvm');
        expect(d.ok).toBe(false);
        if (!d.ok) expect(d.error.code).toBe(kvm ? 'EPERM' : 'H_PRIVILEGE');
      }),
    );
  });

  it('an opcode outside the TCE four is H_FUNCTION exactly when misaligned, under TCG and KVM', () => {
    const states = KVM_SETUPS.map(boot);
    fc.assert(
      fc.property(fc.nat(KVM_SETUPS.length - 1), fc.nat(0xffff), (s, opcode) => {
        const d = decide(states[s]!, { type: 'hcall', opcode });
        expect(d.ok).toBe(false);
        if (d.ok) return;
        const tce = [0x1c, 0x20, 0x138, 0x13c].includes(opcode);
        expect(d.error.code).toBe(tce ? 'EINVAL' : opcode & 3 ? 'H_FUNCTION' : 'EOPNOTSUPP');
      }),
    );
  });
});
