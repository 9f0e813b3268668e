import { PostgresEventStore } from '@iommu-orch/store';
import type { Category, Entity } from './concerns.js';
import { auditHistory, renderHistory, type History } from './history.js';
import type { Bound } from './scan.js';

/**
 * A history question asked of every host log in a central PostgreSQL database (what `ship` fills):
 * each host's answer is `auditHistory` over that host's log, so it means exactly what it means on the
 * host. Hosts whose log never mentions the entity are counted, not listed.
 */
export interface FleetHistory {
  readonly entity: Entity;
  /** Host logs asked. */
  readonly hosts: number;
  /** The hosts whose log concerns the entity, by host name. */
  readonly answers: readonly (History & { readonly host: string })[];
}

export async function fleetHistory(url: string, entity: Entity, options: { to?: Bound; kinds?: ReadonlySet<Category> } = {}): Promise<FleetHistory> {
  const hosts = await PostgresEventStore.hosts(url);
  const answers: (History & { host: string })[] = [];
  for (const host of hosts) {
    const store = PostgresEventStore.open(url, { host, readonly: true, maxConnections: 1 });
    try {
      const h = await auditHistory(store, entity, options);
      if (h.entries.length > 0) answers.push({ host, ...h });
    } finally {
      await store.close();
    }
  }
  return { entity, hosts: hosts.length, answers };
}

export function renderFleetHistory(f: FleetHistory): string {
  const lines = [`${f.answers.length} of ${f.hosts} hosts have a history for this ${f.entity.kind}`];
  for (const a of f.answers) lines.push('', `== host ${a.host}`, renderHistory(a));
  return lines.join('\n');
}
