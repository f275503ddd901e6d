import { CompactSign, compactVerify, decodeProtectedHeader, type CryptoKey, type JWK, type KeyObject } from 'jose';
import { jcs } from './jcs';
import { eventDigest } from './record';

/**
 * The signed batch of DESIGN.md §2: one JWS over the JCS of
 * `{"digests": [b64u(H(JCS(event_i)))…]}`, in the order of the events.
 */

export const BATCH_JWS_TYP = 'trace-batch+jws';
export const BATCH_ALGORITHMS = ['EdDSA', 'ES256'] as const;
export type BatchAlgorithm = (typeof BATCH_ALGORITHMS)[number];

export type SigningKey = CryptoKey | KeyObject | JWK | Uint8Array;

/** JCS text of the batch payload. b64u digests need no escaping, so this is JCS by construction. */
export function batchPayload(digests: readonly string[]): string {
  return jcs({ digests });
}

export function digestsOf(events: readonly unknown[]): string[] {
  return events.map((e) => eventDigest(jcs(e)));
}

export async function signBatch(
  events: readonly unknown[],
  key: SigningKey,
  kid: string,
  alg: BatchAlgorithm,
): Promise<string> {
  return signDigests(digestsOf(events), key, kid, alg);
}

/** The batch JWS over digests already computed (the caller canonicalised the events). */
export async function signDigests(digests: readonly string[], key: SigningKey, kid: string, alg: BatchAlgorithm): Promise<string> {
  const payload = new TextEncoder().encode(batchPayload(digests));
  return new CompactSign(payload).setProtectedHeader({ alg, kid, typ: BATCH_JWS_TYP }).sign(key);
}

export interface BatchHeader {
  alg: string;
  kid: string;
  typ?: string;
}

/** The protected header, without verifying anything yet (to find the key). */
export function readBatchHeader(jws: string): BatchHeader {
  const h = decodeProtectedHeader(jws);
  if (typeof h.alg !== 'string' || typeof h.kid !== 'string') {
    throw new Error('the JWS protected header must carry alg and kid');
  }
  return { alg: h.alg, kid: h.kid, typ: typeof h.typ === 'string' ? h.typ : undefined };
}

/**
 * Verifies the JWS signature with `key` and returns the payload text. Checking
 * the payload against the events' digests is the caller's job (see
 * `compareDigests`), so it can name the first event that does not match.
 */
export async function verifyBatchSignature(
  jws: string,
  key: CryptoKey | KeyObject,
  alg: BatchAlgorithm,
): Promise<string> {
  const { payload } = await compactVerify(jws, key, { algorithms: [alg] });
  return new TextDecoder('utf-8', { fatal: true }).decode(payload);
}

/**
 * Compares a verified payload to the digests computed from the events.
 * Returns null when they match, or a description of the first difference.
 */
export function compareDigests(
  payloadText: string,
  digests: readonly string[],
): { index: number | null; reason: string } | null {
  if (payloadText === batchPayload(digests)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(payloadText);
  } catch {
    return { index: null, reason: 'the signed payload is not JSON' };
  }
  const signed = (parsed as { digests?: unknown }).digests;
  if (!Array.isArray(signed)) return { index: null, reason: 'the signed payload has no digests list' };
  if (signed.length !== digests.length) {
    return {
      index: null,
      reason: `the signature covers ${signed.length} digests but the batch has ${digests.length} events`,
    };
  }
  const i = digests.findIndex((d, k) => signed[k] !== d);
  if (i >= 0) return { index: i, reason: `event ${i} does not match the signed digest` };
  return { index: null, reason: 'the signed payload is not the canonical (RFC 8785) form of {"digests": [...]}' };
}
