import { demoScenarioPath } from '@iommu-orch/orchestrator';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, spawnCli } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const path = (name: string) => join(dir, name);

/** The state block `run` prints after its result lines, and the block `audit replay` prints. */
function stateBlock(text: string): string {
  const i = text.indexOf('State at position');
  const end = text.indexOf('\n\nscenario ');
  return text.slice(i, end === -1 ? undefined : end).trim();
}

describe('iommu-orch run + audit replay', () => {
  it('run on the demo scenario and audit replay print the same state', async () => {
    const db = path('demo-run.sqlite');
    const run = await cli('run', demoScenarioPath(), '--db', db);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/all expectations met/);
    const audit = await cli('audit', 'replay', '--db', db);
    expect(audit.code).toBe(0);
    expect(stateBlock(audit.out)).toBe(stateBlock(run.out));
    const runJson = JSON.parse((await cli('run', demoScenarioPath(), '--db', path('demo-json.sqlite'), '--json')).out);
    const auditJson = JSON.parse((await cli('audit', 'replay', '--db', path('demo-json.sqlite'), '--json')).out);
    expect(auditJson.state).toEqual(runJson.state);
    expect(runJson.passed).toBe(true);
  });

  it('audit replay --at shows the state as of a position, and as of a time', async () => {
    const db = path('demo-at.sqlite');
    const run = JSON.parse((await cli('run', demoScenarioPath(), '--db', db, '--json')).out);
    const attach = run.results.find((r: { type: string }) => r.type === 'attachDevice');
    const at = attach.positions[attach.positions.length - 1];
    const mid = JSON.parse((await cli('audit', 'replay', '--db', db, '--at', String(at), '--json')).out);
    expect(mid.position).toBe(at);
    expect(mid.state.groups.find((g: { id: number }) => g.id === 0)).toMatchObject({ owner: 'vm1', domain: 'paging:1', attached: ['0000:01:00.0'] });
    const byTime = JSON.parse((await cli('audit', 'replay', '--db', db, '--at', mid.time, '--json')).out);
    expect(byTime.state).toEqual(mid.state);
    const start = JSON.parse((await cli('audit', 'replay', '--db', db, '--at', '0', '--json')).out);
    expect(start.state.devices).toEqual([]);
  });

  it('exits 1 when an expectation does not hold, and says which', async () => {
    const f = path('wrong.json');
    writeFileSync(f, JSON.stringify({
      name: 'wrong',
      topology: { phbs: [{ phb: 0, platform: 'powernv', generation: 'PHB4' }], devices: [{ bdf: '0000:01:00.0', vendor: 1, device: 2, classCode: '0x010802', driver: 'nvme' }] },
      commands: [{ type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0', expect: 'ok' }],
    }));
    const r = await cli('run', f, '--db', path('wrong.sqlite'));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/EPERM: .*<-- expected ok/);
  });

  it('refuses to run into a log that already has events unless --append', async () => {
    const db = path('twice.sqlite');
    expect((await cli('run', demoScenarioPath(), '--db', db)).code).toBe(0);
    const again = await cli('run', demoScenarioPath(), '--db', db);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already holds \d+ events/);
  });
});

describe('bad input: a clear message, exit 2, nothing written, no stack trace', () => {
  const bad = async (argv: string[], message: RegExp) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).not.toMatch(/\n\s+at /);
  };

  it('unknown command and unknown option', async () => {
    await bad(['frobnicate'], /unknown command/);
    await bad(['run', demoScenarioPath(), '--db', path('x.sqlite'), '--colour'], /unknown option/);
    await bad(['audit', 'replay'], /--db/);
  });

  it('missing scenario file, invalid JSON, unknown fields, wrong types, unknown command types', async () => {
    await bad(['run', path('nope.json'), '--db', path('a.sqlite')], /cannot read scenario .*ENOENT/);
    writeFileSync(path('broken.json'), '{ "name": "x", ');
    await bad(['run', path('broken.json'), '--db', path('b.sqlite')], /not valid JSON/);
    writeFileSync(path('extra.json'), JSON.stringify({ name: 'x', commands: [], flavour: 1 }));
    await bad(['run', path('extra.json'), '--db', path('c.sqlite')], /flavour/);
    writeFileSync(path('field.json'), JSON.stringify({ name: 'x', commands: [{ type: 'addPhb', phb: 0, platform: 'powernv', generation: 'PHB4', speed: 9 }] }));
    await bad(['run', path('field.json'), '--db', path('d.sqlite')], /step 1 \(addPhb\).*speed/);
    writeFileSync(path('type.json'), JSON.stringify({ name: 'x', commands: [{ type: 'addPhb', phb: 'zero', platform: 'powernv', generation: 'PHB4' }] }));
    await bad(['run', path('type.json'), '--db', path('e.sqlite')], /phb/);
    writeFileSync(path('cmd.json'), JSON.stringify({ name: 'x', commands: [{ type: 'reticulate' }] }));
    await bad(['run', path('cmd.json'), '--db', path('f.sqlite')], /unknown command type "reticulate"/);
    // A scenario that fails validation wrote no event.
    const r = await cli('audit', 'replay', '--db', path('f.sqlite'), '--json');
    expect(r.code === 2 || JSON.parse(r.out).position === 0).toBe(true);
  });

  it('audit on a missing database, on a file that is not a database, on a bad --at', async () => {
    await bad(['audit', 'replay', '--db', path('missing.sqlite')], /no database file/);
    const junk = path('junk.sqlite');
    writeFileSync(junk, 'x'.repeat(4096));
    await bad(['audit', 'replay', '--db', junk], /not a SQLite database/);
    expect(readFileSync(junk, 'utf8')).toBe('x'.repeat(4096));
    await bad(['run', demoScenarioPath(), '--db', junk], /not a SQLite database/);
    expect(readFileSync(junk, 'utf8')).toBe('x'.repeat(4096));
    await cli('run', demoScenarioPath(), '--db', path('ok.sqlite'));
    await bad(['audit', 'replay', '--db', path('ok.sqlite'), '--at', 'yesterday'], /--at wants/);
  });
});

describe('the installed bin', () => {
  it('runs the demo end to end and reports replay equal to live', () => {
    const r = spawnCli('demo', '--db', path('bin-demo.sqlite'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/replayed state equals live state: yes/);
    expect(r.out).toMatch(/23 removeDevice\s+ok/);
  });

  it('exits 2 on bad input without a stack trace', () => {
    const r = spawnCli('run', path('nope.json'), '--db', path('bin.sqlite'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cannot read scenario/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('refuses a malformed step before it opens (and so creates) the log file', () => {
    const scenario = path('bad-step.json');
    writeFileSync(scenario, JSON.stringify({ name: 'bad', topology: { phbs: [{ phb: 1, platform: 'pseries', generation: 'SPAPR', hypervisor: 'vmware' }], devices: [] }, commands: [] }));
    const r = spawnCli('run', scenario, '--db', path('bad-step.sqlite'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/step 1 \(addPhb\): hypervisor/);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(existsSync(path('bad-step.sqlite'))).toBe(false);
  });
});
