import type { Command } from '@iommu-orch/core';
import { logicalClock, Orchestrator, shipLog } from '@iommu-orch/orchestrator';
import { SqliteEventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bootCommands } from '../support/arbitraries.js';
import { auditJson, cli } from '../support/cli.js';
import { freshDatabase } from '../support/postgres-server.js';

/**
 * Fleet-wide audit: three hosts' logs shipped into one PostgreSQL, and `audit history --store` asked
 * with and without --host. The known commands: on p9-a vm1 takes the NVMe group and gives it back; on
 * p9-b nobody takes it; on p9-c vm7 takes it and keeps it; p9-d has no such device at all.
 */
const NVME = '0000:01:00.0';
const GROUP = [NVME, '0000:01:00.1'];
const claim = (context: string): Command[] => GROUP.map((bdf) => ({ type: 'claimDevice', context, bdf }));
const release = (context: string): Command[] => GROUP.map((bdf) => ({ type: 'releaseDevice', context, bdf }));
const HOSTS: Record<string, Command[]> = {
  'p9-a': [...bootCommands, ...claim('vm1'), ...release('vm1')],
  'p9-b': [...bootCommands],
  'p9-c': [...bootCommands, ...claim('vm7')],
  'p9-d': bootCommands.filter((c) => !('bdf' in c) || !GROUP.includes(c.bdf)),
};

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-fleet-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let url = '';
const dbOf = (host: string): string => join(dir, `${host}.sqlite`);

beforeAll(async () => {
  url = await freshDatabase(inject('pgUrl'), 'fleet_audit');
  for (const [host, commands] of Object.entries(HOSTS)) {
    const store = SqliteEventStore.open(dbOf(host), { logId: host });
    const orch = await Orchestrator.open(store, { clock: logicalClock() });
    for (const c of commands) await orch.executeOrThrow(c);
    await store.close();
    await shipLog({ db: dbOf(host), to: url, host });
  }
});

const json = auditJson;

interface Owners {
  owners: { subject: string; owner: string; to: unknown }[];
  entries: unknown[];
}

describe('fleet audit over PostgreSQL', () => {
  it('audit history --device without --host answers across every host, matching the known commands', async () => {
    const fleet = await json<{ hosts: number; answers: (Owners & { host: string })[] }>('history', '--store', url, '--device', NVME);
    expect(fleet.hosts).toBe(4);
    expect(fleet.answers.map((a) => a.host)).toEqual(['p9-a', 'p9-b', 'p9-c']);
    const owners = Object.fromEntries(fleet.answers.map((a) => [a.host, a.owners.map((o) => [o.owner, o.to === null ? 'still' : 'returned'])]));
    expect(owners).toEqual({ 'p9-a': [['vm1', 'returned']], 'p9-b': [], 'p9-c': [['vm7', 'still']] });
    // Each host's part is exactly what the host's own file answers.
    for (const a of fleet.answers) {
      const { host, ...answer } = a;
      expect(answer).toEqual(await json('history', '--db', dbOf(host), '--device', NVME));
    }
    const text = await cli('audit', 'history', '--store', url, '--device', NVME);
    expect(text.out.split('\n')[0]).toBe('3 of 4 hosts have a history for this device');
  });

  it('--store with --host reads one host log with every audit command', async () => {
    expect(await json('history', '--store', url, '--host', 'p9-c', '--context', 'vm7')).toEqual(await json('history', '--db', dbOf('p9-c'), '--context', 'vm7'));
    expect(await json('replay', '--store', url, '--host', 'p9-a', '--at', '8')).toEqual(await json('replay', '--db', dbOf('p9-a'), '--at', '8'));
    expect(await json('verify', '--store', url, '--host', 'p9-a')).toEqual(await json('verify', '--db', dbOf('p9-a')));
  });

  it('bad sources: one line, exit 2', async () => {
    for (const argv of [
      ['history', '--device', NVME],
      ['history', '--db', dbOf('p9-a'), '--store', url, '--device', NVME],
      ['history', '--db', dbOf('p9-a'), '--host', 'p9-a', '--device', NVME],
      ['replay', '--store', url],
      ['history', '--store', url, '--device', NVME, '--at', '3'],
      ['history', '--store', 'mysql://x', '--device', NVME],
      ['replay', '--store', url, '--host', 'nowhere'],
    ]) {
      const r = await cli('audit', ...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err.split('\n'), argv.join(' ')).toHaveLength(1);
    }
  });
});
