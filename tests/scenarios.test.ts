import { canonicalState, invariants } from '@iommu-orch/core';
import { MemoryEventStore } from '@iommu-orch/store';
import { demoScenarioPath, loadScenario, logicalClock, Orchestrator, replay, runScenario } from '@iommu-orch/orchestrator';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/** Every scenario file under tests/scenarios/ (and the demo) runs, meets its expectations and replays. */
const root = fileURLToPath(new URL('./scenarios', import.meta.url));
const files = [demoScenarioPath(), ...readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.json')).map((f) => join(root, f))];

describe.each(files)('scenario %s', (file) => {
  it('meets every expectation, keeps the invariants and replays to the same state', async () => {
    const scenario = loadScenario(file);
    const store = new MemoryEventStore();
    const orch = await Orchestrator.open(store, { clock: logicalClock(scenario.clock?.start, scenario.clock?.stepMs) });
    const report = await runScenario(orch, scenario);
    const unmet = report.results.filter((r) => r.expectationMet === false);
    expect(unmet).toEqual([]);
    expect(report.results.some((r) => r.expectationMet === true)).toBe(true);
    expect(invariants(report.state)).toEqual([]);
    expect(canonicalState((await replay(store)).state)).toBe(canonicalState(report.state));
  });
});
