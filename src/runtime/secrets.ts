import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

/**
 * Secrets generated once for local use and kept in DATA_DIR/secrets.json
 * (mode 0600): the embedded cluster's passwords, the local HS256 token secret
 * and the ledger's Ed25519 signing key. Production sets them explicitly.
 */
export interface LocalSecrets {
  postgresPassword: string;
  appPassword: string;
  jwtSecret: string;
  ledgerKey: JWK;
}

export function secretsPath(dataDir: string): string {
  return join(dataDir, 'secrets.json');
}

export function readLocalSecrets(dataDir: string): LocalSecrets | undefined {
  const p = secretsPath(dataDir);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, 'utf8')) as LocalSecrets;
}

export async function ensureLocalSecrets(dataDir: string): Promise<LocalSecrets> {
  const existing = readLocalSecrets(dataDir);
  if (existing) return existing;
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const secrets: LocalSecrets = {
    postgresPassword: randomBytes(18).toString('base64url'),
    appPassword: randomBytes(18).toString('base64url'),
    jwtSecret: randomBytes(32).toString('base64url'),
    ledgerKey: await exportJWK(privateKey),
  };
  await mkdir(dataDir, { recursive: true });
  await writeFile(secretsPath(dataDir), JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  return secrets;
}
