import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { ProducerKey } from '../client/ledger-client';
import type { BatchAlgorithm } from '../core/batch';

/**
 * Producer keys in the file format of `agent-ledger keygen`: the private JWK
 * with its `kid` (RFC 7638 thumbprint of the public half) and `alg`.
 */

export interface ProducerKeyPair {
  key: ProducerKey;
  /** The public JWK to register (`POST /v1/keys`), with its kid. */
  publicJwk: JWK;
  /** The private JWK as stored in the key file. */
  privateJwk: JWK;
}

export async function generateProducerKey(alg: BatchAlgorithm = 'EdDSA'): Promise<ProducerKeyPair> {
  const { privateKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : 'ES256', { extractable: true });
  const priv = await exportJWK(privateKey);
  const { d: _d, ...pub } = priv;
  const kid = await calculateJwkThumbprint(pub);
  return producerKeyFromJwk({ ...priv, kid, alg });
}

/** A key from a private JWK (as `keygen` writes it; kid and alg are derived when absent). */
export async function producerKeyFromJwk(jwk: JWK): Promise<ProducerKeyPair> {
  const alg = (jwk.alg ?? (jwk.kty === 'OKP' ? 'EdDSA' : 'ES256')) as BatchAlgorithm;
  const { d: _d, kid: _k, alg: _a, ...pub } = jwk;
  const kid = jwk.kid ?? (await calculateJwkThumbprint(pub));
  return {
    key: { kid, alg, privateKey: await importJWK(jwk, alg) },
    publicJwk: { ...pub, kid },
    privateJwk: { ...jwk, kid, alg },
  };
}

/** Reads a key file, or creates one (mode 0600) when it does not exist yet. `created` says which. */
export async function loadOrCreateProducerKey(file: string, alg: BatchAlgorithm = 'EdDSA'): Promise<ProducerKeyPair & { created: boolean }> {
  if (existsSync(file)) return { ...(await producerKeyFromJwk(JSON.parse(readFileSync(file, 'utf8')) as JWK)), created: false };
  const pair = await generateProducerKey(alg);
  writeFileSync(file, JSON.stringify(pair.privateJwk, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  return { ...pair, created: true };
}
