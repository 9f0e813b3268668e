import { PostgresEventStore, StoreError, verifyChain, WrongExpectedVersionError } from '@iommu-orch/store';
import { describe, expect, inject, it } from 'vitest';
import { freshDatabase } from '../support/postgres-server.js';
import { ev } from './contract.js';

const url = await freshDatabase(inject('pgUrl'), 'engine');

describe('PostgreSQL engine', () => {
  it('four writers racing on one host log, retrying their conflicts: dense positions, every event once, chain intact', async () => {
    const writers = Array.from({ length: 4 }, () => PostgresEventStore.open(url, { host: 'racing' }));
    const told = new Map<string, number>();
    let conflicts = 0;
    await Promise.all(
      writers.map(async (w, k) => {
        for (let i = 0; i < 25; i++) {
          const stream = `s${i % 3}`;
          const events = [ev(`w${k}-${i}a`), ev(`w${k}-${i}b`)];
          for (;;) {
            // An exact expected version read outside the transaction: stale whenever another writer got in first.
            const version = await w.streamVersion(stream);
            try {
              const r = await w.append(stream, events, { expectedVersion: version, commandId: `w${k}-${i}` });
              told.set(events[0]!.eventId, r.firstPosition);
              told.set(events[1]!.eventId, r.lastPosition);
              break;
            } catch (e) {
              if (!WrongExpectedVersionError.is(e)) throw e;
              conflicts++;
            }
          }
        }
      }),
    );
    const rows = await writers[0]!.read(0, 1000);
    expect(rows.map((r) => r.position)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(new Map(rows.map((r) => [r.eventId, r.position]))).toEqual(told);
    // Each command's two events are adjacent: appends never interleave.
    for (const [id, p] of told) if (id.endsWith('a')) expect(told.get(id.replace(/a$/, 'b'))).toBe(p + 1);
    expect(conflicts).toBeGreaterThan(0);
    expect(await verifyChain(writers[1]!)).toMatchObject({ ok: true, count: 200 });
    await Promise.all(writers.map((w) => w.close()));
  });

  it('keeps host logs apart in one database: own positions, own chains, the same event ids', async () => {
    const [a, b] = [PostgresEventStore.open(url, { host: 'host-a', logId: 'A' }), PostgresEventStore.open(url, { host: 'host-b', logId: 'B' })];
    await a.append('s', [ev('1'), ev('2')], { expectedVersion: 'no_stream', commandId: 'same' });
    await b.append('s', [ev('1')], { expectedVersion: 'no_stream', commandId: 'same' });
    expect([await a.head(), await b.head()]).toEqual([2, 1]);
    expect([await a.logId(), await b.logId()]).toEqual(['A', 'B']);
    expect(await b.findCommand('same')).toMatchObject({ firstPosition: 1, lastPosition: 1 });
    expect((await verifyChain(a)).ok && (await verifyChain(b)).ok).toBe(true);
    expect(await PostgresEventStore.hosts(url)).toEqual(expect.arrayContaining(['host-a', 'host-b']));
    // An existing log keeps its id whatever a later open asks for.
    const again = PostgresEventStore.open(url, { host: 'host-a', logId: 'other' });
    expect(await again.logId()).toBe('A');
    await Promise.all([a.close(), b.close(), again.close()]);
  });

  it('read-only opens never create a log; an unreachable server is a StoreError', async () => {
    const ro = PostgresEventStore.open(url, { host: 'nobody', readonly: true });
    await expect(ro.head()).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await ro.close();
    expect(await PostgresEventStore.hosts(url)).not.toContain('nobody');
    const dead = PostgresEventStore.open('postgres://postgres:postgres@127.0.0.1:1/none', { host: 'x' });
    const err = await dead.head().catch((e: unknown) => e);
    expect(StoreError.is(err) && err.code).toBe('NOT_FOUND');
    await dead.close();
  });
});
