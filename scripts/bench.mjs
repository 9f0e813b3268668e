// Runs every benchmark file (tests/bench/*.bench.ts, or those named on the command line) with tsx,
// reading workspace packages from source. Each prints its own ratio lines; this prints a summary.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const only = process.argv.slice(2);
const files = readdirSync('tests/bench').filter((f) => f.endsWith('.bench.ts') && (only.length === 0 || only.some((o) => f.includes(o))));
let failed = 0;
for (const f of files) {
  console.log(`\n== ${f}`);
  const r = spawnSync('pnpm', ['--filter', '@iommu-orch/tests', 'exec', 'tsx', '--conditions=@iommu-orch/source', `bench/${f}`], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
console.log(`\n${files.length} benchmark files, ${failed} failed to run`);
process.exit(failed ? 1 : 0);
