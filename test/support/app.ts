import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { exportJWK, generateKeyPair } from 'jose';
import { createApp } from '../../src/app';
import { mintToken } from '../../src/auth/token';
import { loadEnv } from '../../src/config/config';
import { loadLedgerKey } from '../../src/runtime/ledger-key';
import type { AppConfig } from '../../src/runtime/runtime';
import { createTestDatabase, type TestDatabase } from './db';

export const TEST_JWT_SECRET = 'test-secret-0123456789-abcdefghijklmnop';

export interface TestApp {
  app: NestFastifyApplication;
  db: TestDatabase;
  config: AppConfig;
  /** Base URL of the listening server (real HTTP on loopback). */
  url: string;
  token(tenant: string, scope: string, opts?: { ttlSeconds?: number; secret?: string; sub?: string }): Promise<string>;
  close(): Promise<void>;
}

/** The app built by the same function `main.ts` uses, on a fresh database, listening on a free port. */
export async function startTestApp(envOverrides: Record<string, string> = {}): Promise<TestApp> {
  const db = await createTestDatabase();
  const env = loadEnv({ NODE_ENV: 'test', LOG_LEVEL: 'silent', AUTH_JWT_SECRET: TEST_JWT_SECRET, ...envOverrides });
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const config: AppConfig = {
    env,
    databaseUrl: db.appUrl,
    auth: { hsSecret: new TextEncoder().encode(TEST_JWT_SECRET), clockToleranceS: env.AUTH_CLOCK_TOLERANCE_S },
    ledgerKey: await loadLedgerKey(await exportJWK(privateKey)),
  };
  const app = await createApp(config);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = await app.getUrl();
  return {
    app,
    db,
    config,
    url: url.replace('[::1]', '127.0.0.1'),
    token: (tenant, scope, opts = {}) =>
      mintToken({
        secret: new TextEncoder().encode(opts.secret ?? TEST_JWT_SECRET),
        tenant,
        scope,
        sub: opts.sub,
        ttlSeconds: opts.ttlSeconds,
      }),
    close: async () => {
      await app.close();
      await db.drop();
    },
  };
}
