import { subscribeFrom } from '@iommu-orch/orchestrator';
import {
  chainHash, genesisHash, parseMetadata, recordBytes, sha256Hex, StoreError, verifyChain, WrongExpectedVersionError,
  type EventRecord, type EventStore, type ExpectedVersion, type NewEvent, type StoredEvent,
} from '@iommu-orch/store';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { firstValueFrom, take, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';

/**
 * The contract every EventStore engine passes. `newLog()` makes a new, empty log and returns a way to
 * open connections to it; each `connect()` is another connection (another handle on the same log), which
 * is how concurrent writers are exercised. A later engine (PostgreSQL) runs this same function.
 */
export interface LogUnderTest {
  connect(): EventStore;
}

export function ev(id: string, data: unknown = { x: id }, commandId = `c-${id}`): NewEvent {
  return { eventId: id, type: 'T', schemaVersion: 1, data, metadata: { time: '2026-01-01T00:00:00.000Z', commandId, commandType: 't' } };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

/** A view of a store whose rows read back altered: what verification sees after someone edited the file. */
function tampered(store: EventStore, alter: (rows: EventRecord[]) => EventRecord[]): Parameters<typeof verifyChain>[0] {
  return {
    logId: () => store.logId(),
    streamVersion: (s) => store.streamVersion(s),
    readRecords: async (after, limit) => alter(await store.readRecords(0, 1_000_000)).slice(after, after + limit),
  };
}

/** `watches`: the engine implements `watch` (live notifications), which the suite then tests too. */
export function storeContract(name: string, newLog: () => LogUnderTest, options: { watches?: boolean } = {}): void {
  describe(`event store contract: ${name}`, () => {
    it('assigns dense global positions and per-stream versions', async () => {
      const s = newLog().connect();
      expect(await s.append('a', [ev('1'), ev('2')], { expectedVersion: 'no_stream' })).toEqual({ firstPosition: 1, lastPosition: 2, nextExpectedVersion: 2, duplicate: false });
      expect(await s.append('b', [ev('3')], { expectedVersion: 0 })).toEqual({ firstPosition: 3, lastPosition: 3, nextExpectedVersion: 1, duplicate: false });
      expect(await s.append('a', [ev('4')], { expectedVersion: 2 })).toEqual({ firstPosition: 4, lastPosition: 4, nextExpectedVersion: 3, duplicate: false });
      const all = await s.read(0, 10);
      expect(all.map((e) => [e.position, e.streamId, e.streamVersion])).toEqual([[1, 'a', 1], [2, 'a', 2], [3, 'b', 1], [4, 'a', 3]]);
      expect(all[0]!.data).toEqual({ x: '1' });
      expect(await s.head()).toBe(4);
      expect(await s.read(2, 1)).toHaveLength(1);
      await s.close();
    });

    it('a wrong expected version names expected and actual, writes nothing and wedges nothing', async () => {
      const s = newLog().connect();
      await s.append('a', [ev('1')], { expectedVersion: 'any' });
      const err = await rejection(s.append('a', [ev('2')], { expectedVersion: 5 }));
      expect(err).toBeInstanceOf(WrongExpectedVersionError);
      expect(err).toMatchObject({ code: 'WRONG_EXPECTED_VERSION', streamId: 'a', expected: 5, actual: 1 });
      expect(await rejection(s.append('a', [ev('2')], { expectedVersion: 'no_stream' }))).toMatchObject({ expected: 'no_stream', actual: 1 });
      expect(await rejection(s.append('z', [ev('2')], { expectedVersion: 'stream_exists' }))).toMatchObject({ streamId: 'z', expected: 'stream_exists', actual: 0 });
      expect(await s.head()).toBe(1);
      expect(await s.streamVersion('a')).toBe(1);
      expect(await s.streamVersion('z')).toBe(0);
      // Emmett 0.42.4 leaves the stream row incremented here, and the right version then fails too.
      await s.append('a', [ev('2')], { expectedVersion: 1 });
      expect(await s.streamVersion('a')).toBe(2);
      expect((await verifyChain(s)).ok).toBe(true);
      await s.close();
    });

    it('every expected-version kind behaves like the model, also right after refusals (fast-check)', async () => {
      const streams = ['a', 'b', 'c'];
      const op = fc.record({
        stream: fc.constantFrom(...streams),
        expected: fc.oneof(fc.constantFrom<ExpectedVersion>('any', 'no_stream', 'stream_exists'), fc.integer({ min: 0, max: 4 })),
        count: fc.integer({ min: 0, max: 3 }),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 14 }), async (ops) => {
          const s = newLog().connect();
          const model = new Map<string, number>();
          let head = 0;
          let id = 0;
          for (const o of ops) {
            const actual = model.get(o.stream) ?? 0;
            const e = o.expected;
            const ok = e === 'any' || (e === 'no_stream' && actual === 0) || (e === 'stream_exists' && actual > 0) || e === actual;
            const events = Array.from({ length: o.count }, () => ev(`e${id++}`));
            if (ok) {
              expect(await s.append(o.stream, events, { expectedVersion: e })).toEqual({
                firstPosition: head + 1, lastPosition: head + o.count, nextExpectedVersion: actual + o.count, duplicate: false,
              });
              head += o.count;
              if (o.count > 0) model.set(o.stream, actual + o.count);
            } else {
              expect(await rejection(s.append(o.stream, events, { expectedVersion: e }))).toMatchObject({ streamId: o.stream, expected: e, actual });
            }
            expect(await s.head()).toBe(head);
            for (const st of streams) expect(await s.streamVersion(st)).toBe(model.get(st) ?? 0);
          }
          expect((await verifyChain(s)).ok).toBe(true);
          await s.close();
        }),
        { numRuns: 25 },
      );
    });

    it('commits all events of an append or none; event ids are unique', async () => {
      const s = newLog().connect();
      await s.append('a', [ev('1')], { expectedVersion: 'any' });
      for (const batch of [[ev('2'), ev('1')], [ev('2'), ev('2')]]) {
        expect(await rejection(s.append('a', batch, { expectedVersion: 1 }))).toMatchObject({ code: 'DUPLICATE_EVENT_ID' });
      }
      expect(await rejection(s.append('a', [ev('2'), { ...ev('3'), data: undefined }], { expectedVersion: 1 }))).toBeInstanceOf(TypeError);
      expect(await s.head()).toBe(1);
      expect(await s.streamVersion('a')).toBe(1);
      await s.append('a', [ev('2')], { expectedVersion: 1 });
      expect((await verifyChain(s)).ok).toBe(true);
      await s.close();
    });

    it('a command id appends once; re-sending it returns the first result whatever the expected version', async () => {
      const s = newLog().connect();
      const first = await s.append('a', [ev('1'), ev('2')], { expectedVersion: 'no_stream', commandId: 'cmd-1', commandResult: { mapped: 4096 } });
      const again = await s.append('a', [ev('1'), ev('2')], { expectedVersion: 'no_stream', commandId: 'cmd-1', commandResult: { mapped: 1 } });
      expect(again).toEqual({ ...first, duplicate: true });
      // Different events, another stream, a version that would conflict: still the original, nothing appended.
      expect(await s.append('b', [ev('9')], { expectedVersion: 7, commandId: 'cmd-1' })).toEqual({ ...first, duplicate: true });
      expect(await s.head()).toBe(2);
      expect(await s.findCommand('cmd-1')).toEqual({ commandId: 'cmd-1', streamId: 'a', firstPosition: 1, lastPosition: 2, nextExpectedVersion: 2, result: { mapped: 4096 } });
      expect(await s.findCommand('cmd-2')).toBeNull();
      // A refused append records nothing: the id stays free.
      await rejection(s.append('a', [ev('3')], { expectedVersion: 0, commandId: 'cmd-2' }));
      expect(await s.findCommand('cmd-2')).toBeNull();
      expect((await s.append('a', [ev('3')], { expectedVersion: 2, commandId: 'cmd-2' })).duplicate).toBe(false);
      await s.close();
    });

    it('chains every row: SHA-256 over the previous hash and the stored bytes, from a per-log genesis', async () => {
      const s = newLog().connect();
      await s.append('a', [ev('1', { n: 1, text: 'ünïcödé "q"' }), ev('2')], { expectedVersion: 'any' });
      await s.append('b', [ev('3', [1, null, true])], { expectedVersion: 'any' });
      const logId = await s.logId();
      expect(logId).toEqual(expect.any(String));
      const rows = await s.readRecords(0, 10);
      let hash = genesisHash(logId!);
      let previous = createHash('sha256').update(`iommu-orch event log v1\n${logId}`).digest('hex');
      expect(hash).toBe(previous);
      for (const r of rows) {
        hash = chainHash(hash, r);
        expect(r.hash).toBe(hash);
        expect(hash).toBe(createHash('sha256').update(`${previous}${recordBytes(r)}`).digest('hex'));
        previous = hash;
      }
      const parsed = await s.read(0, 10);
      expect(parsed.map((e) => e.data)).toEqual(rows.map((r) => JSON.parse(r.data)));
      expect(await verifyChain(s)).toEqual({ ok: true, logId, count: 3, head: hash });
      expect((await verifyChain(s, { trusted: { position: 2, hash: rows[1]!.hash } })).ok).toBe(true);
      expect(await verifyChain(s, { trusted: { position: 2, hash: rows[0]!.hash } })).toMatchObject({ ok: false, position: 2 });
      expect(await verifyChain(s, { trusted: { position: 9, hash: rows[0]!.hash } })).toMatchObject({ ok: false, position: 4 });
      await s.close();
    });

    it('readFold reads what read does without event ids and versions, the metadata as its stored text', async () => {
      const s = newLog().connect();
      await s.append('a', [ev('1', { n: 1, text: 'ünïcödé "q"' }), ev('2')], { expectedVersion: 'any', commandId: 'c' });
      await s.append('b', [ev('3', [1, null, true])], { expectedVersion: 'any' });
      await s.append('a', [ev('4', 'x', 'd')], { expectedVersion: 'any' });
      const read = await s.read(0, 10);
      const records = await s.readRecords(0, 10);
      for (const [after, limit] of [[0, 10], [0, 2], [1, 1], [2, 5], [4, 3]] as const) {
        const folded = await s.readFold(after, limit);
        expect(folded).toEqual(read.slice(after, after + limit).map((e, i) => ({
          position: e.position, streamId: e.streamId, type: e.type, schemaVersion: e.schemaVersion, data: e.data, metadataText: records[after + i]!.metadata,
        })));
        expect(folded.map((f) => parseMetadata(f.metadataText))).toEqual(read.slice(after, after + limit).map((e) => e.metadata));
      }
      await s.close();
    });

    it('verification names the first bad position for an edited, deleted, swapped or inserted row', async () => {
      const s = newLog().connect();
      for (let i = 1; i <= 6; i++) await s.append('a', [ev(`${i}`)], { expectedVersion: 'any' });
      const at = (i: number) => (rows: EventRecord[]) => rows[i]!;
      const cases: [string, (rows: EventRecord[]) => EventRecord[], number][] = [
        ['edited payload', (rows) => rows.map((r) => (r.position === 4 ? { ...r, data: '{"x":"forged"}' } : r)), 4],
        ['deleted row', (rows) => rows.filter((r) => r.position !== 3), 3],
        ['swapped rows', (rows) => [...rows.slice(0, 2), { ...at(3)(rows), position: 3 }, { ...at(2)(rows), position: 4 }, ...rows.slice(4)], 3],
        ['inserted row', (rows) => [...rows.slice(0, 5), { ...at(5)(rows), eventId: 'x', position: 6, hash: 'ff'.repeat(32) }, ...rows.slice(5).map((r) => ({ ...r, position: r.position + 1 }))], 6],
      ];
      for (const [what, alter, position] of cases) {
        const report = await verifyChain(tampered(s, alter));
        expect(report, what).toMatchObject({ ok: false, position, count: position - 1 });
      }
      await s.close();
    });

    it('stores a snapshot with its append, bound to the log hash at its position', async () => {
      const s = newLog().connect();
      await s.append('a', [ev('1')], { expectedVersion: 'any' });
      await s.append('b', [ev('2'), ev('3')], { expectedVersion: 'any', snapshot: { format: 'f1', state: '{"b":2}' } });
      await s.append('b', [ev('4')], { expectedVersion: 2, snapshot: { format: 'f1', state: '{"b":3}' } });
      await rejection(s.append('b', [ev('5')], { expectedVersion: 0, snapshot: { format: 'f1', state: 'refused' } }));
      const rows = await s.readRecords(0, 10);
      expect(await s.latestSnapshot('b', 100)).toEqual({
        streamId: 'b', position: 4, streamVersion: 3, format: 'f1', stateHash: sha256Hex('{"b":3}'), logHash: rows[3]!.hash, state: '{"b":3}',
      });
      expect(await s.latestSnapshot('b', 3)).toMatchObject({ position: 3, streamVersion: 2, logHash: rows[2]!.hash, state: '{"b":2}' });
      expect(await s.latestSnapshot('b', 2)).toBeNull();
      expect(await s.latestSnapshot('a', 100)).toBeNull();
      await s.close();
    });

    it('two connections: one conflicting writer wins, the other gets a typed conflict; a shared command id appends once', async () => {
      const log = newLog();
      const [w1, w2] = [log.connect(), log.connect()];
      const results = await Promise.allSettled([
        w1.append('a', [ev('1')], { expectedVersion: 'no_stream' }),
        w2.append('a', [ev('2')], { expectedVersion: 'no_stream' }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toMatchObject({ code: 'WRONG_EXPECTED_VERSION', expected: 'no_stream', actual: 1 });
      expect(StoreError.is(lost.reason)).toBe(true);
      const same = await Promise.all([
        w1.append('a', [ev('3')], { expectedVersion: 'any', commandId: 'shared' }),
        w2.append('a', [ev('4')], { expectedVersion: 'any', commandId: 'shared' }),
      ]);
      expect(same.map((r) => r.duplicate).sort()).toEqual([false, true]);
      expect(same[0]!.firstPosition).toBe(same[1]!.firstPosition);
      expect(await w2.head()).toBe(2);
      expect(await w1.streamVersion('a')).toBe(2);
      expect((await verifyChain(w2)).ok).toBe(true);
      await Promise.all([w1.close(), w2.close()]);
    });

    it('a catch-up subscription delivers history then live events from another connection: no gap, no duplicate', async () => {
      const log = newLog();
      const [writer, reader] = [log.connect(), log.connect()];
      for (let i = 1; i <= 7; i++) await writer.append('a', [ev(`h${i}`)], { expectedVersion: 'any' });
      // Pages of 3 over 7 historic events, starting after position 2; live events arrive while paging.
      const seen = firstValueFrom(subscribeFrom(reader, 2, { pageSize: 3, pollMs: 5 }).pipe(take(5 + 12), toArray()));
      for (let i = 1; i <= 6; i++) {
        await writer.append('a', [ev(`l${i}a`), ev(`l${i}b`)], { expectedVersion: 'any' });
        await new Promise((r) => setTimeout(r, i % 2 === 0 ? 0 : 7));
      }
      const got: StoredEvent[] = await seen;
      expect(got.map((e) => e.position)).toEqual(Array.from({ length: 17 }, (_, i) => i + 3));
      expect(got.map((e) => e.eventId)).toEqual([...['h3', 'h4', 'h5', 'h6', 'h7'], ...[1, 2, 3, 4, 5, 6].flatMap((i) => [`l${i}a`, `l${i}b`])]);
      await Promise.all([writer.close(), reader.close()]);
    });

    if (options.watches) it('a watching engine wakes a subscription on commits from another connection, with no poll at all', async () => {
      const log = newLog();
      const [writer, reader] = [log.connect(), log.connect()];
      expect(reader.watch).toBeTypeOf('function');
      await writer.append('a', [ev('h1')], { expectedVersion: 'any' });
      // A poll of an hour: anything delivered live came through watch().
      const seen = firstValueFrom(subscribeFrom(reader, 0, { pageSize: 2, pollMs: 3_600_000 }).pipe(take(1 + 3 * 2), toArray()));
      for (let i = 1; i <= 3; i++) {
        await writer.append('a', [ev(`l${i}a`), ev(`l${i}b`)], { expectedVersion: 'any' });
        await new Promise((r) => setTimeout(r, 5));
      }
      expect((await seen).map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      await Promise.all([writer.close(), reader.close()]);
    });
  });
}
