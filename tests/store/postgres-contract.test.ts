import { PostgresEventStore } from '@iommu-orch/store';
import { inject } from 'vitest';
import { freshDatabase } from '../support/postgres-server.js';
import { storeContract } from './contract.js';

// Every log of the suite is another host in one database: the engine keeps host logs apart.
const url = await freshDatabase(inject('pgUrl'), 'contract');
let n = 0;

storeContract('postgres', () => {
  const host = `host-${n++}`;
  return { connect: () => PostgresEventStore.open(url, { host }) };
}, { watches: true });
