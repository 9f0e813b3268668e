import { EVENT_SCHEMA_VERSION, stateView, upcast, UPCASTERS, type Json } from '@iommu-orch/core';
import { Orchestrator, replay, toDomainEvent } from '@iommu-orch/orchestrator';
import { SqliteEventStore, verifyChain } from '@iommu-orch/store';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.js';

/** The demo log exactly as the foundation build wrote it (store schema 1, event schema 1); see tests/fixtures/README.md. */
const FIXTURE = new URL('../fixtures/store-v1-demo.sqlite', import.meta.url);
const expected = JSON.parse(readFileSync(new URL('../fixtures/store-v1-demo.views.json', import.meta.url), 'utf8')) as { head: number; views: Json[] };

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-legacy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function copy(): string {
  const f = join(dir, `legacy${n++}.sqlite`);
  copyFileSync(FIXTURE, f);
  return f;
}

type OldDomain = { slot: number; aperture: string[]; pgsize: string; entries: number; validTces: number } & Record<string, Json>;

/**
 * The old build's view in today's layout: domains have had a list of windows since multi-window
 * domains, so the one window's fields move there. Every value stays what the old build computed.
 */
function inTodaysLayout(view: Json): Json {
  const v = view as { domains: OldDomain[] } & Record<string, Json>;
  return {
    ...v,
    domains: v.domains.map(({ slot, aperture, pgsize, entries, validTces, ...rest }) => ({ ...rest, windows: [{ slot, aperture, pgsize, entries, validTces }] })),
  };
}

/** Replays every position and compares with what the old build saw (fields added to the view since are ignored). */
async function expectOldViews(store: SqliteEventStore): Promise<void> {
  expect(await store.head()).toBe(expected.head);
  for (let at = 0; at <= expected.head; at++) {
    const view = stateView((await replay(store, { at })).state);
    expect(view, `position ${at}`).toMatchObject(inTodaysLayout(expected.views[at]!) as object);
  }
}

describe('a log written by the foundation build (store schema 1, event schema 1)', () => {
  it('replays read-only to the states that build computed, through the upcasters, leaving the file byte-identical', async () => {
    const f = copy();
    const before = readFileSync(f);
    const store = SqliteEventStore.open(f, { readonly: true });
    expect(store.schemaVersion).toBe(1);
    const rows = await store.read(0, 100);
    expect(new Set(rows.map((r) => r.schemaVersion))).toEqual(new Set([1]));
    const mapped = rows.filter((r) => r.type === 'TcesMapped');
    expect(mapped.map((r) => (r.data as { perm: number }).perm)).toEqual([3, 1]);
    expect(mapped.map((r) => (toDomainEvent(r).data as { perm: string }).perm)).toEqual(['rw', 'r']);
    await expectOldViews(store);
    await store.close();
    const audit = await cli('audit', 'replay', '--db', f, '--json');
    expect(audit.code).toBe(0);
    expect(JSON.parse(audit.out).state).toMatchObject(expected.views[expected.head] as object);
    const verify = await cli('audit', 'verify', '--db', f);
    expect(verify.code).toBe(1);
    expect(verify.out).toMatch(/predates the hash chain/);
    expect(readFileSync(f).equals(before)).toBe(true);
  });

  it('a writable open migrates it to schema 2 in place: rows kept byte for byte, chained, and the log goes on', async () => {
    const f = copy();
    const old = SqliteEventStore.open(f, { readonly: true });
    const oldRows = await old.readRecords(0, 100);
    await old.close();
    const store = SqliteEventStore.open(f, { logId: 'migrated-fixture' });
    expect(store.schemaVersion).toBe(2);
    const rows = await store.readRecords(0, 100);
    expect(rows.map(({ hash: _h, ...r }) => r)).toEqual(oldRows.map(({ hash: _h, ...r }) => r));
    expect(await verifyChain(store)).toMatchObject({ ok: true, count: expected.head, logId: 'migrated-fixture' });
    await expectOldViews(store);
    const orch = await Orchestrator.open(store);
    const r = await orch.execute({ type: 'addDevice', bdf: '0000:01:00.0', vendor: 0x1987, device: 0x5008, classCode: 0x010802 });
    expect(r.ok).toBe(true);
    const added = await store.read(expected.head, 100);
    expect(added.every((e) => e.schemaVersion === EVENT_SCHEMA_VERSION)).toBe(true);
    expect((await verifyChain(store)).ok).toBe(true);
    await store.close();
    expect((await cli('audit', 'verify', '--db', f)).code).toBe(0);
  });

  it('upcasters only lift versions older than the current one, one step at a time', () => {
    for (const steps of Object.values(UPCASTERS)) {
      for (const v of Object.keys(steps)) expect(Number(v)).toBeLessThan(EVENT_SCHEMA_VERSION);
    }
    const v1 = { domain: 1, iova: '0x0', paddr: '0x0', pgsize: '0x1000', pgcount: 1, perm: 1 };
    expect(upcast('TcesMapped', 1, v1)).toEqual({ ...v1, perm: 'r' });
    expect(upcast('TcesMapped', EVENT_SCHEMA_VERSION, { ...v1, perm: 'rw' })).toEqual({ ...v1, perm: 'rw' });
    expect(upcast('DeviceRemoved', 1, { bdf: '0000:01:00.0', surprise: true })).toEqual({ bdf: '0000:01:00.0', surprise: true });
    expect(() => toDomainEvent({ ...v1Row(), schemaVersion: EVENT_SCHEMA_VERSION + 1 })).toThrow(/schema/);
    expect(() => toDomainEvent({ ...v1Row(), schemaVersion: 0 })).toThrow(/schema version/);
  });
});

function v1Row() {
  return {
    position: 1, streamId: 'host', streamVersion: 1, eventId: 'host:1', type: 'TcesMapped', schemaVersion: 1,
    data: { domain: 1, iova: '0x0', paddr: '0x0', pgsize: '0x1000', pgcount: 1, perm: 1 },
    metadata: { time: '2026-01-01T00:00:00.000Z', commandId: 'c', commandType: 'mapPages' },
  };
}
