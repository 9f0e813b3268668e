/**
 * Benchmark helpers. A benchmark measures a workload and a baseline in the same run and prints their
 * ratio against a target, so the figure means something on a noisy machine. Benchmarks never run in the
 * test suite; `pnpm bench` runs every tests/bench/*.bench.ts.
 */
export interface Measurement {
  /** Operations (events, TCEs, commands...) per second, median of the rounds. */
  readonly perSecond: number;
}

/** Runs `fn` (which returns how many operations it did) `rounds` times after a warm-up; median rate. */
export async function measure(fn: () => number | Promise<number>, rounds = 5): Promise<Measurement> {
  await fn();
  const rates: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = process.hrtime.bigint();
    const ops = await fn();
    const ns = Number(process.hrtime.bigint() - t0);
    rates.push(ops / (ns / 1e9));
  }
  rates.sort((a, b) => a - b);
  return { perSecond: rates[Math.floor(rates.length / 2)]! };
}

/**
 * Measures workloads in alternating rounds (a, b, a, b, ...) after one warm-up each, so that load from
 * other processes on a shared machine slows them alike; the median rate of each, in order.
 */
export async function measureTogether(fns: readonly (() => number | Promise<number>)[], rounds = 5): Promise<Measurement[]> {
  for (const fn of fns) await fn();
  const rates: number[][] = fns.map(() => []);
  for (let i = 0; i < rounds; i++) {
    for (const [k, fn] of fns.entries()) {
      const t0 = process.hrtime.bigint();
      const ops = await fn();
      rates[k]!.push(ops / (Number(process.hrtime.bigint() - t0) / 1e9));
    }
  }
  return rates.map((r) => ({ perSecond: r.sort((a, b) => a - b)[Math.floor(r.length / 2)]! }));
}

/** Prints one result line: the workload, its baseline, the ratio and whether it meets the target. */
export function report(name: string, value: Measurement, baseline: Measurement, target: { atLeast?: number; atMost?: number }, unit = 'ops/s'): boolean {
  const ratio = value.perSecond / baseline.perSecond;
  const ok = (target.atLeast === undefined || ratio >= target.atLeast) && (target.atMost === undefined || ratio <= target.atMost);
  const goal = target.atLeast !== undefined ? `>= ${target.atLeast}x` : `<= ${target.atMost}x`;
  console.log(
    `${name}: ${fmt(value.perSecond)} ${unit} vs baseline ${fmt(baseline.perSecond)} ${unit} = ${ratio.toFixed(2)}x (target ${goal}) ${ok ? 'MET' : 'MISSED'}`,
  );
  return ok;
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(1);
}
