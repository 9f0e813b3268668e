import { demoScenarioPath } from '@iommu-orch/orchestrator';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditJson, cli } from '../support/cli.js';

/**
 * The audit commands on the demo log, each answer checked against the demo's known commands: the
 * scenario file says what was asked, `run --json` says which commands were accepted and at which
 * positions their events landed.
 */
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-demo-'));
const db = join(dir, 'demo.sqlite');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Step {
  index: number;
  type: string;
  ok: boolean;
  positions: number[];
}
let steps: Step[];
let commands: Record<string, unknown>[];
let head: number;

beforeAll(async () => {
  const r = await cli('run', demoScenarioPath(), '--db', db, '--json');
  expect(r.code).toBe(0);
  steps = JSON.parse(r.out).results;
  const scenario = JSON.parse(readFileSync(demoScenarioPath(), 'utf8'));
  // The topology section runs first, as addPhb and addDevice steps, then the commands.
  commands = [
    ...scenario.topology.phbs.map((p: object) => ({ type: 'addPhb', ...p })),
    ...scenario.topology.devices.map((d: object) => ({ type: 'addDevice', ...d })),
    ...scenario.commands,
  ];
  expect(commands.length).toBe(steps.length);
  head = Math.max(...steps.flatMap((s) => s.positions));
});

const json = <T>(...argv: string[]): Promise<T> => auditJson<T>(...argv, '--db', db);

/** Steps (accepted, with events) whose command matches. */
function stepsWhere(pred: (c: Record<string, unknown>) => boolean): Step[] {
  return steps.filter((s, i) => s.ok && s.positions.length > 0 && pred(commands[i]!));
}
const positionsOf = (ss: Step[]) => ss.flatMap((s) => s.positions);
const end = (s: Step) => s.positions[s.positions.length - 1]!;
const only = (ss: Step[]) => {
  expect(ss).toHaveLength(1);
  return ss[0]!;
};

describe('audit history on the demo log', () => {
  it('--device 0000:01:00.0: its hot-add, unbind, claim, domain, attach, maps, unmap and surprise removal, and who owned it', async () => {
    const h = await json<{ entries: { position: number; command: string; category: string }[]; owners: unknown[]; head: number }>('history', '--device', '0000:01:00.0');
    // Group 0 holds only the NVMe drive, and domain 1 is the only domain: every command naming either concerns it.
    const expected = stepsWhere((c) => c.bdf === '0000:01:00.0' || c.domain === 1);
    expect(expected.map((s) => s.type)).toEqual(['addDevice', 'unbindDriver', 'claimDevice', 'allocPagingDomain', 'attachDevice', 'mapPages', 'mapPages', 'unmapPages', 'removeDevice']);
    expect(h.entries.map((e) => e.position)).toEqual(positionsOf(expected));
    expect(h.head).toBe(head);
    const claim = only(stepsWhere((c) => c.type === 'claimDevice'));
    const removal = only(stepsWhere((c) => c.type === 'removeDevice'));
    expect(h.owners).toEqual([{ subject: '0000:01:00.0', owner: 'vm1', from: { position: end(claim), time: expect.any(String) }, to: { position: end(removal), time: expect.any(String) } }]);
    expect(new Set(h.entries.map((e) => e.category))).toEqual(new Set(['hotplug', 'window', 'driver', 'ownership', 'domain', 'attachment', 'mapping']));
  });

  it('--group 1 (the two-function NIC): only its two hot-adds; --context vm1: everything vm1 did and lost', async () => {
    const g = await json<{ entries: { position: number }[]; owners: unknown[] }>('history', '--group', '1');
    expect(g.entries.map((e) => e.position)).toEqual(positionsOf(stepsWhere((c) => c.type === 'addDevice' && String(c.bdf).startsWith('0001:01:00.'))));
    expect(g.owners).toEqual([]);
    const v = await json<{ entries: { position: number }[] }>('history', '--context', 'vm1');
    expect(v.entries.map((e) => e.position)).toEqual(positionsOf(stepsWhere((c) => c.context === 'vm1' || (c.type === 'removeDevice' && c.surprise === true))));
    const none = await cli('audit', 'history', '--db', db, '--context', 'vm2');
    expect(none.code).toBe(0);
    expect(none.out).toMatch(/nothing in the log concerns context vm2/);
  });

  it('text form: one line per event with position, time, command and what changed', async () => {
    const r = await cli('audit', 'history', '--db', db, '--device', '0000:01:00.0');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/vm1 claimed 0000:01:00\.0: group 0 owner kernel -> vm1/);
    expect(r.out).toMatch(/0000:01:00\.0\s+vm1\s+from position \d+ \(2026-01-27T18:35:\d\d\.000Z\) to position \d+/);
    expect(r.out).toMatch(/removeDevice\s+ownership\s+vm1 released 0000:01:00\.0 \(forced by surprise removal\)/);
  });
});

describe('audit diff on the demo log', () => {
  it('a map shows as one range; a map then its unmap cancel out; ownership and the window change with the claim', async () => {
    const attach = only(stepsWhere((c) => c.type === 'attachDevice'));
    const [map1, map2] = stepsWhere((c) => c.type === 'mapPages');
    const unmap = only(stepsWhere((c) => c.type === 'unmapPages'));
    const one = await json<{ changes: number; diff: { mappings: unknown[] } }>('diff', '--from', String(end(attach)), '--to', String(end(map1!)));
    expect(one.changes).toBe(1);
    expect(one.diff.mappings).toEqual([{ domain: 1, context: 'vm1', group: 0, mapped: [{ iova: '0x1000', paddr: '0x20000000', pages: 16, perm: 'rw' }], unmapped: [] }]);
    const net = await json<{ diff: { mappings: unknown[] } }>('diff', '--from', String(end(attach)), '--to', String(end(unmap)));
    expect(net.diff.mappings).toEqual([{ domain: 1, context: 'vm1', group: 0, mapped: [{ iova: '0x100000', paddr: '0x30000000', pages: 4, perm: 'r' }], unmapped: [] }]);
    const back = await json<{ diff: { mappings: unknown[] } }>('diff', '--from', String(end(map2!)), '--to', String(end(unmap)));
    expect(back.diff.mappings).toEqual([{ domain: 1, context: 'vm1', group: 0, mapped: [], unmapped: [{ iova: '0x1000', paddr: '0x20000000', pages: 16, perm: 'rw' }] }]);

    const unbind = only(stepsWhere((c) => c.type === 'unbindDriver'));
    const claimed = await json<{ diff: { ownership: unknown[]; windows: unknown[]; bypass: unknown[]; groups: { changed: unknown[] } } }>(
      'diff', '--from', String(end(unbind)), '--to', String(end(attach)),
    );
    expect(claimed.diff.ownership).toEqual([{ group: 0, devices: ['0000:01:00.0'], from: 'kernel', to: 'vm1' }]);
    expect(claimed.diff.windows).toEqual([{ pe: 'domain0-pe1fd', slot: 0, from: '0x0..0x3fffffffff 64K kernel table', to: '0x0..0x7fffffff 4K domain 1' }]);
    expect(claimed.diff.bypass).toEqual([{ pe: 'domain0-pe1fd', from: true, to: false }]);
    expect(claimed.diff.groups.changed).toEqual([{ id: 0, domain: { from: 'platform', to: 'paging:1' }, claimed: { added: ['0000:01:00.0'], removed: [] }, attached: { added: ['0000:01:00.0'], removed: [] } }]);
  });

  it('from the claim to the head: the drive, its group, PE, domain and ownership are gone', async () => {
    const claim = only(stepsWhere((c) => c.type === 'claimDevice'));
    const d = await json<{ to: { position: number }; diff: Record<string, unknown> }>('diff', '--from', String(end(claim)));
    expect(d.to.position).toBe(head);
    expect(d.diff.devices).toEqual({ added: [], removed: ['0000:01:00.0'], drivers: [] });
    expect(d.diff.pes).toEqual({ created: [], released: ['domain0-pe1fd'] });
    expect(d.diff.groups).toEqual({ created: [], removed: [0], changed: [] });
    expect(d.diff.ownership).toEqual([{ group: 0, devices: ['0000:01:00.0'], from: 'vm1', to: 'none' }]);
    expect(d.diff.domains).toEqual({ allocated: [], freed: [] });
    const text = await cli('audit', 'diff', '--db', db, '--from', String(end(claim)));
    expect(text.out).toMatch(/- 0000:01:00\.0/);
    expect(text.out).toMatch(/group 0 \(0000:01:00\.0\): vm1 -> none/);
  });
});

describe('audit explain on the demo log', () => {
  it('answers yes with the path and the map that wrote the TCE, and each kind of no', async () => {
    const [map1] = stepsWhere((c) => c.type === 'mapPages');
    const claim = only(stepsWhere((c) => c.type === 'claimDevice'));
    const attach = only(stepsWhere((c) => c.type === 'attachDevice'));
    const unmap = only(stepsWhere((c) => c.type === 'unmapPages'));
    const removal = only(stepsWhere((c) => c.type === 'removeDevice'));
    const ask = (bdf: string, iova: string, at?: number) => json<Record<string, unknown>>('explain', '--device', bdf, '--iova', iova, ...(at === undefined ? [] : ['--at', String(at)]));

    const yes = await ask('0000:01:00.0', '0x1abc', end(map1!));
    expect(yes).toMatchObject({
      reachable: true, verdict: 'reachable', position: end(map1!),
      group: { id: 0, owner: 'vm1', domain: 'paging:1', claimed: true, attached: true },
      window: { slot: 0, start: '0x0', last: '0x7fffffff', pageSize: '4K', table: 'domain:1' },
      domain: { id: 1, context: 'vm1', aperture: ['0x0', '0x7fffffff'] },
      tce: { index: 1, value: '0x20000003', page: '0x20000000', phys: '0x20000abc', perm: 'rw' },
      mappedBy: { position: map1!.positions[0], command: 'mapPages' },
    });
    expect(await ask('0000:01:00.0', '0x100010')).toMatchObject({ verdict: 'no-device', removedBy: { command: 'removeDevice' } });
    expect(((await ask('0000:01:00.0', '0x100010')).removedBy as { position: number }).position).toBeGreaterThanOrEqual(removal.positions[0]!);
    expect(await ask('0000:01:00.0', '0x1abc', end(unmap))).toMatchObject({ verdict: 'empty-tce', reachable: false, clearedBy: { position: unmap.positions[0], command: 'unmapPages' } });
    expect(await ask('0000:01:00.0', '0x200000', end(map1!))).toMatchObject({ verdict: 'empty-tce' });
    expect(await ask('0000:01:00.0', '0x80000000', end(attach))).toMatchObject({ verdict: 'outside-window' });
    expect(await ask('0000:01:00.0', '0x1000', end(claim))).toMatchObject({ verdict: 'not-attached', group: { owner: 'vm1', domain: 'blocked' } });
    expect(await ask('0001:01:00.1', '0x1000')).toMatchObject({ verdict: 'kernel-owned', group: { id: 1, owner: null, domain: 'platform' } });
    expect(await ask('0000:00:00.0', '0x1000')).toMatchObject({ verdict: 'no-group' });
    expect(await ask('0002:00:00.0', '0x1000')).toMatchObject({ verdict: 'no-device', reason: '0002:00:00.0 never appeared in the log' });

    const text = await cli('audit', 'explain', '--db', db, '--device', '0000:01:00.0', '--iova', '0x1abc', '--at', String(end(map1!)));
    expect(text.out).toMatch(/REACHABLE \(rw\)/);
    expect(text.out).toMatch(/mapped\s+at position \d+ .* by mapPages/);
  });
});

describe('audit replay', () => {
  it('--json carries the head the answer was computed at', async () => {
    const r = await json<{ position: number; head: number }>('replay', '--at', '5');
    expect(r).toMatchObject({ position: 5, head });
  });
});

describe('the audited log is never written', () => {
  it('every audit command leaves the database file byte-identical and adds no file next to it', async () => {
    const hash = () => createHash('sha256').update(readFileSync(db)).digest('hex');
    const before = hash();
    const files = readdirSync(dir).sort();
    const out = join(tmpdir(), `iommu-orch-report-${process.pid}.html`);
    for (const argv of [['replay'], ['history', '--device', '0000:01:00.0'], ['diff', '--from', '1'], ['explain', '--device', '0000:01:00.0', '--iova', '0x0'], ['report', '--out', out]]) {
      expect((await cli('audit', ...argv, '--db', db)).code).toBe(0);
    }
    rmSync(out);
    expect(hash()).toBe(before);
    expect(readdirSync(dir).sort()).toEqual(files);
  });
});

describe('bad input: one line on stderr, exit 2, nothing written', () => {
  const bad = async (argv: string[], message: RegExp) => {
    const r = await cli('audit', ...argv);
    expect(r.code, argv.join(' ')).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err.trim().split('\n'), argv.join(' ')).toHaveLength(1);
    expect(r.out).toBe('');
  };

  it('history', async () => {
    await bad(['history', '--db', db], /exactly one of --device, --group, --context/);
    await bad(['history', '--db', db, '--device', '0000:01:00.0', '--group', '0'], /exactly one of .*got --device, --group/);
    await bad(['history', '--db', db, '--device', '0000:01:00'], /--device wants a PCI address/);
    await bad(['history', '--db', db, '--device', '0000:01:20.0'], /--device wants a PCI address/);
    await bad(['history', '--db', db, '--group', '-1'], /--group wants a group id/);
    await bad(['history', '--db', db, '--group', 'zero'], /--group wants a group id/);
    await bad(['history', '--db', db, '--context', ''], /--context wants a context id/);
    await bad(['history', '--db', db, '--context', 'vm1', '--at', 'yesterday'], /--at wants a position/);
    await bad(['history', '--db', db, '--context', 'vm1', '--at', String(head + 1)], new RegExp(`position ${head + 1} is past the end of the log \\(head ${head}\\)`));
  });

  it('diff, explain, report, replay', async () => {
    await bad(['diff', '--db', db], /--from/);
    await bad(['diff', '--db', db, '--from', 'abc'], /--from wants a position/);
    await bad(['diff', '--db', db, '--from', '20', '--to', '10'], /--to is before --from/);
    await bad(['diff', '--db', db, '--from', '2026-01-27T18:35:10Z', '--to', '2026-01-27T18:35:02Z'], /--to is before --from/);
    await bad(['diff', '--db', db, '--from', String(head + 5)], /past the end of the log/);
    await bad(['explain', '--db', db, '--device', '0000:01:00.0'], /--iova/);
    await bad(['explain', '--db', db, '--iova', '0x1000'], /--device/);
    await bad(['explain', '--db', db, '--device', '0000:01:00.0', '--iova', 'zz'], /--iova wants a 64-bit address/);
    await bad(['explain', '--db', db, '--device', '0000:01:00.0', '--iova', '0x1ffffffffffffffff'], /--iova wants a 64-bit address/);
    await bad(['explain', '--db', db, '--device', 'nvme0', '--iova', '0x0'], /--device wants a PCI address/);
    await bad(['report', '--db', db], /--out/);
    await bad(['report', '--db', db, '--out', db], /would overwrite the audited log/);
    await bad(['report', '--db', db, '--out', `${db}-wal`], /would overwrite the audited log/);
    symlinkSync(db, join(dir, 'link.sqlite'));
    await bad(['report', '--db', db, '--out', join(dir, 'link.sqlite')], /would overwrite the audited log/);
    rmSync(join(dir, 'link.sqlite'));
    await bad(['report', '--db', db, '--out', join(dir, 'no-such-dir', 'r.html')], /cannot write .*ENOENT/);
    await bad(['replay', '--db', db, '--at', String(head + 1)], /past the end of the log/);
    await bad(['history', '--db', db, '--context', 'vm1', '--colour'], /unknown option/);
  });

  it('a missing database, a file that is not one, and a SQLite file that is not an event log', async () => {
    for (const sub of [['replay'], ['history', '--context', 'vm1'], ['diff', '--from', '0'], ['explain', '--device', '0000:01:00.0', '--iova', '0'], ['report', '--out', join(dir, 'x.html')]]) {
      await bad([...sub, '--db', join(dir, 'missing.sqlite')], /no database file/);
      const junk = join(dir, 'junk.sqlite');
      writeFileSync(junk, 'x'.repeat(4096));
      await bad([...sub, '--db', junk], /not a SQLite database/);
      expect(readFileSync(junk, 'utf8')).toBe('x'.repeat(4096));
    }
    expect(readdirSync(dir)).not.toContain('x.html');
  });
});
