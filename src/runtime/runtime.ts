import type { JWK } from 'jose';
import type { Env } from '../config/config';
import { migrate, withCredentials } from '../database/data-source';
import { startEmbeddedPostgres } from '../database/embedded';
import { loadLedgerKey, type LedgerKey } from './ledger-key';
import { ensureLocalSecrets, type LocalSecrets } from './secrets';

export interface AuthSettings {
  hsSecret?: Uint8Array;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  clockToleranceS: number;
}

/** Everything the application needs, resolved from the environment at boot. */
export interface AppConfig {
  env: Env;
  databaseUrl: string;
  auth: AuthSettings;
  ledgerKey: LedgerKey;
}

export interface Runtime {
  config: AppConfig;
  migrationsApplied: string[];
  /** Stops what the runtime started (the embedded cluster). */
  stop(): Promise<void>;
}

/**
 * Boot sequence shared by `npm start` and the CLI commands: local secrets,
 * the embedded PostgreSQL when no DATABASE_URL is set, migrations as the
 * schema owner, then the runtime connection as the restricted role.
 */
export async function resolveRuntime(env: Env, log: (msg: string) => void = () => undefined): Promise<Runtime> {
  const needsLocal = !env.DATABASE_URL || !env.LEDGER_SIGNING_KEY || (!env.AUTH_JWT_SECRET && !env.AUTH_JWKS_URL);
  const local: LocalSecrets | undefined = needsLocal ? await ensureLocalSecrets(env.DATA_DIR) : undefined;

  let databaseUrl: string;
  let ownerUrl: string;
  let appPassword: string | undefined;
  let stop = async () => undefined as void;
  if (env.DATABASE_URL) {
    databaseUrl = env.DATABASE_URL;
    ownerUrl = env.MIGRATIONS_DATABASE_URL ?? env.DATABASE_URL;
    appPassword = env.DATABASE_APP_PASSWORD;
  } else {
    const secrets = local!;
    log(`starting embedded PostgreSQL in ${env.DATA_DIR}/pg on port ${env.EMBEDDED_PG_PORT}`);
    const db = await startEmbeddedPostgres({
      dataDir: env.DATA_DIR,
      port: env.EMBEDDED_PG_PORT,
      password: secrets.postgresPassword,
    });
    ownerUrl = db.ownerUrl;
    appPassword = secrets.appPassword;
    databaseUrl = withCredentials(db.ownerUrl, 'agent_ledger_app', secrets.appPassword);
    stop = db.stop;
  }

  let migrationsApplied: string[] = [];
  try {
    if (env.MIGRATIONS_RUN) migrationsApplied = await migrate(ownerUrl, appPassword);
    const ledgerJwk: JWK = env.LEDGER_SIGNING_KEY ? (JSON.parse(env.LEDGER_SIGNING_KEY) as JWK) : local!.ledgerKey;
    const ledgerKey = await loadLedgerKey(ledgerJwk);
    const auth: AuthSettings = {
      hsSecret: env.AUTH_JWT_SECRET
        ? new TextEncoder().encode(env.AUTH_JWT_SECRET)
        : env.AUTH_JWKS_URL
          ? undefined
          : new TextEncoder().encode(local!.jwtSecret),
      jwksUrl: env.AUTH_JWKS_URL,
      issuer: env.AUTH_ISSUER,
      audience: env.AUTH_AUDIENCE,
      clockToleranceS: env.AUTH_CLOCK_TOLERANCE_S,
    };
    return { config: { env, databaseUrl, auth, ledgerKey }, migrationsApplied, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
