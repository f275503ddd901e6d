import { join } from 'node:path';
import { DataSource, type DataSourceOptions } from 'typeorm';

/**
 * Compiled migrations live in dist/migrations beside dist/src. `npm run build`
 * empties that folder first (the `prebuild` script): every file the glob finds
 * is run, so a renamed or removed migration's old output must not linger.
 */
export const MIGRATIONS_GLOB = join(__dirname, '..', '..', 'migrations', '*.js');

export function dataSourceOptions(url: string, poolSize = 10): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    synchronize: false,
    migrationsRun: false,
    migrations: [MIGRATIONS_GLOB],
    migrationsTableName: 'migrations',
    extra: { max: poolSize },
    logging: false,
  };
}

/**
 * Applies pending migrations as the schema owner, then, when a password is
 * given, lets the runtime role log in with it (embedded mode and Docker).
 * Returns the names of the migrations applied.
 */
export async function migrate(ownerUrl: string, appPassword?: string): Promise<string[]> {
  const ds = new DataSource(dataSourceOptions(ownerUrl, 2));
  await ds.initialize();
  try {
    const applied = await ds.runMigrations({ transaction: 'each' });
    if (appPassword !== undefined) {
      // ALTER ROLE takes no bind parameters; quote_literal does the escaping server-side.
      const [{ sql }] = await ds.query(
        `SELECT format('ALTER ROLE agent_ledger_app WITH LOGIN PASSWORD %L', $1::text) AS sql`,
        [appPassword],
      );
      await ds.query(sql);
    }
    return applied.map((m) => m.name);
  } finally {
    await ds.destroy();
  }
}

/** Migrations present in the code that the database has not applied. */
export async function pendingMigrations(ds: DataSource): Promise<number> {
  const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM migrations`);
  return Math.max(0, ds.migrations.length - n);
}

export function withCredentials(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}
