/**
 * Generates docs/test-vectors.json, the worked example of the ledger format v1
 * (docs/ledger-format.md, DESIGN.md §3). Deterministic: a fixed Ed25519 seed
 * (Ed25519 signatures are deterministic), fixed events, fixed receive time.
 *
 *   npm run build && node dist/test/vectors/gen-test-vectors.js > docs/test-vectors.json
 *
 * test/unit/test-vectors.test.ts checks that the committed file equals this
 * output and recomputes every value in it with an independent implementation.
 */
import { createPublicKey } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { batchPayload, digestsOf, signBatch, BATCH_JWS_TYP } from '../../src/core/batch';
import { ed25519PrivateKeyFromSeed } from '../../src/core/checkpoint';
import { traceEventSchema, type TraceEvent } from '../../src/core/event';
import { toHex } from '../../src/core/encoding';
import { jcs } from '../../src/core/jcs';
import { rootFromLeaves } from '../../src/core/merkle';
import {
  batchId,
  buildRecord,
  eventDigest,
  genesisChainHash,
  leafHash,
  nextChainHash,
  recordJcs,
  type LedgerRecord,
} from '../../src/core/record';

/** RFC 8032 §7.1 TEST 1 secret key: its public key is published there too. */
export const PRODUCER_SEED_HEX = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
export const TENANT = 'acme';
export const RECEIVED_AT = '2026-11-25T10:00:01.500Z';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const ROOT_SPAN = '00f067aa0ba902b7';

/**
 * Four events of different types. The first leaves every optional field out
 * or null; the second carries non-ASCII text, escapes and numbers whose JCS
 * form differs from how they are usually written (1e21, 0.1, 1e-7).
 */
export const EVENTS: TraceEvent[] = [
  {
    id: '0193a5b0-7f1c-7cc3-8e4b-2a8f5c1d9e01',
    trace_id: TRACE_ID,
    span_id: ROOT_SPAN,
    parent_span_id: null,
    type: 'run.started',
    agent: 'support-agent',
    time: '2026-11-25T10:00:00.000Z',
  },
  {
    id: '0193a5b0-7f1c-7cc3-8e4b-2a8f5c1d9e02',
    trace_id: TRACE_ID,
    span_id: 'b7ad6b7169203331',
    parent_span_id: ROOT_SPAN,
    session_id: 'conv-7f3a',
    type: 'model.call',
    name: 'chat',
    agent: 'support-agent',
    time: '2026-11-25T11:00:00.250123+01:00',
    duration_ms: 812.5,
    status: 'ok',
    attributes: {
      model: 'gpt-4.1',
      prompt: 'Rückerstattung für Bestellung A-1009? 返金 😀 "quoted" back\\slash tab\tnewline\n€',
      temperature: 0.1,
      budget: 1e21,
      min_p: 1e-7,
      usage: { output_tokens: 85, input_tokens: 1200 },
      Zone: 'eu',
      étape: 2,
    },
  },
  {
    id: '0193a5b0-7f1c-7cc3-8e4b-2a8f5c1d9e03',
    trace_id: TRACE_ID,
    span_id: 'e457b5a2e4d86bd1',
    parent_span_id: ROOT_SPAN,
    session_id: 'conv-7f3a',
    type: 'approval.granted',
    name: 'refund_payment',
    agent: 'support-agent',
    time: '2026-11-25T10:00:00.900Z',
    status: 'ok',
    attributes: { tool: 'refund_payment', approver: 'dana@acme.example', role: 'manager', args: { order_id: 'A-1009' } },
  },
  {
    id: '0193a5b0-7f1c-7cc3-8e4b-2a8f5c1d9e04',
    trace_id: TRACE_ID,
    span_id: '53995c3f42cd8ad8',
    parent_span_id: ROOT_SPAN,
    session_id: 'conv-7f3a',
    type: 'tool.call',
    name: 'refund_payment',
    agent: 'support-agent',
    time: '2026-11-25T10:00:01.123Z',
    duration_ms: 120,
    status: 'ok',
    attributes: { args: { order_id: 'A-1009', amount: 250, currency: 'EUR' } },
  },
];

export interface VectorEntry {
  seq: number;
  event: TraceEvent;
  event_jcs: string;
  digest: string;
  record: LedgerRecord;
  record_jcs: string;
  leaf_hash: string;
  chain_hash: string;
}

export interface TestVectors {
  description: string;
  generator: string;
  tenant: string;
  producer: { alg: 'EdDSA'; kid: string; seed_hex: string; jwk: JWK; public_jwk: JWK };
  received_at: string;
  batch: {
    jws: string;
    protected_header: { alg: string; kid: string; typ: string };
    payload: string;
    id: string;
  };
  genesis_chain_hash: string;
  entries: VectorEntry[];
  merkle_roots: { tree_size: number; root_hash: string }[];
}

export async function buildTestVectors(): Promise<TestVectors> {
  for (const e of EVENTS) traceEventSchema.parse(e);

  const privateKey = ed25519PrivateKeyFromSeed(Buffer.from(PRODUCER_SEED_HEX, 'hex'));
  const jwk = privateKey.export({ format: 'jwk' });
  const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const kid = await calculateJwkThumbprint(publicJwk as JWK);

  const jws = await signBatch(EVENTS, privateKey, kid, 'EdDSA');
  const batch = batchId(jws);
  const digests = digestsOf(EVENTS);

  const genesis = genesisChainHash(TENANT);
  let chain = genesis;
  const leaves: Buffer[] = [];
  const entries: VectorEntry[] = EVENTS.map((event, i) => {
    const seq = i + 1;
    const eventJcs = jcs(event);
    const digest = eventDigest(eventJcs);
    if (digest !== digests[i]) throw new Error(`digest of event ${seq} differs from the signed one`);
    const record = buildRecord(TENANT, seq, event, RECEIVED_AT, kid, batch, digest);
    const text = recordJcs(record);
    const leaf = leafHash(text);
    chain = nextChainHash(chain, leaf);
    leaves.push(leaf);
    return {
      seq,
      event,
      event_jcs: eventJcs,
      digest,
      record,
      record_jcs: text,
      leaf_hash: toHex(leaf),
      chain_hash: toHex(chain),
    };
  });

  return {
    description:
      'Worked example of the agent-ledger ledger format v1 (docs/ledger-format.md): one signed batch of four events ' +
      'appended for one tenant at seq 1..4. Strings are exact; hashes are lowercase hex except digest and batch id (base64url, no padding).',
    generator: 'npm run build && node dist/test/vectors/gen-test-vectors.js > docs/test-vectors.json',
    tenant: TENANT,
    producer: { alg: 'EdDSA', kid, seed_hex: PRODUCER_SEED_HEX, jwk: jwk as JWK, public_jwk: publicJwk as JWK },
    received_at: RECEIVED_AT,
    batch: {
      jws,
      protected_header: { alg: 'EdDSA', kid, typ: BATCH_JWS_TYP },
      payload: batchPayload(digests),
      id: batch,
    },
    genesis_chain_hash: toHex(genesis),
    entries,
    merkle_roots: leaves.map((_, i) => ({ tree_size: i + 1, root_hash: toHex(rootFromLeaves(leaves.slice(0, i + 1))) })),
  };
}

export function renderTestVectors(v: TestVectors): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

if (require.main === module) {
  buildTestVectors().then(
    (v) => process.stdout.write(renderTestVectors(v)),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
