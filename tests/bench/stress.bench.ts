import { defaultTopologyPath, loadTopology, runStress } from '@iommu-orch/orchestrator';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measure, report } from './harness.js';

/**
 * Stress ops/s with the invariants checked after every event, against the very same run (same seed,
 * so the same commands and the same log) with checking off: the ratio is what checking costs.
 * Target: checking costs less than 2x, so the checked run keeps at least half the unchecked rate.
 */
const OPS = 20_000;
const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-bench-stress-'));
const topology = loadTopology(defaultTopologyPath());
let n = 0;

async function run(check: boolean): Promise<number> {
  const db = join(dir, `run-${n++}.sqlite`);
  const r = await runStress({ seed: 7, ops: OPS, actors: 8, db, topology, check });
  if (r.violations.length > 0) throw new Error(`stress run broke ${r.violations[0]!.rule}`);
  return r.ops;
}

try {
  const unchecked = await measure(() => run(false), 5);
  const checked = await measure(() => run(true), 5);
  report(`stress ${OPS} ops, 8 actors: invariants after every event vs unchecked`, checked, unchecked, { atLeast: 0.5 });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
