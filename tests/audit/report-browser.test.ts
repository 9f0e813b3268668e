import { demoScenarioPath, logicalClock, Orchestrator } from '@iommu-orch/orchestrator';
import { SqliteEventStore } from '@iommu-orch/store';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, ROOT } from '../support/cli.js';
import { runWorkload } from '../support/workload.js';
import { Oracle } from './oracle.js';

/**
 * The HTML report opened in Debian's headless Chromium (driven by playwright-core): what is drawn must
 * match the log, the timeline script must run, and the page must fetch nothing.
 */
const CHROMIUM = '/usr/bin/chromium';
// Without the networking flags Chromium keeps trying to reach Google services on a closed network.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-report-'));
let browser: BrowserContext | undefined;

/** The browser, launched on first use with a new, empty profile. A missing Chromium fails the test. */
async function launch(): Promise<BrowserContext> {
  expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does it)`).toBe(true);
  browser ??= await chromium.launchPersistentContext(mkdtempSync(join(dir, 'profile-')), { executablePath: CHROMIUM, headless: true, args: FLAGS });
  return browser;
}

afterAll(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Rendered {
  devices: number;
  bridges: number;
  groups: number;
  pes: number;
  phbs: number;
  groupLabels: string[];
  buckets: number;
  strips: number;
  requests: string[];
  errors: string[];
}

/** Writes the report, opens it from disk and counts what Chromium drew. */
async function render(db: string, extra: string[] = []): Promise<{ shown: Rendered; model: { timeline: unknown[]; windows: { table: string; slot: number; start: string }[] } }> {
  const out = join(dir, `report-${Math.random().toString(36).slice(2)}.html`);
  const r = await cli('audit', 'report', '--db', db, '--out', out, '--json', ...extra);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  const page = await (await launch()).newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (q) => void (q.url().startsWith('file://') || requests.push(q.url())));
  page.on('pageerror', (e) => void errors.push(e.message));
  page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
  await page.goto(`file://${out}`);
  const count = (selector: string) => page.locator(selector).count();
  const shown: Rendered = {
    devices: await count('svg.topology rect.device'),
    bridges: await count('svg.topology rect.device.bridge'),
    groups: await count('svg.topology rect.group'),
    pes: await count('svg.topology rect.pe'),
    phbs: await count('svg.topology rect.phb'),
    groupLabels: await page.locator('svg.topology text.group-label').allTextContents(),
    buckets: await count('#timeline-chart rect.bucket'),
    strips: await count('svg.occupancy'),
    requests,
    errors,
  };
  await page.close();
  return { shown, model: JSON.parse(r.out).model };
}

describe('audit report in headless Chromium', () => {
  it('the demo log: at the head, and as of the attach', async () => {
    const db = join(dir, 'demo.sqlite');
    const run = await cli('run', demoScenarioPath(), '--db', db, '--json');
    const attach = JSON.parse(run.out).results.find((s: { type: string }) => s.type === 'attachDevice');

    const head = await render(db);
    // After the surprise removal: two root ports and the two NIC functions; only the NIC's group is left.
    expect(head.shown).toMatchObject({ devices: 4, bridges: 2, groups: 1, pes: 3, phbs: 2, groupLabels: ['group 1 · kernel · platform'], requests: [], errors: [] });
    expect(head.shown.buckets).toBe(head.model.timeline.length);
    expect(head.shown.buckets).toBeGreaterThan(0);

    const mid = await render(db, ['--at', String(attach.positions[attach.positions.length - 1])]);
    expect(mid.shown).toMatchObject({ devices: 5, bridges: 2, groups: 2, pes: 4, phbs: 2, requests: [], errors: [] });
    expect(mid.shown.groupLabels).toEqual(['group 0 · vm1 · paging:1', 'group 1 · kernel · platform']);
    // The NVMe's window through domain 1 is drawn as a strip; the kernel's default window is described only.
    expect(mid.shown.strips).toBe(mid.model.windows.filter((w) => w.table.startsWith('domain:')).length);
    expect(mid.shown.strips).toBe(1);
  });

  it('a domain with two windows attached through iommufd: one strip per window', async () => {
    const db = join(dir, 'two-windows.sqlite');
    const run = await cli('run', join(ROOT, 'tests/scenarios/iommufd/two-windows-powernv.json'), '--db', db, '--json');
    const attach = JSON.parse(run.out).results.find((s: { type: string }) => s.type === 'deviceAttach');
    const { shown, model } = await render(db, ['--at', String(attach.positions[attach.positions.length - 1])]);
    expect(shown).toMatchObject({ devices: 2, bridges: 1, groups: 1, groupLabels: ['group 0 · vm1 · paging:1'], requests: [], errors: [] });
    // Both TVEs of the PE translate through domain 1: window 0 at 0 and window 1 at 1<<59.
    expect(model.windows.filter((w) => w.table === 'domain:1').map((w) => [w.slot, w.start])).toEqual([[0, '0x0'], [1, '0x800000000000000']]);
    expect(shown.strips).toBe(2);
  });

  it('a generated log: one shape per device and per group alive at the head', async () => {
    const db = join(dir, 'workload.sqlite');
    const store = SqliteEventStore.open(db);
    const orch = await Orchestrator.open(store, { clock: logicalClock('2026-05-01T00:00:00.000Z', 1000) });
    const steps = await runWorkload(orch, { seed: 99, commands: 600 });
    await store.close();
    const st = new Oracle(steps).state;
    const { shown, model } = await render(db);
    expect(shown.devices).toBe(st.devices.size);
    expect(shown.bridges).toBe([...st.devices.values()].filter((d) => d.group === null).length);
    expect(shown.groups).toBe(st.groups.size);
    expect(shown.groupLabels.sort()).toEqual([...st.groups.values()].map((g) => `group ${g.id} · ${g.owner ?? 'kernel'} · ${g.domain === null ? (g.owner ? 'blocked' : 'platform') : `paging:${g.domain}`}`).sort());
    expect(shown.buckets).toBe(model.timeline.length);
    expect(shown.strips).toBe(model.windows.filter((w) => w.table.startsWith('domain:')).length);
    expect(shown.requests).toEqual([]);
    expect(shown.errors).toEqual([]);
  });
});
