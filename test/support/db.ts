import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { withCredentials } from '../../src/database/data-source';

export const TEMPLATE_DB = 'agent_ledger_template';
/** The runtime role's password inside the throwaway test cluster. */
export const APP_PASSWORD = 'test-app-password-not-secret';

export interface TestDatabase {
  /** Superuser (schema owner): for tampering and inspection. */
  ownerUrl: string;
  /** The restricted runtime role, as the service connects. */
  appUrl: string;
  name: string;
  drop(): Promise<void>;
}

function clusterUrl(): string {
  const url = process.env.TEST_PG_URL;
  if (!url) throw new Error('TEST_PG_URL is not set: run the tests with `npm test`');
  return url;
}

/** A fresh, migrated database for one test file (a copy of the migrated template). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const base = clusterUrl();
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`);
        break;
      } catch (err) {
        // two files cloning the template at the same moment: wait and retry
        if (attempt > 20 || !/being accessed by other users/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
  } finally {
    await admin.end();
  }
  const ownerUrl = `${base}/${name}`;
  return {
    ownerUrl,
    appUrl: withCredentials(ownerUrl, 'agent_ledger_app', APP_PASSWORD),
    name,
    drop: async () => {
      const c = new Client({ connectionString: `${base}/postgres` });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Runs SQL as the superuser on a test database. */
export async function asSuperuser<T>(db: TestDatabase, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: db.ownerUrl });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export function randomSuffix(): string {
  return randomBytes(4).toString('hex');
}
