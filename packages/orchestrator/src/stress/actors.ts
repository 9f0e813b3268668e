import type { Command, Prot, State } from '@iommu-orch/core';
import { assignGroup, type MapPlan } from '../sagas/assign-group.js';
import { claimantOf } from '../sagas/claims.js';
import { disableSriov, removeSlotOrderly } from '../sagas/orderly-removal.js';
import { answerRemovalRequests, pendingRequests, releaseGroup } from '../sagas/release-group.js';
import { isWait, type Saga, type SagaResult, type SagaStep, type StepOutcome, type View } from '../sagas/saga.js';
import { eehTraffic, kvmTraffic } from './eeh-kvm-traffic.js';
import type { Prng } from './prng.js';
import type { StressSlot } from './topology.js';

/**
 * A stress actor: one user context (`vm<n>`) that also plays the host administrator. Each turn it
 * either goes on with its current saga, answers removal requests aimed at its context (at once when
 * its saga is waiting, else on a coin toss, so attaches and maps do happen during removals), or starts
 * a new operation picked by weight. Everything it decides comes from the seeded PRNG and the state.
 * An actor keeps nothing that the log does not: after a restart, pending removals are found again
 * from the state (`resume`).
 */
export interface World {
  readonly rng: Prng;
  readonly view: View;
  readonly slots: readonly StressSlot[];
  /** The kernel driver each function had in the topology, to give devices back to the host. */
  readonly drivers: ReadonlyMap<string, string>;
  /** Event time (ms) of the next op: EEH counts freezes by it. */
  readonly now: () => number;
  /** Relative weights of the kinds of op an actor picks. */
  readonly mix: Readonly<Record<StressOp, number>>;
}

/** The default mix of ops; StressOptions.mix overrides single weights (0 leaves a kind out). */
export const STRESS_MIX = {
  assign: 24, work: 22, release: 10, rebind: 5,
  removeOrderly: 5, removeSurprise: 2, hotAdd: 7,
  sriovEnable: 5, sriovDisable: 3, resume: 6, noise: 6,
  eeh: 2, kvm: 4,
} as const;
export type StressOp = keyof typeof STRESS_MIX;
type Op = StressOp;

type Running = { readonly saga: Saga | null; readonly ready: IteratorResult<SagaStep, SagaResult> | null };

export class Actor {
  private saga: Saga | null = null;
  private ready: IteratorResult<SagaStep, SagaResult> | null = null;
  /** The saga set aside while the actor answers removal requests. */
  private parked: Running = { saga: null, ready: null };
  private responding = false;
  private single: Command | null = null;

  constructor(readonly context: string) {}

  /** The next command to run, or null when the actor can only wait this turn. */
  next(world: World): Command | null {
    if (this.saga && this.ready && !this.ready.done && isWait(this.ready.value)) this.ready = this.saga.next(undefined);
    const waiting = this.saga !== null && this.ready !== null && !this.ready.done && isWait(this.ready.value);
    if (!this.responding && pendingRequests(world.view(), this.context) && (waiting || world.rng.chance(0.5))) {
      // Answering pre-empts the current saga; its state lives in the generator and resumes afterwards.
      const answer = answerRemovalRequests(world.view, this.context);
      const first = answer.next(undefined);
      if (!first.done && !isWait(first.value)) {
        this.parked = { saga: this.saga, ready: this.ready };
        this.saga = answer;
        this.ready = first;
        this.responding = true;
        return first.value;
      }
    }
    if (this.saga && this.ready && !this.ready.done) return isWait(this.ready.value) ? null : this.ready.value;
    return this.start(world);
  }

  /** The outcome of the command `next` returned; a saga that ended is reported. */
  feed(outcome: StepOutcome): SagaResult | null {
    if (this.single) {
      this.single = null;
      return null;
    }
    if (!this.saga) return null;
    this.ready = this.saga.next(outcome);
    if (!this.ready.done) return null;
    const result = this.ready.value;
    if (this.responding) {
      this.responding = false;
      this.saga = this.parked.saga;
      this.ready = this.parked.ready;
    } else {
      this.saga = null;
      this.ready = null;
    }
    return result;
  }

  /** Forget everything in flight: the process was killed. */
  reset(): void {
    this.saga = null;
    this.ready = null;
    this.responding = false;
    this.single = null;
    this.parked = { saga: null, ready: null };
  }

  private start(world: World): Command | null {
    const op = world.rng.weighted<Op>(world.mix);
    const made = this.make(op, world);
    if (made === null) return null;
    if ('next' in made) {
      this.saga = made;
      this.ready = made.next(undefined);
      if (this.ready.done) {
        this.saga = null;
        this.ready = null;
        return null;
      }
      return isWait(this.ready.value) ? null : this.ready.value;
    }
    this.single = made;
    return made;
  }

  private make(op: Op, world: World): Saga | Command | null {
    const { rng, view } = world;
    const s = view();
    const ctx = this.context;
    switch (op) {
      case 'assign': {
        const groups = Object.values(s.groups);
        const free = groups.filter((g) => g.owner === null);
        const g = rng.chance(0.8) ? (rng.pick(free) ?? rng.pick(groups)) : rng.pick(groups);
        if (!g) return null;
        const pe = s.pes[g.pe];
        const shifts = (pe?.tableGroup.pageShifts ?? [12]).filter((x) => x <= 16);
        const pageShift = rng.pick(shifts) ?? 12;
        const maps = Array.from({ length: 1 + rng.int(3) }, () => mapPlan(rng));
        return assignGroup(view, { context: ctx, group: g.id, pageShift, maps });
      }
      case 'work': {
        const d = rng.pick(Object.values(s.domains).filter((x) => x.context === ctx));
        if (!d) return null;
        const w = d.windows[0]!;
        const pgsize = 1n << BigInt(w.table.pageShift);
        const m = mapPlan(rng);
        const iova = w.start + BigInt(m.page) * pgsize;
        if (rng.chance(0.45)) return { type: 'unmapPages', context: ctx, domain: d.id, iova, pgsize, pgcount: m.pages };
        if (rng.chance(0.1)) return { type: 'iovaToPhys', context: ctx, domain: d.id, iova };
        return { type: 'mapPages', context: ctx, domain: d.id, iova, paddr: BigInt(m.frame) * pgsize, pgsize, pgcount: m.pages, prot: m.prot };
      }
      case 'release': {
        const g = rng.pick(Object.values(s.groups).filter((x) => x.owner === ctx));
        return g ? releaseGroup(view, ctx, g.id) : null;
      }
      case 'rebind': {
        const idle = Object.values(s.devices).filter((d) => d.driver === null && !d.bridge && claimantOf(s, d.bdf) === null && !d.removalRequested);
        const d = rng.pick(idle);
        const driver = d && (world.drivers.get(d.bdf) ?? (d.pf !== null ? world.drivers.get(d.pf) : undefined));
        return d && driver ? { type: 'bindDriver', bdf: d.bdf, driver } : null;
      }
      case 'removeOrderly': {
        const slot = rng.pick(Object.values(s.slots).filter((x) => x.state === 'populated'));
        return slot ? removeSlotOrderly(view, slot.name) : null;
      }
      case 'removeSurprise': {
        const slot = rng.pick(Object.values(s.slots).filter((x) => x.state === 'populated'));
        return slot ? { type: 'disableSlot', slot: slot.name, surprise: true } : null;
      }
      case 'hotAdd': {
        const slot = rng.pick(world.slots.filter((x) => s.slots[x.slot]?.state === 'registered'));
        return slot ? { type: 'enableSlot', slot: slot.slot, devices: slot.card } : null;
      }
      case 'sriovEnable': {
        const pf = rng.pick(Object.values(s.devices).filter((d) => d.sriov !== null && d.sriov.vfs.length === 0));
        if (!pf?.sriov) return null;
        // Mostly VFs left unbound for assignment (sriov_drivers_autoprobe=0), sometimes probed by the PF driver.
        return { type: 'setNumVfs', bdf: pf.bdf, numVfs: 1 + rng.int(pf.sriov.totalVfs), vfDriver: rng.chance(0.7) ? null : pf.driver };
      }
      case 'sriovDisable': {
        const pf = rng.pick(Object.values(s.devices).filter((d) => (d.sriov?.vfs.length ?? 0) > 0));
        return pf ? disableSriov(view, pf.bdf) : null;
      }
      case 'resume':
        return resumeRemoval(world, s);
      case 'noise':
        return noise(world, s, ctx);
      case 'eeh':
        return eehTraffic(rng, view, ctx, world.now());
      case 'kvm':
        return kvmTraffic(rng, view, ctx);
    }
  }
}

function mapPlan(rng: Prng): MapPlan {
  const prot: Prot = rng.chance(0.3) ? { read: true, write: false } : { read: true, write: true };
  return { page: rng.int(4096), pages: 1 + rng.int(64), frame: rng.int(1 << 20), prot };
}

/** A removal some saga started and nobody finishes any more (a restart lost it): finish it. */
function resumeRemoval(world: World, s: State): Saga | null {
  const requested = Object.values(s.devices).filter((d) => d.removalRequested);
  const d = world.rng.pick(requested);
  if (!d) return null;
  if (d.pf !== null && !s.devices[d.pf]?.removalRequested) return disableSriov(world.view, d.pf);
  const root = d.pf ?? d.bdf;
  const dev = s.devices[root];
  const slot = dev && Object.values(s.slots).find((x) => x.phb === dev.phb && x.bus === dev.bus && x.state === 'populated');
  return slot ? removeSlotOrderly(world.view, slot.name) : null;
}

/** Commands a careless or hostile client sends: mostly refused, which is the point. */
function noise(world: World, s: State, ctx: string): Command | null {
  const { rng } = world;
  const bdf = rng.pick(Object.keys(s.devices)) ?? '0000:00:00.0';
  const domain = 1 + rng.int(Math.max(1, s.nextDomainId + 1));
  switch (rng.int(9)) {
    case 0:
      return { type: 'claimDevice', context: ctx, bdf };
    case 1:
      return { type: 'releaseDevice', context: ctx, bdf };
    case 2:
      return { type: 'attachDevice', context: ctx, domain, bdf };
    case 3:
      return { type: 'detachDevice', context: ctx, bdf };
    case 4:
      return { type: 'freeDomain', context: ctx, domain };
    case 5:
      return { type: 'mapPages', context: ctx, domain, iova: BigInt(rng.int(1 << 20)) << 12n, paddr: 0n, pgsize: 0x1000n, pgcount: 1 + rng.int(8), prot: { read: true, write: true } };
    case 6: {
      const pf = rng.pick(Object.values(s.devices).filter((d) => d.sriov !== null));
      return pf ? { type: 'setNumVfs', bdf: pf.bdf, numVfs: 1 + rng.int(pf.sriov!.totalVfs + 2) } : null;
    }
    case 7:
      return { type: 'allocPagingDomain', context: ctx, bdf, pageShift: rng.pick([12, 16, 21, 24]) ?? 12 };
    default: {
      const driver = world.drivers.get(bdf);
      return driver ? { type: 'bindDriver', bdf, driver } : null;
    }
  }
}
