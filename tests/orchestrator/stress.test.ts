import {
  defaultTopologyPath, failsAt, fault, loadTopology, Prng, runStress, shrink, type StressReport,
} from '@iommu-orch/orchestrator';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-stress-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const db = () => join(dir, `s${n++}.sqlite`);
const topology = loadTopology(defaultTopologyPath());

describe('stress runner', () => {
  it('100,000 ops with 8 actors: zero violations, and the same seed gives a byte-identical log', async () => {
    const run = () => runStress({ seed: 20260127, ops: 100_000, actors: 8, db: db(), topology });
    const a = await run();
    const b = await run();
    expect(a.violations).toEqual([]);
    expect(a.ops).toBe(100_000);
    expect(b.logDigest).toBe(a.logDigest);
    expect(b.events).toBe(a.events);
    // The run did real work: every kind of saga finished, and refusals came with kernel codes.
    expect(Object.keys(a.sagas).sort()).toEqual([
      'answer-removal-requests', 'assign-group', 'eeh-recovery', 'kvm-traffic', 'orderly-slot-removal', 'release-group', 'sriov-disable', 'vfio-eeh',
    ]);
    expect(a.sagas['assign-group']!['done']).toBeGreaterThan(1000);
    // EEH: host recoveries succeed and some PEs fail permanently (six freezes in an hour, or a disconnect).
    expect(a.sagas['eeh-recovery']!['done']).toBeGreaterThan(100);
    expect(a.sagas['eeh-recovery']!['failed']).toBeGreaterThan(0);
    expect(a.sagas['vfio-eeh']!['done']).toBeGreaterThan(0);
    expect(a.sagas['kvm-traffic']!['done']).toBeGreaterThan(100);
    expect(a.rejected['H_TOO_HARD']).toBeGreaterThan(0);
    expect(a.rejected['EPERM']).toBeGreaterThan(0);
  }, 120_000);
});

describe('stress determinism and restarts', () => {
  it('another seed gives another log', async () => {
    const a = await runStress({ seed: 1, ops: 2000, actors: 3, db: db(), topology });
    const b = await runStress({ seed: 2, ops: 2000, actors: 3, db: db(), topology });
    expect(a.logDigest).not.toBe(b.logDigest);
  });
  it('--crash-every restarts from the log: replay equals live every time, and the run stays reproducible', async () => {
    const run = () => runStress({ seed: 5, ops: 6000, actors: 4, db: db(), topology, crashEvery: 1000 });
    const a = await run();
    expect(a.violations).toEqual([]);
    expect(a.crashes).toBe(5);
    expect((await run()).logDigest).toBe(a.logDigest);
  });
  it('the PRNG is a pure function of its seed', () => {
    const draw = (seed: number) => Array.from({ length: 5 }, (() => { const r = new Prng(seed); return () => r.next(); })());
    const one = new Prng(9);
    const two = new Prng(9);
    expect(Array.from({ length: 100 }, () => one.int(1000))).toEqual(Array.from({ length: 100 }, () => two.int(1000)));
    expect(draw(1)).not.toEqual(draw(2));
  });
});

describe('a deliberately broken invariant is caught, shrunk and replayed', () => {
  const broken = async (name: 'skip-forced-unmap' | 'keep-window-on-detach'): Promise<StressReport> =>
    runStress({ seed: 11, ops: 20_000, actors: 4, db: db(), topology, fault: fault(name) });

  it('skip-forced-unmap: pinned-pages breaks; the shrunk history is 1-minimal', async () => {
    const r = await broken('skip-forced-unmap');
    expect(r.violations[0]?.rule).toBe('pinned-pages');
    expect(r.ops).toBeLessThan(20_000);
    const f = fault('skip-forced-unmap');
    const min = shrink(r.history, { rule: 'pinned-pages', fault: f });
    expect(min.length).toBeLessThan(15);
    expect(failsAt(min, 'pinned-pages', f)).toBe(min.length - 1);
    for (let i = 0; i < min.length; i++) expect(failsAt(min.filter((_, j) => j !== i), 'pinned-pages', f)).toBe(-1);
    // Without the fault the same commands are sound.
    expect(failsAt(min, 'pinned-pages', undefined)).toBe(-1);
  });

  it('keep-window-on-detach: window-table breaks and shrinks too', async () => {
    const r = await broken('keep-window-on-detach');
    expect(r.violations[0]?.rule).toBe('window-table');
    const min = shrink(r.history, { rule: 'window-table', fault: fault('keep-window-on-detach') });
    expect(min.map((c) => c.type)).toContain('detachDevice');
    expect(failsAt(min, 'window-table', fault('keep-window-on-detach'))).toBe(min.length - 1);
  });

  it('through the CLI: exit 1, a reproduction scenario that `run` replays with the same failure', async () => {
    const log = db();
    const repro = join(dir, 'repro.json');
    const r = await cli('stress', 'hotplug', '--seed', '11', '--ops', '20000', '--actors', '4', '--db', log, '--repro', repro, '--fault', 'skip-forced-unmap', '--json');
    expect(r.code).toBe(1);
    const summary = JSON.parse(r.out);
    expect(summary.violations[0].rule).toBe('pinned-pages');
    expect(summary.repro).toMatchObject({ file: repro, rule: 'pinned-pages' });
    const scenario = JSON.parse(readFileSync(repro, 'utf8'));
    expect(scenario.commands.length).toBe(summary.repro.commands);
    const replayed = await cli('run', repro, '--db', db(), '--fault', 'skip-forced-unmap', '--json');
    expect(replayed.code).toBe(1);
    const results = JSON.parse(replayed.out).results;
    expect(results.every((x: { expectationMet: boolean }) => x.expectationMet)).toBe(true);
    expect(results[results.length - 1].violations.map((v: { rule: string }) => v.rule)).toContain('pinned-pages');
    // The fault is what breaks it: the same scenario without it passes.
    expect((await cli('run', repro, '--db', db())).code).toBe(0);
  });
});

describe('iommu-orch stress hotplug', () => {
  it('prints a summary (ops, events, accepted, rejected per code, violations, ops/s) and exits 0', async () => {
    const r = await cli('stress', 'hotplug', '--seed', '3', '--ops', '3000', '--actors', '8', '--db', db(), '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s).toMatchObject({ seed: 3, actors: 8, ops: 3000, violations: [], topology: 'power9-talos-cx5' });
    expect(s.accepted + Object.values(s.rejected as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(3000);
    expect(s.opsPerSecond).toBeGreaterThan(0);
    expect(s.logSha256).toMatch(/^[0-9a-f]{64}$/);
    const text = await cli('stress', 'hotplug', '--seed', '3', '--ops', '3000', '--actors', '8', '--db', db());
    expect(text.out).toMatch(/invariant violations: 0/);
    expect(text.out).toMatch(/rejected by code: .*EPERM \d+/);
    expect(text.out).toContain(`sha256 ${s.logSha256}`);
  });

  it('keeps the test-only fault switch out of --help', async () => {
    const help = await cli('stress', 'hotplug', '--help');
    expect(help.out).toMatch(/--crash-every <m>/);
    expect(help.out).not.toMatch(/--fault/);
    expect((await cli('run', '--help')).out).not.toMatch(/--fault/);
  });

  it('draws a progress bar only where the io has a terminal status line', async () => {
    const { main } = await import('@iommu-orch/orchestrator');
    const status: string[] = [];
    const out: string[] = [];
    const code = await main(['stress', 'hotplug', '--seed', '1', '--ops', '2000', '--actors', '2', '--db', db()], {
      out: (t) => out.push(t), err: () => undefined, status: (l) => status.push(l),
    });
    expect(code).toBe(0);
    expect(status.some((l) => /\[#+\.*\] 1000\/2000 ops/.test(l))).toBe(true);
    expect(status[status.length - 1]).toBe('');
    expect(out.join('\n')).not.toMatch(/\[#/);
  });

  it('takes a topology from a file in the documented format', async () => {
    const file = join(dir, 'small.json');
    writeFileSync(file, JSON.stringify({
      name: 'one-slot',
      phbs: [{ phb: 0, platform: 'powernv', generation: 'PHB5' }],
      devices: [{ bdf: '0000:00:00.0', vendor: '0x1014', device: '0x04c1', classCode: '0x060400', driver: 'pcieport' }],
      slots: [{ slot: 'A', phb: 0, bus: 1, populated: true, card: [
        { bdf: '0000:01:00.0', vendor: '0x15b3', device: '0x1019', classCode: '0x020700', driver: 'mlx5_core', totalVfs: 4, vfOffset: 1, vfDevice: '0x1018' },
      ] }],
    }));
    const r = await cli('stress', 'hotplug', '--seed', '8', '--ops', '3000', '--actors', '2', '--db', db(), '--topology', file, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ topology: 'one-slot', violations: [] });
  });

  it.each([
    [['--seed', '-1'], /--seed wants an integer/],
    [['--seed', '0x10'], /--seed wants an integer/],
    [['--ops', '0'], /--ops wants an integer/],
    [['--actors', '65'], /--actors wants an integer/],
    [['--crash-every', 'often'], /--crash-every wants an integer/],
    [['--topology', '/nonexistent/topo.json'], /cannot read topology/],
    [['--fault', 'nope'], /Allowed choices/],
  ])('bad input %j: one line, exit 2, nothing written', async (extra, message) => {
    const log = db();
    const base: Record<string, string> = { '--seed': '1', '--ops': '10', '--actors': '1' };
    for (let i = 0; i < extra.length; i += 2) base[extra[i]!] = extra[i + 1]!;
    const r = await cli('stress', 'hotplug', ...Object.entries(base).flat(), '--db', log);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err.split('\n')).toHaveLength(1);
    expect(existsSync(log)).toBe(false);
  });

  it('refuses a topology with an unknown field or one its host refuses, and a log that is not empty', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ name: 'x', phbs: [{ phb: 0, platform: 'powernv', generation: 'PHB4' }], colour: 'red' }));
    expect((await cli('stress', 'hotplug', '--seed', '1', '--ops', '10', '--actors', '1', '--db', db(), '--topology', bad)).err).toMatch(/colour/);
    const refused = join(dir, 'refused.json');
    writeFileSync(refused, JSON.stringify({ name: 'x', phbs: [{ phb: 0, platform: 'pseries', generation: 'SPAPR' }], slots: [{ slot: 'A', phb: 0, bus: 1, card: [{ bdf: '0000:01:00.0', vendor: 1, device: 2, classCode: 3 }] }] }));
    const log = db();
    const r = await cli('stress', 'hotplug', '--seed', '1', '--ops', '10', '--actors', '1', '--db', log, '--topology', refused);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/registerSlot A refused: EOPNOTSUPP/);
    expect(existsSync(log)).toBe(false);
    const used = db();
    expect((await cli('stress', 'hotplug', '--seed', '1', '--ops', '10', '--actors', '1', '--db', used)).code).toBe(0);
    const again = await cli('stress', 'hotplug', '--seed', '1', '--ops', '10', '--actors', '1', '--db', used);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already holds \d+ events/);
  });
});
