import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { signBatch, type BatchAlgorithm } from '../../src/core/batch';
import type { TraceEvent } from '../../src/core/event';
import { LedgerClient, newSpanId, newTraceId, type ProducerKey } from '../../src/client/ledger-client';

/** A producer key pair with its public JWK, as a test producer holds it. */
export interface TestProducer extends ProducerKey {
  publicJwk: JWK;
}

export async function producerKey(alg: BatchAlgorithm = 'EdDSA'): Promise<TestProducer> {
  const { publicKey, privateKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : 'ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { kid: await calculateJwkThumbprint(publicJwk), alg, privateKey, publicJwk };
}

let counter = 0;

/** A valid tool.call event; override any field. */
export function event(overrides: Partial<TraceEvent> = {}): TraceEvent {
  counter++;
  return {
    id: randomUUID(),
    trace_id: newTraceId(),
    span_id: newSpanId(),
    parent_span_id: null,
    session_id: 'conv-test',
    type: 'tool.call',
    name: 'refund_payment',
    agent: 'support-agent',
    time: new Date(Date.UTC(2026, 10, 25, 10, 0, 0, counter % 1000)).toISOString(),
    duration_ms: 120,
    status: 'ok',
    attributes: { args: { order_id: `A-${1000 + (counter % 9000)}`, amount: 250 } },
    ...overrides,
  };
}

export function events(n: number, overrides: Partial<TraceEvent> = {}): TraceEvent[] {
  return Array.from({ length: n }, () => event(overrides));
}

/** The request body of POST /v1/events. */
export async function signedBatch(evs: unknown[], key: TestProducer): Promise<{ events: unknown[]; signature: string }> {
  return { events: evs, signature: await signBatch(evs, key.privateKey, key.kid, key.alg) };
}

/** Registers the producer's public key through the API (needs an admin token). */
export async function registerKey(baseUrl: string, adminToken: string, key: TestProducer, producer = 'test-producer') {
  const client = new LedgerClient({ baseUrl, token: adminToken, maxAttempts: 1 });
  return client.request('POST', '/v1/keys', { producer, jwk: { ...key.publicJwk, kid: key.kid } });
}

export function client(baseUrl: string, token: string, key?: TestProducer): LedgerClient {
  return new LedgerClient({ baseUrl, token, key, maxAttempts: 1 });
}
