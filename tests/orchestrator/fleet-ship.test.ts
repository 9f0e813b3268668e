import { defaultTopologyPath, loadTopology, runStress, shipLog } from '@iommu-orch/orchestrator';
import { PostgresEventStore, SqliteEventStore, verifyChain, type ChainReport } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { ChildScript } from '../support/child.js';
import { freshDatabase } from '../support/postgres-server.js';

const HOSTS = 50;
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-fleet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function report(open: () => SqliteEventStore | PostgresEventStore): Promise<ChainReport> {
  const s = open();
  try {
    return await verifyChain(s);
  } finally {
    await s.close();
  }
}

it(`${HOSTS} hosts' stress logs shipped concurrently into one PostgreSQL, one shipper killed and restarted: every chain verifies, counts match`, async () => {
  const url = await freshDatabase(inject('pgUrl'), 'fleet');
  const topology = loadTopology(defaultTopologyPath());
  const hosts = Array.from({ length: HOSTS }, (_, i) => ({ name: `power9-${String(i + 1).padStart(2, '0')}`, db: join(dir, `host${i + 1}.sqlite`) }));
  for (const [i, h] of hosts.entries()) {
    // The victim's log is ten times longer, so that its one-event-per-transaction shipper is still
    // mid-way when it is killed, however slowly this process reads its output on a loaded machine.
    const r = await runStress({ seed: 1000 + i, ops: i === 0 ? 400 : 40, actors: 3, db: h.db, topology });
    expect(r.violations).toEqual([]);
  }
  const [victim, ...rest] = hosts;
  // The victim's shipper is a child process shipping one event per transaction; once it has begun, the
  // other 49 start in this process, and the victim is killed mid-way while they run. Its second run
  // resumes from the central head.
  const centralHead = async (host: string): Promise<number> => {
    const s = PostgresEventStore.open(url, { host, readonly: true });
    try {
      return await s.head();
    } finally {
      await s.close();
    }
  };
  const headOf = (l: string): number => Number(/central head (\d+)/.exec(l)?.[1]);
  const doomed = new ChildScript('support/ship-child.ts', ['--db', victim!.db, '--to', url, '--host', victim!.name, '--batch', '1']);
  await doomed.line((l) => headOf(l) >= 1);
  const others = Promise.all(rest.map((h) => shipLog({ db: h.db, to: url, host: h.name, batchSize: 10 })));
  await doomed.line((l) => headOf(l) >= 25);
  doomed.kill();
  await doomed.exited;
  const killedAt = await centralHead(victim!.name);
  const again = new ChildScript('support/ship-child.ts', ['--db', victim!.db, '--to', url, '--host', victim!.name, '--batch', '10']);
  expect(await again.line((l) => l.startsWith('exit'))).toBe('exit 0');
  const shipped = await others;
  expect(shipped.every((r) => r.shipped === r.head && r.head > 0)).toBe(true);

  expect(await PostgresEventStore.hosts(url)).toEqual(hosts.map((h) => h.name));
  let total = 0;
  for (const h of hosts) {
    const local = await report(() => SqliteEventStore.open(h.db, { readonly: true }));
    const central = await report(() => PostgresEventStore.open(url, { host: h.name, readonly: true }));
    expect(local.ok).toBe(true);
    // Same log id, same count, same head hash: exactly the host's events, chained as on the host.
    expect(central, h.name).toEqual(local);
    total += central.count;
  }
  const victimCount = (await report(() => SqliteEventStore.open(victim!.db, { readonly: true }))).count;
  expect(killedAt).toBeLessThan(victimCount);
  expect(total).toBeGreaterThan(HOSTS * 100);
});
