import { liobnKey, passedThrough, type Command, type State } from '@iommu-orch/core';
import { recoverPe, type EehHandlers } from '../sagas/eeh-recovery.js';
import type { Saga, View } from '../sagas/saga.js';
import type { Prng } from './prng.js';

/**
 * Stress traffic for EEH and KVM. Freezes are injected into a random device's PE: a host PE is then
 * recovered by the saga with drivers that answer at random (so partial resets, thaw-only recoveries,
 * full hotplugs and permanent failures all happen, the sixth freeze within the hour included, since
 * event time advances one second per op); a PE the actor owns is recovered by the actor through
 * VFIO_EEH_PE_OP. KVM traffic: the actor's guest table (one LIOBN per actor) is linked to a group it
 * owns and the guest puts, stuffs and clears TCEs through it.
 */

/** Guest memory: 4 GiB at guest address 0, backed at this user address and preregistered with 64K pages. */
const GUEST_UA = 0x7f00_0000_0000n;
const GUEST_RAM = 4n << 30n;
const GUEST_SHIFT = 16;
/** The guest table: 1 GiB of 64K pages at bus address 0 (every default domain window covers it). */
const GUEST_ENTRIES = 1n << 14n;

const ANSWERS: readonly { readonly weight: number; readonly handlers: (driver: string) => EehHandlers }[] = [
  { weight: 6, handlers: (d) => ({ [d]: { errorDetected: 'need_reset', slotReset: 'recovered' } }) },
  { weight: 3, handlers: (d) => ({ [d]: { errorDetected: 'can_recover', mmioEnabled: 'recovered' } }) },
  { weight: 2, handlers: () => ({}) },
  { weight: 1, handlers: (d) => ({ [d]: { errorDetected: 'disconnect' } }) },
];

export function eehTraffic(rng: Prng, view: View, ctx: string, at: number): Saga | Command | null {
  const s = view();
  const dev = rng.pick(Object.values(s.devices).filter((d) => d.group !== null));
  if (!dev) return null;
  const pe = s.pes[dev.pe]!;
  if (passedThrough(s, pe)) {
    if (s.groups[pe.group!]!.owner !== ctx) return null;
    return ownerRecovery(ctx);
  }
  let total = 0;
  for (const a of ANSWERS) total += a.weight;
  let r = rng.int(total);
  const answer = ANSWERS.find((a) => (r -= a.weight) < 0)!;
  const handlers = dev.driver === null ? {} : answer.handlers(dev.driver);
  return (function* (): Saga {
    const f = yield { type: 'eehFreeze', bdf: dev.bdf, cause: 'access', at };
    if (!f?.ok || f.output.recovering !== true) return { saga: 'eeh-recovery', outcome: 'aborted', reason: 'no recovery queued' };
    return yield* recoverPe(view, String(f.output.pe), handlers);
  })();
}

/** The owner's recovery: inject, read the state, hot reset, deactivate, read again. */
function* ownerRecovery(ctx: string): Saga {
  const ops: Command[] = [
    { type: 'vfioEehPeOp', context: ctx, op: 9, err: { type: 0, func: 0, addr: 0n, mask: 0n } },
    { type: 'vfioEehPeOp', context: ctx, op: 4 },
    { type: 'vfioEehPeOp', context: ctx, op: 6 },
    { type: 'vfioEehPeOp', context: ctx, op: 5 },
    { type: 'vfioEehPeOp', context: ctx, op: 4 },
  ];
  for (const op of ops) {
    const r = yield op;
    if (!r?.ok) return { saga: 'vfio-eeh', outcome: 'aborted', reason: `op ${op.type === 'vfioEehPeOp' ? op.op : ''}: ${r?.code}` };
  }
  return { saga: 'vfio-eeh', outcome: 'done' };
}

/** The actor's LIOBN (outside the PHB window names). */
function actorLiobn(ctx: string): number {
  return 0x1000 + Number(ctx.replace(/\D/g, '') || 0);
}

export function kvmTraffic(rng: Prng, view: View, ctx: string): Saga | null {
  const s = view();
  const g = rng.pick(Object.values(s.groups).filter((x) => x.owner === ctx && x.domain.type === 'paging'));
  if (!g) return null;
  const liobn = actorLiobn(ctx);
  const calls = Array.from({ length: 1 + rng.int(4) }, () => hcall(rng, liobn));
  return (function* (): Saga {
    const saga = 'kvm-traffic';
    for (const setup of setUp(view(), liobn, ctx, g.id)) {
      const r = yield setup;
      // A group that cannot back the table (pages or window too small) is a refusal, not a bug.
      if (!r?.ok) return { saga, outcome: 'aborted', reason: `${setup.type}: ${r?.code}` };
    }
    for (const c of calls) yield c;
    return { saga, outcome: 'done' };
  })();
}

function setUp(s: State, liobn: number, ctx: string, group: number): Command[] {
  const out: Command[] = [];
  if (!s.memslots['0']) out.push({ type: 'kvmSetMemslot', slot: 0, gpa: 0n, size: GUEST_RAM, ua: GUEST_UA });
  if (s.prereg.length === 0) out.push({ type: 'registerMemory', ua: GUEST_UA, size: GUEST_RAM, pageShift: GUEST_SHIFT });
  const kt = s.kvmTables[liobnKey(liobn)];
  if (!kt) out.push({ type: 'kvmCreateSpaprTce', liobn, pageShift: GUEST_SHIFT, offset: 0n, size: GUEST_ENTRIES });
  if (!kt?.groups.some((l) => l.group === group && l.context === ctx)) out.push({ type: 'kvmLinkGroup', liobn, context: ctx, group });
  return out;
}

/** A guest TCE call; some land outside memory or the table, which KVM refuses. */
function hcall(rng: Prng, liobn: number): Command {
  const page = 1n << BigInt(GUEST_SHIFT);
  const index = BigInt(rng.int(Number(GUEST_ENTRIES) + 16));
  const ioba = index * page;
  const tce = () => (BigInt(rng.int(0x11000)) * page) | BigInt(1 + rng.int(3));
  switch (rng.int(4)) {
    case 0:
      return { type: 'hPutTce', liobn, ioba, tce: tce() };
    case 1:
      return { type: 'hPutTceIndirect', liobn, ioba, tceList: 0x1000n, tces: Array.from({ length: 1 + rng.int(16) }, tce) };
    case 2:
      return { type: 'hStuffTce', liobn, ioba, tce: 0n, npages: 1 + rng.int(32) };
    default:
      return { type: 'hPutTce', liobn, ioba, tce: 0n };
  }
}
