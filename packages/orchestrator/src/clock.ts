/**
 * Time is injected: event timestamps come from a Clock, and replay never reads one. A logical clock
 * makes a run byte-reproducible.
 */
export interface Clock {
  /** ISO 8601 time for the next event. */
  now(): string;
}

export const systemClock: Clock = { now: () => new Date().toISOString() };

/** Starts at `start` and advances `stepMs` on every reading. */
export function logicalClock(start = '2026-01-01T00:00:00.000Z', stepMs = 1000): Clock {
  let t = Date.parse(start);
  if (Number.isNaN(t)) throw new RangeError(`bad clock start ${start}`);
  return {
    now() {
      const iso = new Date(t).toISOString();
      t += stepMs;
      return iso;
    },
  };
}
