import { tceGet, type Command, type DomainWindow, type Output, type PagingDomain, type State } from '@iommu-orch/core';
import type { Orchestrator } from '@iommu-orch/orchestrator';

/**
 * A deterministic, state-aware command workload: a seeded choice of the next command given the current
 * state, executed through the Orchestrator. Most commands are accepted (the choice follows each device's
 * natural next step: unbind, claim, allocate, attach, map, unmap, detach, release, hot-remove, re-add);
 * some are refused on purpose (claims of a foreign group, overlapping maps, orderly removal of a claimed
 * device), so the log looks like a busy host. The same seed gives the same commands and the same log.
 */

/** mulberry32: a small seeded PRNG, good enough to pick commands and reproducible everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ROOT_PORT = { vendor: 0x1014, device: 0x04c1, classCode: 0x060400, driver: 'pcieport' } as const;

/** Every endpoint the workload may hot-add again after removing it, with the driver it probes with. */
export const WORKLOAD_ENDPOINTS: readonly Extract<Command, { type: 'addDevice' }>[] = [
  { type: 'addDevice', bdf: '0000:01:00.0', vendor: 0x1987, device: 0x5008, classCode: 0x010802, driver: 'nvme' },
  { type: 'addDevice', bdf: '0000:02:00.0', vendor: 0x14e4, device: 0x1657, classCode: 0x020000, driver: 'tg3' },
  { type: 'addDevice', bdf: '0000:02:00.1', vendor: 0x14e4, device: 0x1657, classCode: 0x020000, driver: 'tg3' },
  { type: 'addDevice', bdf: '0001:01:00.0', vendor: 0x10de, device: 0x1db4, classCode: 0x030200, driver: 'nouveau' },
  { type: 'addDevice', bdf: '0001:01:00.1', vendor: 0x10de, device: 0x10f2, classCode: 0x040300, driver: 'snd_hda_intel' },
  { type: 'addDevice', bdf: '0002:00:01.0', vendor: 0x1af4, device: 0x1001, classCode: 0x010000, driver: 'virtio-pci' },
  { type: 'addDevice', bdf: '0002:00:02.0', vendor: 0x1af4, device: 0x1000, classCode: 0x020000, driver: 'virtio-pci' },
];

/**
 * Two PowerNV PHB4s (an NVMe drive, a two-function NIC, a GPU with its audio function) and a QEMU
 * pSeries PHB (one table group for its two virtio devices).
 */
export const WORKLOAD_TOPOLOGY: readonly Command[] = [
  { type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4' },
  { type: 'addPhb', phb: 1, platform: 'powernv', generation: 'PHB4' },
  { type: 'addPhb', phb: 2, platform: 'pseries', generation: 'SPAPR' },
  { type: 'addDevice', bdf: '0000:00:00.0', ...ROOT_PORT },
  { type: 'addDevice', bdf: '0001:00:00.0', ...ROOT_PORT },
  ...WORKLOAD_ENDPOINTS,
];

export const WORKLOAD_CONTEXTS = ['vm1', 'vm2', 'vm3'] as const;

export interface WorkloadStep {
  readonly index: number;
  readonly command: Command;
  readonly ok: boolean;
  readonly code: string | null;
  readonly output: Output | null;
  /** Positions of the events the command appended (none when refused or when it changed nothing). */
  readonly positions: readonly number[];
  /** Event time of those events (one command, one clock reading). */
  readonly time: string | null;
}

export interface WorkloadOptions {
  readonly seed: number;
  /** Stop after this many generated commands (the topology commands come first and are not counted). */
  readonly commands?: number;
  /** Or stop once the log holds at least this many events. */
  readonly events?: number;
  /** Keep every step (tests); the bench drives a million events and keeps none. */
  readonly record?: boolean;
}

export async function runWorkload(orch: Orchestrator, options: WorkloadOptions): Promise<WorkloadStep[]> {
  const rng = seededRandom(options.seed);
  const steps: WorkloadStep[] = [];
  let events = 0;
  let generated = 0;
  const execute = async (command: Command): Promise<void> => {
    const r = await orch.execute(command);
    events += r.ok ? r.events.length : 0;
    if (options.record === false) return;
    steps.push({
      index: steps.length,
      command,
      ok: r.ok,
      code: r.ok ? null : r.error.code,
      output: r.ok ? r.output : null,
      positions: r.ok ? r.events.map((e) => e.position) : [],
      time: r.ok ? (r.events[0]?.metadata.time ?? null) : null,
    });
  };
  for (const c of WORKLOAD_TOPOLOGY) await execute(c);
  for (;;) {
    if (options.commands !== undefined && generated >= options.commands) break;
    if (options.events !== undefined && events >= options.events) break;
    if (options.commands === undefined && options.events === undefined) break;
    await execute(nextCommand(rng, orch.state));
    generated++;
  }
  return steps;
}

const pick = <T>(rng: () => number, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;

/** The seeded choice: mostly DMA traffic on existing domains, then device lifecycle, then hotplug. */
export function nextCommand(rng: () => number, state: State): Command {
  const domains = Object.values(state.domains);
  const r = rng();
  if (domains.length > 0 && r < 0.45) return mapCommand(rng, pick(rng, domains));
  if (domains.length > 0 && r < 0.7) return unmapCommand(rng, pick(rng, domains));
  if (r < 0.96) return lifecycleCommand(rng, state);
  return hotplugCommand(rng, state);
}

/** The window of the domain a map or unmap aims at (the workload's domains have one; a choice when two). */
function windowOf(rng: () => number, d: PagingDomain): DomainWindow {
  return d.windows.length === 1 ? d.windows[0]! : pick(rng, d.windows);
}

function mapCommand(rng: () => number, d: PagingDomain): Command {
  const { table, start } = windowOf(rng, d);
  const pgsize = 1n << BigInt(table.pageShift);
  // A small hot region makes overlaps (EEXIST) and adjacent maps common; the rest spreads over the window.
  const pages = rng() < 0.7 ? 4096 : table.size;
  const pgcount = 1 + Math.floor(rng() * 32);
  const first = Math.min(Math.floor(rng() * pages), table.size - 1);
  // One map in fifty runs past the aperture end: refused with EINVAL.
  const page = rng() < 0.02 ? table.size - 1 : first;
  return {
    type: 'mapPages', context: d.context, domain: d.id, iova: start + BigInt(page) * pgsize,
    paddr: BigInt(Math.floor(rng() * 0x10000)) * pgsize, pgsize, pgcount, prot: rng() < 0.3 ? { read: true, write: false } : { read: true, write: true },
  };
}

function unmapCommand(rng: () => number, d: PagingDomain): Command {
  const { table, start } = windowOf(rng, d);
  const pgsize = 1n << BigInt(table.pageShift);
  // Probe forward from a random page (mostly in the hot region) for a mapped one; unmap from there.
  const from = Math.floor(rng() * (rng() < 0.8 ? Math.min(4096, table.size) : table.size));
  let page = from;
  while (page < Math.min(from + 1024, table.size) && tceGet(table, page) === 0n) page++;
  // Nothing mapped there: the unmap is accepted, clears 0 bytes and writes no event.
  if (page === Math.min(from + 1024, table.size)) page = from;
  const pgcount = 1 + Math.floor(rng() * 33);
  return { type: 'unmapPages', context: d.context, domain: d.id, iova: start + BigInt(page) * pgsize, pgsize, pgcount };
}

/** A device's natural next step, with a few wrong turns the model refuses. */
function lifecycleCommand(rng: () => number, state: State): Command {
  const present = WORKLOAD_ENDPOINTS.filter((e) => state.devices[e.bdf]);
  if (present.length === 0) return hotplugCommand(rng, state);
  const bdf = pick(rng, present).bdf;
  const dev = state.devices[bdf]!;
  const group = state.groups[dev.group!]!;
  const other = pick(rng, WORKLOAD_CONTEXTS);
  if (dev.driver !== null) {
    return rng() < 0.1 ? { type: 'claimDevice', context: other, bdf } : { type: 'unbindDriver', bdf };
  }
  if (!group.claimed.includes(bdf)) {
    if (group.owner === null && rng() < 0.1) return { type: 'bindDriver', bdf, driver: 'vfio-test' };
    const context = group.owner === null || rng() < 0.15 ? other : group.owner;
    return { type: 'claimDevice', context, bdf };
  }
  const owner = group.owner!;
  const mine = Object.values(state.domains).filter((d) => d.group === group.id && d.context === owner);
  if (group.attached.includes(bdf)) {
    if (rng() < 0.4) return { type: 'detachDevice', context: owner, bdf };
    return mapCommand(rng, pick(rng, mine));
  }
  const x = rng();
  if (x < 0.15) return { type: 'releaseDevice', context: owner, bdf };
  // A context keeps one or two domains per group, as a VMM does (one per window it programs).
  if (mine.length === 0 || (mine.length < 2 && x < 0.25)) {
    return { type: 'allocPagingDomain', context: owner, bdf, pageShift: rng() < 0.7 ? 12 : 16 };
  }
  const d = pick(rng, mine);
  if (x < 0.4 && (group.domain.type !== 'paging' || group.domain.id !== d.id)) return { type: 'freeDomain', context: owner, domain: d.id };
  return { type: 'attachDevice', context: owner, domain: group.domain.type === 'paging' && rng() < 0.9 ? group.domain.id : d.id, bdf };
}

function hotplugCommand(rng: () => number, state: State): Command {
  const absent = WORKLOAD_ENDPOINTS.filter((e) => !state.devices[e.bdf]);
  if (absent.length > 0 && rng() < 0.5) {
    const spec = pick(rng, absent);
    // Re-added without a driver half of the time (a vfio-pci style hot-add).
    return rng() < 0.5 ? spec : { ...spec, driver: null };
  }
  const present = WORKLOAD_ENDPOINTS.filter((e) => state.devices[e.bdf]);
  if (present.length === 0) return pick(rng, WORKLOAD_ENDPOINTS);
  return { type: 'removeDevice', bdf: pick(rng, present).bdf, surprise: rng() < 0.6 };
}
