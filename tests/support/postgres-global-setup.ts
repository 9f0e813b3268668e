import type { TestProject } from 'vitest/node';
import { startPostgres } from './postgres-server.js';

/** Starts one PostgreSQL server for the whole run (or uses IOMMU_ORCH_PG_URL); tests get its URL by inject('pgUrl'). */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres();
  project.provide('pgUrl', server.url);
  return () => server.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
