// Runs the whole vitest suite and ends with the plain "N passed, N failed" line CI reads.
// Extra arguments are passed to vitest (a file filter, for example).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';

// The audit report test renders in Debian's headless Chromium. On a fresh Debian machine where we are
// root, install it first (as .ci/run does), so the README's test command works there as it stands.
const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM) && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
  console.log('installing Debian chromium for the report test (apt-get) ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const ok = [['update', '-qq'], ['install', '-y', '-qq', 'chromium']].every(
    (args) => spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env }).status === 0,
  );
  if (!ok) console.log('chromium could not be installed: the report test will fail');
}

mkdirSync('.test-results', { recursive: true });
const report = '.test-results/vitest.json';
const run = spawnSync(
  'pnpm',
  ['exec', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: 'inherit' },
);
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests;
  // A file that failed without running a test (an import error) counts as one failure.
  const broken = (r.testResults ?? []).filter((f) => f.status === 'failed' && (f.assertionResults ?? []).length === 0).length;
  failed = r.numFailedTests + broken;
  skipped = r.numPendingTests + r.numTodoTests;
} catch {
  failed = Math.max(1, failed);
}
if (run.status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || run.status !== 0 ? 1 : 0);
