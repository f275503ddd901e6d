import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';

/** The ledger's own Ed25519 key: signs its entries, checkpoints and exports. */
export interface LedgerKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: JWK;
}

export async function loadLedgerKey(privateJwk: JWK): Promise<LedgerKey> {
  if (privateJwk.kty !== 'OKP' || privateJwk.crv !== 'Ed25519' || typeof privateJwk.d !== 'string') {
    throw new Error('LEDGER_SIGNING_KEY must be a private Ed25519 JWK (kty OKP, crv Ed25519, with d)');
  }
  const privateKey = createPrivateKey({ key: privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' });
  const publicKey = createPublicKey(privateKey);
  const { kty, crv, x } = privateJwk;
  const kid = await calculateJwkThumbprint({ kty, crv, x });
  return { kid, privateKey, publicKey, publicJwk: { kty, crv, x, kid, alg: 'EdDSA', use: 'sig' } };
}
