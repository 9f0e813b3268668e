import { MemoryEventStore, SqliteEventStore } from '@iommu-orch/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { storeContract } from './contract.js';

const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storeContract('memory', () => {
  const log = new MemoryEventStore();
  return { connect: () => log.connect() };
});

storeContract('sqlite', () => {
  const file = join(dir, `log${n++}.sqlite`);
  return { connect: () => SqliteEventStore.open(file) };
});
