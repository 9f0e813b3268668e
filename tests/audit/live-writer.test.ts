import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, cli, ROOT } from '../support/cli.js';

/**
 * Audits while another process appends: a child process runs a long scenario into the log (one
 * transaction per command) while this process keeps asking every audit question. Each answer must be
 * the answer for the head it reports, exactly what the same question gives later with --at that head.
 */
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-audit-live-'));
const db = join(dir, 'live.sqlite');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOPOLOGY = {
  phbs: [{ phb: 0, platform: 'powernv', generation: 'PHB4' }],
  devices: [
    { bdf: '0000:00:00.0', vendor: '0x1014', device: '0x04c1', classCode: '0x060400', driver: 'pcieport' },
    { bdf: '0000:01:00.0', vendor: '0x1987', device: '0x5008', classCode: '0x010802' },
  ],
};

const SETUP = [
  { type: 'claimDevice', context: 'vm1', bdf: '0000:01:00.0' },
  { type: 'allocPagingDomain', context: 'vm1', bdf: '0000:01:00.0', pageShift: 12 },
  { type: 'attachDevice', context: 'vm1', domain: 1, bdf: '0000:01:00.0' },
];

/** Maps page 2i for i in [from, to), and unmaps every third one again. */
function traffic(from: number, to: number): object[] {
  const commands: object[] = [];
  for (let i = from; i < to; i++) {
    commands.push({ type: 'mapPages', context: 'vm1', domain: 1, iova: `0x${(i * 0x2000).toString(16)}`, paddr: `0x${(0x4000_0000 + i * 0x1000).toString(16)}`, pgsize: '0x1000', pgcount: 1, prot: 'rw', expect: 'ok' });
    if (i % 3 === 2) commands.push({ type: 'unmapPages', context: 'vm1', domain: 1, iova: `0x${((i - 2) * 0x2000).toString(16)}`, pgsize: '0x1000', pgcount: 1, expect: 'ok' });
  }
  return commands;
}

async function ask(...argv: string[]): Promise<{ head: number; position: number } & Record<string, unknown>> {
  const r = await cli('audit', ...argv, '--db', db, '--json');
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  const out = JSON.parse(r.out);
  return argv[0] === 'report' ? { ...out.model, head: out.model.head, position: out.model.position } : out;
}

describe('audit while another process writes the log', () => {
  it('every answer is consistent with the head it reports', async () => {
    // The set-up and the first maps go in before the audits start, so every question has an answer.
    const seed = join(dir, 'seed.json');
    writeFileSync(seed, JSON.stringify({ name: 'seed', topology: TOPOLOGY, commands: [...SETUP, ...traffic(0, 30)] }));
    expect((await cli('run', seed, '--db', db)).code).toBe(0);
    const scenario = join(dir, 'writer.json');
    writeFileSync(scenario, JSON.stringify({ name: 'writer', clock: { start: '2026-04-01T00:00:00.000Z', stepMs: 10 }, commands: traffic(30, 5000) }));

    const writer = spawn(process.execPath, [BIN, 'run', scenario, '--db', db, '--append'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    writer.stderr.on('data', (b) => (stderr += String(b)));
    const done = new Promise<number | null>((resolve) => writer.on('exit', resolve));
    let running = true;
    void done.then(() => (running = false));

    const answers: { argv: string[]; answer: Awaited<ReturnType<typeof ask>> }[] = [];
    const questions = [
      ['replay'],
      ['history', '--device', '0000:01:00.0'],
      ['history', '--context', 'vm1'],
      ['history', '--device', '0000:01:00.0', '--index', join(dir, 'live.idx')],
      ['explain', '--device', '0000:01:00.0', '--iova', '0x2000'],
      ['diff', '--from', '20'],
      ['report', '--out', join(dir, 'live.html')],
    ];
    for (let i = 0; running || i < questions.length; i++) {
      const argv = questions[i % questions.length]!;
      answers.push({ argv, answer: await ask(...argv) });
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await done, stderr).toBe(0);
    const final = await ask('replay');

    // The audits overlapped the writer: they saw several different heads, all short of the final one.
    const heads = new Set(answers.map((a) => a.answer.head));
    expect(heads.size).toBeGreaterThanOrEqual(3);
    expect([...heads].filter((h) => h < final.head).length).toBeGreaterThanOrEqual(2);

    // Each question asked again for five of its answers, spread over the run (first and last included).
    const spread = questions.flatMap((q) => {
      const mine = answers.filter((a) => a.argv === q);
      return [...new Set([0, 1, 2, 3, 4].map((k) => Math.round((k * (mine.length - 1)) / 4)))].map((i) => mine[i]!);
    });
    for (const { argv, answer } of spread) {
      expect(argv[0] === 'diff' ? (answer.to as { position: number }).position : answer.position).toBe(answer.head);
      // The same question, asked now at that head, gives the same answer.
      const again = argv[0] === 'diff' ? await ask(...argv, '--to', String(answer.head)) : await ask(...argv, '--at', String(answer.head));
      expect({ ...again, head: answer.head }, argv.join(' ')).toEqual(answer);
    }
  });
});
