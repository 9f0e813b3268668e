// Runs every benchmark file (tests/bench/*.bench.ts, or those named on the command line) with tsx,
// against the compiled packages (`pnpm build` first): the code the CLI ships, not the sources. tsx only
// compiles the bench files and test helpers; run from source, esbuild's keepNames would wrap every
// closure the packages create in `__name` (a few percent of the fold). Each file prints its own ratio
// lines; this prints a summary.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const only = process.argv.slice(2);
const build = spawnSync('pnpm', ['build'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('pnpm build failed: no benchmark run');
  process.exit(1);
}
const files = readdirSync('tests/bench').filter((f) => f.endsWith('.bench.ts') && (only.length === 0 || only.some((o) => f.includes(o))));
let failed = 0;
for (const f of files) {
  console.log(`\n== ${f}`);
  const r = spawnSync('pnpm', ['--filter', '@iommu-orch/tests', 'exec', 'tsx', `bench/${f}`], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
console.log(`\n${files.length} benchmark files, ${failed} failed to run`);
process.exit(failed ? 1 : 0);
