import { expect } from 'vitest';
import { main } from '@iommu-orch/orchestrator';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = fileURLToPath(new URL('../../packages/orchestrator/bin/iommu-orch.js', import.meta.url));

/** Runs the CLI in-process and captures what it prints. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Runs the built bin in a child process, as a user would (needs `pnpm build`). */
export function spawnCli(...argv: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...argv], { encoding: 'utf8', cwd: ROOT });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** Runs `iommu-orch audit <argv> --json`, which must succeed without a word on stderr, and parses it. */
export async function auditJson<T>(...argv: string[]): Promise<T> {
  const r = await cli('audit', ...argv, '--json');
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as T;
}
