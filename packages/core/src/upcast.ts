import { EVENT_SCHEMA_VERSION } from './events.js';
import { tcePermName } from './tce-table.js';
import type { Json } from './view.js';

/**
 * Upcasters lift a payload written under an older event schema to the current one, one version step at
 * a time, before evolve sees it: evolve only ever folds current payloads, and stored rows are never
 * rewritten (the log keeps the bytes its hash chain covers).
 *
 * `UPCASTERS[type][v]` turns a schema-v payload of `type` into a schema-(v+1) payload. A type without an
 * entry for a step kept its shape in that step.
 */
export type Upcaster = (data: Json) => Json;
export type UpcasterRegistry = Readonly<Record<string, Readonly<Record<number, Upcaster>>>>;

export const UPCASTERS: UpcasterRegistry = {
  TcesMapped: {
    // 3 -> 4: permission bits (1 = READ, 3 = READ|WRITE) became words ("r", "rw"). The payload had
    // not changed from 1 to 3, so older rows take this step too.
    3: (data) => {
      const d = data as { readonly [key: string]: Json };
      return { ...d, perm: tcePermName(BigInt(d.perm as number)) };
    },
  },
};

/** The payload of a `type` event stored under `schemaVersion`, as the current schema writes it. */
export function upcast(type: string, schemaVersion: number, data: Json, registry: UpcasterRegistry = UPCASTERS): Json {
  let d = data;
  for (let v = schemaVersion; v < EVENT_SCHEMA_VERSION; v++) {
    const up = registry[type]?.[v];
    if (up) d = up(d);
  }
  return d;
}
