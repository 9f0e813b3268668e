import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';

/**
 * Audit answers on an EEH log: the six-freeze scenario (five recoveries of a PE, a sixth freeze within
 * the hour, a permanent failure that removes the PE's devices). Expectations come from the scenario's
 * commands and the positions `run` reports for them, not from the audit code.
 */
const scenario = fileURLToPath(new URL('../scenarios/eeh/six-freezes-permanent-failure.json', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-eeh-audit-'));
const db = join(dir, 'eeh.sqlite');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Step { index: number; type: string; ok: boolean; positions: number[] }
let steps: Step[] = [];

beforeAll(async () => {
  const r = await cli('run', scenario, '--db', db, '--json');
  expect(r.code).toBe(0);
  steps = (JSON.parse(r.out) as { results: Step[] }).results;
});

async function history(...argv: string[]): Promise<{ entries: { position: number; command: string; category: string }[] }> {
  const r = await cli('audit', 'history', '--db', db, '--json', ...argv);
  expect(r.err).toBe('');
  return JSON.parse(r.out);
}

describe('audit on an EEH log', () => {
  it('history --kind eeh of a function of the frozen PE lists every EEH command that wrote events, in order', async () => {
    const eehPositions = steps.filter((s) => s.type.startsWith('eeh') && s.positions.length > 0).flatMap((s) => s.positions);
    const h = await history('--device', '0000:01:00.1', '--kind', 'eeh');
    expect(h.entries.length).toBeGreaterThan(0);
    expect(new Set(h.entries.map((e) => e.category))).toEqual(new Set(['eeh']));
    // Every EEH event of the PE concerns both functions; the permanent failure's removal is hotplug, not eeh.
    const listed = h.entries.map((e) => e.position);
    expect(listed.every((p) => eehPositions.includes(p))).toBe(true);
    const freezes = steps.filter((s) => s.type === 'eehFreeze' && s.positions.length > 0);
    expect(freezes.length).toBe(6);
    for (const f of freezes) expect(listed).toContain(f.positions[0]);
    expect(h.entries.filter((e) => e.command === 'eehFreeze').length).toBeGreaterThanOrEqual(6);
  });

  it('the device history ends with the permanent failure that removed it', async () => {
    const fail = steps.find((s) => s.type === 'eehFail')!;
    const h = await history('--device', '0000:01:00.0');
    const last = h.entries[h.entries.length - 1]!;
    expect(last.command).toBe('eehFail');
    expect(fail.positions).toContain(last.position);
    expect(h.entries.some((e) => e.category === 'hotplug' && e.command === 'eehFail')).toBe(true);
  });

  it('a device of another PE sees none of it', async () => {
    const h = await history('--device', '0000:02:00.0', '--kind', 'eeh');
    expect(h.entries).toEqual([]);
  });
});
