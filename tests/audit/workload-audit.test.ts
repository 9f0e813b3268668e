import { logicalClock, Orchestrator } from '@iommu-orch/orchestrator';
import { SqliteEventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { BIN, auditJson, cli, ROOT } from '../support/cli.js';
import { runWorkload, seededRandom, WORKLOAD_CONTEXTS, WORKLOAD_TOPOLOGY, type WorkloadStep } from '../support/workload.js';
import { Oracle, type OracleState } from './oracle.js';

/**
 * The audit commands on a generated log: a seeded workload of 1500 commands (claims, domains, attaches,
 * maps and unmaps, detaches, releases, hot-removals and re-adds, some refused) run through the
 * Orchestrator into SQLite; every answer is checked against the oracle's reading of the commands.
 */
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-wl-'));
const db = join(dir, 'workload.sqlite');
let steps: WorkloadStep[];
let oracle: Oracle;
let head: number;

beforeAll(async () => {
  const store = SqliteEventStore.open(db);
  const orch = await Orchestrator.open(store, { clock: logicalClock('2026-03-01T00:00:00.000Z', 1000) });
  steps = await runWorkload(orch, { seed: 20260301, commands: 1500 });
  head = await store.head();
  await store.close();
  oracle = new Oracle(steps);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const json = <T>(...argv: string[]): Promise<T> => auditJson<T>(...argv, '--db', db);

interface HistoryJson {
  head: number;
  position: number;
  entries: { position: number; time: string; command: string; category: string; summary: string }[];
  owners: { subject: string; owner: string; from: { position: number }; to: { position: number } | null }[];
}

const accepted = (s: WorkloadStep): boolean => s.ok && s.positions.length > 0;
const lastPosition = (s: WorkloadStep): number => s.positions[s.positions.length - 1]!;

describe('audit on a generated 1500-command log', () => {
  it('the workload exercises every kind of change, refusals included', () => {
    const kinds = new Set(steps.filter(accepted).map((s) => s.command.type));
    for (const k of ['addDevice', 'removeDevice', 'unbindDriver', 'claimDevice', 'releaseDevice', 'allocPagingDomain', 'freeDomain', 'attachDevice', 'detachDevice', 'mapPages', 'unmapPages']) {
      expect(kinds).toContain(k);
    }
    expect(steps.filter((s) => !s.ok).length).toBeGreaterThan(50);
    expect(head).toBe(steps.flatMap((s) => s.positions).length);
  });

  it('history --device / --group / --context: exactly the events of the commands that concern it, and its owners', async () => {
    const devices = WORKLOAD_TOPOLOGY.flatMap((c) => (c.type === 'addDevice' ? [c.bdf] : []));
    const groups = [...new Set(steps.flatMap((s) => (s.command.type === 'addDevice' && s.ok && typeof s.output?.group === 'number' ? [s.output.group] : [])))];
    expect(groups.length).toBeGreaterThan(10);
    const cases = [
      ...devices.map((bdf) => ({ kind: 'device' as const, id: bdf as string | number, flag: ['--device', bdf] })),
      ...groups.map((g) => ({ kind: 'group' as const, id: g as string | number, flag: ['--group', String(g)] })),
      ...WORKLOAD_CONTEXTS.map((c) => ({ kind: 'context' as const, id: c as string | number, flag: ['--context', c] })),
    ];
    for (const c of cases) {
      const h = await json<HistoryJson>('history', ...c.flag);
      expect(h.head).toBe(head);
      const expected = oracle.positionsConcerning(c.kind, c.id);
      expect(h.entries.map((e) => e.position), `${c.kind} ${c.id}`).toEqual(expected);
      expect(h.owners.map((o) => ({ subject: o.subject, owner: o.owner, from: o.from.position, to: o.to?.position ?? null })), `${c.kind} ${c.id} owners`)
        .toEqual(oracle.ownerPeriods(c.kind, c.id));
    }
  });

  it('history entries carry the time and the command of their event', async () => {
    const h = await json<HistoryJson>('history', '--device', '0000:02:00.1');
    const byPosition = new Map(steps.flatMap((s) => s.positions.map((p) => [p, s] as const)));
    for (const e of h.entries) {
      const s = byPosition.get(e.position)!;
      expect(e.command).toBe(s.command.type);
      expect(e.time).toBe(s.time);
    }
    const claims = h.entries.filter((e) => e.category === 'ownership' && /claimed 0000:02:00\.1/.test(e.summary));
    expect(claims.length).toBe(steps.filter((s) => accepted(s) && s.command.type === 'claimDevice' && s.command.bdf === '0000:02:00.1').length);
  });

  it('history --at stops at that point: a prefix of the full history', async () => {
    const full = await json<HistoryJson>('history', '--context', 'vm2');
    const cut = lastPosition(steps.filter(accepted)[Math.floor(steps.length / 2)]!);
    const part = await json<HistoryJson>('history', '--context', 'vm2', '--at', String(cut));
    expect(part.position).toBe(cut);
    expect(part.entries).toEqual(full.entries.filter((e) => e.position <= cut));
  });

  it('explain agrees with the oracle on reachability, the TCE and the map that wrote it', async () => {
    const rng = seededRandom(7);
    const candidates = steps.map((s, i) => [s, i] as const).filter(([s]) => accepted(s) && s.index > WORKLOAD_TOPOLOGY.length);
    const devices = ['0000:00:00.0', '0000:01:00.0', '0000:02:00.0', '0000:02:00.1', '0001:01:00.0', '0001:01:00.1', '0002:00:01.0', '0002:00:02.0'];
    const verdicts = new Set<string>();
    for (let n = 0; n < 70; n++) {
      const [step, index] = candidates[Math.floor(rng() * candidates.length)]!;
      const st = Oracle.at(steps, index);
      const bdf = devices[Math.floor(rng() * devices.length)]!;
      const iova = pickIova(rng, st, bdf);
      const at = lastPosition(step);
      const x = await json<ExplainJson>('explain', '--device', bdf, '--iova', `0x${iova.toString(16)}`, '--at', String(at));
      const want = expectExplain(st, bdf, iova);
      verdicts.add(x.verdict);
      expect({ verdict: x.verdict, reachable: x.reachable }, `${bdf} ${iova.toString(16)} at ${at}`).toEqual({ verdict: want.verdict, reachable: want.verdict === 'reachable' });
      if (want.verdict === 'reachable') {
        expect(x.tce).toMatchObject({ phys: `0x${want.phys!.toString(16)}`, perm: want.perm });
        expect(x.mappedBy?.position).toBe(want.mappedAt);
        expect(x.mappedBy?.command).toBe('mapPages');
        expect(x.domain?.id).toBe(want.domain);
      }
      if (want.verdict === 'empty-tce') expect(x.clearedBy?.position).toBe(want.clearedAt);
      if (want.verdict === 'no-device' && want.removedAt) expect(want.removedAt).toContain(x.removedBy?.position);
    }
    // The samples reach every kind of answer.
    expect([...verdicts].sort()).toEqual(['empty-tce', 'kernel-owned', 'no-device', 'no-group', 'not-attached', 'outside-window', 'reachable']);
  });

  it('explain names the last map of a page mapped, unmapped and mapped again, and the last unmap of a page cleared twice', async () => {
    // At the head and at earlier points, every attached domain's pages written three times or more; the
    // points go back until enough pages were checked (which points have such pages depends on the model's
    // choices, e.g. which attaches it refuses).
    const points = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4].map((f) => Math.floor((steps.length - 1) * f));
    let checked = 0;
    for (const index of points) {
      if (checked > 12) break;
      const step = steps.slice(0, index + 1).reverse().find(accepted)!;
      const st = Oracle.at(steps, index);
      for (const g of st.groups.values()) {
        if (g.owner === null || g.domain === null) continue;
        const d = st.domains.get(g.domain)!;
        const bdf = [...g.devices][0]!;
        for (const [page, writes] of [...d.writes].filter(([, w]) => w >= 3).slice(0, 6)) {
          const iova = BigInt(page) << BigInt(d.pageShift);
          const x = await json<ExplainJson>('explain', '--device', bdf, '--iova', `0x${iova.toString(16)}`, '--at', String(lastPosition(step)));
          const want = expectExplain(st, bdf, iova);
          expect(x.verdict, `page ${page} written ${writes} times`).toBe(want.verdict);
          if (want.verdict === 'reachable') expect(x.mappedBy?.position).toBe(want.mappedAt);
          else expect(x.clearedBy?.position).toBe(want.clearedAt);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(5);
  });

  it('diff between two points: devices, groups, ownership, domains and page-exact mapping ranges', async () => {
    const rng = seededRandom(11);
    const boundaries = steps.map((s, i) => [s, i] as const).filter(([s]) => accepted(s));
    let sawMappings = 0;
    for (let n = 0; n < 10; n++) {
      let [a, b] = [Math.floor(rng() * boundaries.length), Math.floor(rng() * boundaries.length)];
      if (a > b) [a, b] = [b, a];
      const [sa, ia] = boundaries[a]!;
      const [sb, ib] = boundaries[b]!;
      const d = await json<DiffJson>('diff', '--from', String(lastPosition(sa)), '--to', String(lastPosition(sb)));
      const [x, y] = [Oracle.at(steps, ia), Oracle.at(steps, ib)];
      expect(d.from.position).toBe(lastPosition(sa));
      expect(d.to.position).toBe(lastPosition(sb));
      const owner = (s: OracleState, g: number) => (s.groups.has(g) ? (s.groups.get(g)!.owner ?? 'kernel') : 'none');
      const user = (o: string) => (WORKLOAD_CONTEXTS as readonly string[]).includes(o);
      const groupIds = [...new Set([...x.groups.keys(), ...y.groups.keys()])];
      expect(sorted(d.diff.ownership.map((o) => `${o.group}:${o.from}->${o.to}`))).toEqual(
        sorted(groupIds.filter((g) => owner(x, g) !== owner(y, g) && (user(owner(x, g)) || user(owner(y, g)))).map((g) => `${g}:${owner(x, g)}->${owner(y, g)}`)),
      );
      expect(sorted(d.diff.groups.created)).toEqual(sorted(groupIds.filter((g) => !x.groups.has(g))));
      expect(sorted(d.diff.groups.removed)).toEqual(sorted(groupIds.filter((g) => !y.groups.has(g))));
      expect(sorted(d.diff.devices.added.map((v) => v.bdf))).toEqual(sorted([...y.devices.keys()].filter((k) => !x.devices.has(k))));
      expect(sorted(d.diff.devices.removed)).toEqual(sorted([...x.devices.keys()].filter((k) => !y.devices.has(k))));
      expect(sorted(d.diff.domains.allocated.map((v) => v.id))).toEqual(sorted([...y.domains.keys()].filter((k) => !x.domains.has(k))));
      expect(sorted(d.diff.domains.freed)).toEqual(sorted([...x.domains.keys()].filter((k) => !y.domains.has(k))));
      // Mappings: the ranges, expanded page by page, are exactly the pages that differ.
      const domainIds = [...new Set([...x.domains.keys(), ...y.domains.keys()])];
      for (const id of domainIds) {
        const pa = x.domains.get(id)?.pages ?? new Map();
        const pb = y.domains.get(id)?.pages ?? new Map();
        const shift = (x.domains.get(id) ?? y.domains.get(id))!.pageShift;
        const differs = (p: Map<number, { paddr: bigint; perm: string }>, q: Map<number, { paddr: bigint; perm: string }>) =>
          [...p].filter(([i, v]) => q.get(i)?.paddr !== v.paddr || q.get(i)?.perm !== v.perm).map(([i, v]) => `${i}:${v.paddr.toString(16)}:${v.perm}`).sort();
        const m = d.diff.mappings.find((v) => v.domain === id);
        expect(expand(m?.mapped ?? [], shift), `domain ${id} mapped`).toEqual(differs(pb, pa));
        expect(expand(m?.unmapped ?? [], shift), `domain ${id} unmapped`).toEqual(differs(pa, pb));
        for (const list of [m?.mapped ?? [], m?.unmapped ?? []]) expectMaximal(list, shift);
        if (m) sawMappings++;
      }
    }
    expect(sawMappings).toBeGreaterThan(5);
  });

  it('a reader that goes away (| head) ends the command quietly, exit 0', async () => {
    const child = spawn(process.execPath, [BIN, 'audit', 'history', '--db', db, '--context', 'vm1'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    // The reader closes its end before the answer is written: every write meets a closed pipe (EPIPE).
    child.stdout.destroy();
    let err = '';
    child.stderr.on('data', (b) => (err += String(b)));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(err).toBe('');
    expect(code).toBe(0);
  });

  it('report: the topology, window list and timeline match the log', async () => {
    const r = await cli('audit', 'report', '--db', db, '--out', join(dir, 'report.html'), '--json');
    expect(r.code).toBe(0);
    const { model } = JSON.parse(r.out) as { model: ReportJson };
    const st = oracle.state;
    const pes = model.phbs.flatMap((p) => p.pes);
    expect(sorted(pes.flatMap((pe) => pe.devices.map((d) => d.bdf)))).toEqual(sorted([...st.devices.keys()]));
    expect(sorted(pes.flatMap((pe) => (pe.group ? [`${pe.group.id}:${pe.group.owner ?? 'kernel'}`] : [])))).toEqual(
      sorted([...st.groups.values()].map((g) => `${g.id}:${g.owner ?? 'kernel'}`)),
    );
    // A window per kernel-owned group (the kernel's default), per attached group, and a strip for each unattached domain.
    const groups = [...st.groups.values()];
    const inUse = new Set(groups.flatMap((g) => (g.domain === null ? [] : [g.domain])));
    expect(model.windows.length).toBe(groups.filter((g) => g.owner === null).length + inUse.size + [...st.domains.keys()].filter((d) => !inUse.has(d)).length);
    for (const w of model.windows.filter((v) => v.table.startsWith('domain:'))) {
      const d = st.domains.get(Number(w.table.slice(7)))!;
      expect(w.valid).toBe(d.pages.size);
      expect(w.context).toBe(d.context);
    }
    // The timeline covers every position once, in order, in at most 120 buckets.
    expect(model.events).toBe(head);
    expect(model.timeline.length).toBeLessThanOrEqual(120);
    expect(model.timeline[0]!.from).toBe(1);
    expect(model.timeline[model.timeline.length - 1]!.to).toBe(head);
    model.timeline.forEach((b, i) => {
      if (i > 0) expect(b.from).toBe(model.timeline[i - 1]!.to + 1);
      expect(Object.values(b.counts).reduce((n, v) => n + v, 0)).toBe(b.to - b.from + 1);
    });
  });
});

interface ExplainJson {
  verdict: string;
  reachable: boolean;
  tce?: { phys: string; perm: string };
  domain?: { id: number };
  mappedBy?: { position: number; command: string };
  clearedBy?: { position: number };
  removedBy?: { position: number };
}

interface Range {
  iova: string;
  paddr: string;
  pages: number;
  perm: string;
}

interface DiffJson {
  from: { position: number };
  to: { position: number };
  diff: {
    ownership: { group: number; from: string; to: string }[];
    groups: { created: number[]; removed: number[] };
    devices: { added: { bdf: string }[]; removed: string[] };
    domains: { allocated: { id: number }[]; freed: number[] };
    mappings: { domain: number; mapped: Range[]; unmapped: Range[] }[];
  };
}

interface ReportJson {
  events: number;
  phbs: { pes: { group: { id: number; owner: string | null } | null; devices: { bdf: string }[] }[] }[];
  windows: { table: string; valid: number | null; context: string | null }[];
  timeline: { from: number; to: number; counts: Record<string, number> }[];
}

function sorted<T>(xs: T[]): T[] {
  return [...xs].sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0));
}

function expand(ranges: readonly Range[], shift: number): string[] {
  return ranges
    .flatMap((r) => Array.from({ length: r.pages }, (_, i) => `${Number(BigInt(r.iova) >> BigInt(shift)) + i}:${(BigInt(r.paddr) + (BigInt(i) << BigInt(shift))).toString(16)}:${r.perm}`))
    .sort();
}

/** No two ranges of a list continue one another (same permission, next page, next address). */
function expectMaximal(ranges: readonly Range[], shift: number): void {
  for (let i = 1; i < ranges.length; i++) {
    const [a, b] = [ranges[i - 1]!, ranges[i]!];
    const next = BigInt(a.iova) + (BigInt(a.pages) << BigInt(shift));
    const joins = next === BigInt(b.iova) && BigInt(a.paddr) + (BigInt(a.pages) << BigInt(shift)) === BigInt(b.paddr) && a.perm === b.perm;
    expect(joins, `${a.iova} and ${b.iova} should be one range`).toBe(false);
  }
}

/** An IOVA worth asking about: usually a mapped page of a domain of the device's group, else anywhere. */
function pickIova(rng: () => number, st: OracleState, bdf: string): bigint {
  const g = st.devices.get(bdf)?.group;
  const domains = [...st.domains.values()].filter((d) => d.group === g);
  const r = rng();
  if (domains.length && r < 0.6) {
    const d = domains[Math.floor(rng() * domains.length)]!;
    const pages = [...d.pages.keys(), ...d.cleared.keys()];
    if (pages.length) return (BigInt(pages[Math.floor(rng() * pages.length)]!) << BigInt(d.pageShift)) + BigInt(Math.floor(rng() * 4096));
  }
  if (r < 0.75) return 0x1_0000_0000n + BigInt(Math.floor(rng() * 0x1000_0000)); // past both 32-bit windows
  return BigInt(Math.floor(rng() * 0x400_0000)) * 0x10n;
}

function expectExplain(st: OracleState, bdf: string, iova: bigint): {
  verdict: string; phys?: bigint; perm?: string; mappedAt?: number; clearedAt?: number; domain?: number; removedAt?: readonly number[];
} {
  const dev = st.devices.get(bdf);
  if (!dev) return { verdict: 'no-device', ...(st.removedBy.has(bdf) ? { removedAt: st.removedBy.get(bdf)! } : {}) };
  if (dev.group === null) return { verdict: 'no-group' };
  const g = st.groups.get(dev.group)!;
  if (g.owner === null) return { verdict: 'kernel-owned' };
  if (g.domain === null) return { verdict: 'not-attached' };
  const d = st.domains.get(g.domain)!;
  const index = Number(iova >> BigInt(d.pageShift));
  if (index >= d.entries) return { verdict: 'outside-window' };
  const page = d.pages.get(index);
  if (!page) return { verdict: 'empty-tce', ...(d.cleared.has(index) ? { clearedAt: d.cleared.get(index)! } : {}) };
  const mask = (1n << BigInt(d.pageShift)) - 1n;
  return { verdict: 'reachable', phys: page.paddr + (iova & mask), perm: page.perm, mappedAt: page.position, domain: d.id };
}
