import { canonicalState, invariants } from '@iommu-orch/core';
import { replay } from '@iommu-orch/orchestrator';
import { sha256Hex, SqliteEventStore, verifyChain } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ChildScript } from '../support/child.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-writers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  readonly outcome: string;
  readonly positions: readonly number[];
}

function outcomes(child: ChildScript): Map<number, Outcome> {
  const out = new Map<number, Outcome>();
  for (const line of child.lines) {
    const [kind, i, outcome, positions] = line.split(' ');
    if (kind === 'ok') out.set(Number(i), { outcome: outcome!, positions: positions === '-' ? [] : positions!.split(',').map(Number) });
  }
  return out;
}

describe('two processes writing one log', () => {
  it('busy waits, typed conflicts re-decided on fresh state: nothing lost, nothing duplicated', async () => {
    const db = join(dir, 'shared.sqlite');
    await SqliteEventStore.open(db).close();
    // Both open the log (and replay it, empty) before either writes: B's view is stale from A's first commit on.
    const a = new ChildScript('support/log-writer.ts', [db, 'A', '1', '250', '--wait-go']);
    const b = new ChildScript('support/log-writer.ts', [db, 'B', '2', '250', '--wait-go']);
    await Promise.all([a.line((l) => l.startsWith('ready')), b.line((l) => l.startsWith('ready'))]);
    a.send('go');
    await a.line((l) => l.startsWith('ok 0 accepted'));
    b.send('go');
    expect(await a.exited, a.errors).toBe(0);
    expect(await b.exited, b.errors).toBe(0);

    // B's first command (addPhb 0) conflicted on append, was decided again on A's log and refused.
    expect(b.lines).toContain('ok 0 refused:EEXIST -');
    const done = (c: ChildScript) => c.lines.at(-1)!.split(' ');
    const [, conflictsB] = done(b);
    expect(Number(conflictsB)).toBeGreaterThanOrEqual(1);

    const store = SqliteEventStore.open(db, { readonly: true });
    const rows = await store.read(0, 1e6);
    expect(rows.map((r) => r.position)).toEqual(rows.map((_, i) => i + 1));
    const byCommand = new Map<string, number[]>();
    for (const r of rows) byCommand.set(r.metadata.commandId, [...(byCommand.get(r.metadata.commandId) ?? []), r.position]);
    let accepted = 0;
    for (const [name, child] of [['A', a], ['B', b]] as const) {
      for (const [i, o] of outcomes(child)) {
        const logged = byCommand.get(`${name}-${i}`) ?? [];
        // Every accepted command is in the log once, exactly where its writer was told; a refused one is not.
        expect(logged, `${name}-${i} ${o.outcome}`).toEqual(o.outcome === 'accepted' ? o.positions : []);
        accepted += logged.length;
      }
    }
    expect(accepted).toBe(rows.length);
    expect((await verifyChain(store)).ok).toBe(true);

    const full = await replay(store, { snapshots: false });
    expect(invariants(full.state)).toEqual([]);
    // Each writer's final state is the fold of the log up to the last event it had seen.
    for (const c of [a, b]) {
      const [, , version, hash] = done(c);
      expect(sha256Hex(canonicalState((await replay(store, { at: Number(version) })).state))).toBe(hash);
    }
    await store.close();
  });
});
