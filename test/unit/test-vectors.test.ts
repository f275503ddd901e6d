import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, sign, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import canonicalize from 'canonicalize';
import { compactVerify, importJWK } from 'jose';
import { batchPayload, digestsOf, signBatch, verifyBatchSignature } from '../../src/core/batch';
import { ChainVerifier } from '../../src/core/chain-verifier';
import { toHex } from '../../src/core/encoding';
import { traceEventSchema, type TraceEvent } from '../../src/core/event';
import { jcs } from '../../src/core/jcs';
import { rootFromLeaves } from '../../src/core/merkle';
import { batchId, buildRecord, eventDigest, genesisChainHash, leafHash, nextChainHash, recordJcs } from '../../src/core/record';
import { buildTestVectors, renderTestVectors, type TestVectors } from '../vectors/gen-test-vectors';

const ROOT = process.env.TEST_ROOT ?? path.resolve(__dirname, '../../..');
const FILE = path.join(ROOT, 'docs', 'test-vectors.json');
const fileText = readFileSync(FILE, 'utf8');
const vectors = JSON.parse(fileText) as TestVectors;

// ---------------------------------------------------------------------------
// An independent verifier of the file, written from docs/ledger-format.md with
// node:crypto, the `canonicalize` package and jose only: nothing from src/.
// It returns every discrepancy it finds, so a test can also show it has teeth.
// ---------------------------------------------------------------------------

const H = (...parts: (Buffer | string)[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? Buffer.from(p, 'utf8') : p);
  return h.digest();
};
const b64u = (b: Buffer): string => b.toString('base64url');
const canon = (v: unknown): string => {
  const t = canonicalize(v);
  if (t === undefined) throw new TypeError('not JSON');
  return t;
};

/** RFC 8032 §7.1 TEST 1 public key of the published seed. */
const RFC8032_TEST1_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const RECORD_FIELDS = [
  'v', 'tenant', 'seq', 'id', 'trace_id', 'span_id', 'parent_span_id', 'session_id',
  'type', 'name', 'agent', 'time', 'received_at', 'kid', 'batch', 'digest',
];

/** MTH of RFC 9162 §2.1.1, straight from the definition. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return H('');
  if (leaves.length === 1) return leaves[0] as Buffer;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return H(Buffer.from([0x01]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

async function independentCheck(v: TestVectors): Promise<string[]> {
  const problems: string[] = [];
  const expect = (what: string, actual: unknown, expected: unknown) => {
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      problems.push(`${what}: file has ${JSON.stringify(expected)}, recomputed ${JSON.stringify(actual)}`);
    }
  };

  // The producer key: the private JWK reproduces the seed and the published public key.
  const { producer } = v;
  expect('producer.jwk.d', Buffer.from(producer.jwk.d ?? '', 'base64url').toString('hex'), producer.seed_hex);
  let privateKey: KeyObject | undefined;
  try {
    privateKey = createPrivateKey({ key: producer.jwk as JsonWebKey, format: 'jwk' });
  } catch (err) {
    problems.push(`producer.jwk is not a usable private key: ${String(err)}`);
  }
  const publicKey = createPublicKey({ key: producer.public_jwk as JsonWebKey, format: 'jwk' });
  if (privateKey) expect('producer.public_jwk.x', createPublicKey(privateKey).export({ format: 'jwk' }).x, producer.public_jwk.x);
  expect('producer key vs RFC 8032 TEST 1', Buffer.from(producer.public_jwk.x ?? '', 'base64url').toString('hex'), RFC8032_TEST1_PUBLIC);
  // RFC 7638: the required members in lexicographic order, no whitespace.
  const thumbprint = b64u(H(`{"crv":"Ed25519","kty":"OKP","x":"${producer.public_jwk.x}"}`));
  expect('producer.kid (RFC 7638 thumbprint)', thumbprint, producer.kid);

  // Each event: JCS text and digest.
  const digests = v.entries.map((e, i) => {
    expect(`entries[${i}].event_jcs`, canon(e.event), e.event_jcs);
    const digest = b64u(H(e.event_jcs));
    expect(`entries[${i}].digest`, digest, e.digest);
    return digest;
  });

  // The batch JWS: header, payload, signature (verified, and reproduced: Ed25519 is deterministic).
  const parts = v.batch.jws.split('.');
  if (parts.length !== 3) {
    problems.push('batch.jws is not a JWS compact serialization');
    return problems;
  }
  const [h64, p64, s64] = parts as [string, string, string];
  const header = JSON.parse(Buffer.from(h64, 'base64url').toString('utf8')) as Record<string, unknown>;
  expect('batch.protected_header', header, { alg: 'EdDSA', kid: producer.kid, typ: 'trace-batch+jws' });
  expect('batch.protected_header (file copy)', v.batch.protected_header, header);
  const payload = Buffer.from(p64, 'base64url').toString('utf8');
  expect('batch.payload', canon({ digests }), v.batch.payload);
  expect('JWS payload', payload, v.batch.payload);
  const signingInput = Buffer.from(`${h64}.${p64}`, 'ascii');
  const signature = Buffer.from(s64, 'base64url');
  if (!verify(null, signingInput, publicKey, signature)) problems.push('batch.jws: the Ed25519 signature does not verify (node:crypto)');
  if (privateKey) expect('batch.jws signature (re-signed)', b64u(sign(null, signingInput, privateKey)), s64);
  try {
    const jwk = await importJWK(producer.public_jwk, 'EdDSA');
    const verified = await compactVerify(v.batch.jws, jwk, { algorithms: ['EdDSA'] });
    expect('jose compactVerify payload', new TextDecoder().decode(verified.payload), v.batch.payload);
  } catch (err) {
    problems.push(`batch.jws: jose compactVerify refused it: ${String(err)}`);
  }
  const batch = b64u(H(v.batch.jws));
  expect('batch.id', batch, v.batch.id);

  // Records, leaf hashes, the hash chain, Merkle roots.
  let chain = H(`agent-ledger:v1:${v.tenant}`);
  expect('genesis_chain_hash', chain.toString('hex'), v.genesis_chain_hash);
  const leaves: Buffer[] = [];
  v.entries.forEach((e, i) => {
    const seq = i + 1;
    expect(`entries[${i}].seq`, e.seq, seq);
    const ev = e.event as Record<string, unknown>;
    const record: Record<string, unknown> = {
      v: 1,
      tenant: v.tenant,
      seq,
      id: ev.id,
      trace_id: ev.trace_id,
      span_id: ev.span_id,
      parent_span_id: ev.parent_span_id ?? null,
      session_id: ev.session_id ?? null,
      type: ev.type,
      name: ev.name ?? null,
      agent: ev.agent,
      time: ev.time,
      received_at: v.received_at,
      kid: producer.kid,
      batch,
      digest: digests[i],
    };
    expect(`entries[${i}].record`, record, e.record);
    expect(`entries[${i}].record fields`, Object.keys(e.record), RECORD_FIELDS);
    expect(`entries[${i}].record_jcs`, canon(record), e.record_jcs);
    const leaf = H(Buffer.from([0x00]), e.record_jcs);
    expect(`entries[${i}].leaf_hash`, leaf.toString('hex'), e.leaf_hash);
    chain = H(chain, leaf);
    expect(`entries[${i}].chain_hash`, chain.toString('hex'), e.chain_hash);
    leaves.push(leaf);
  });
  expect('merkle_roots', v.merkle_roots, leaves.map((_, n) => ({ tree_size: n + 1, root_hash: mth(leaves.slice(0, n + 1)).toString('hex') })));
  return problems;
}

const clone = (): TestVectors => JSON.parse(fileText) as TestVectors;

describe('docs/test-vectors.json', () => {
  test('has the shape the brief promises: four events of different types, seq 1..4, one batch', () => {
    assert.equal(vectors.tenant, 'acme');
    assert.deepEqual(vectors.entries.map((e) => e.seq), [1, 2, 3, 4]);
    assert.equal(new Set(vectors.entries.map((e) => e.event.type)).size, 4);
    assert.equal(vectors.merkle_roots.length, 4);
    const first = vectors.entries[0]!.event as Record<string, unknown>;
    assert.ok(!('session_id' in first) && !('name' in first), 'the first event leaves optional fields out');
    assert.equal(first.parent_span_id, null);
    assert.match(vectors.entries[1]!.event_jcs, /1e\+21/);
    assert.match(vectors.entries[1]!.event_jcs, /[^\x00-\x7f]/);
    for (const e of vectors.entries) assert.equal(traceEventSchema.safeParse(e.event).success, true, `event ${e.seq} is a valid event`);
  });

  test('an independent implementation (node:crypto, canonicalize, jose) recomputes every value', async () => {
    assert.deepEqual(await independentCheck(vectors), []);
  });

  test('the independent check notices edits to inputs and outputs', async () => {
    const edits: [string, (v: TestVectors) => void][] = [
      ['an attribute value', (v) => ((v.entries[1]!.event.attributes as Record<string, unknown>).temperature = 0.2)],
      ['received_at', (v) => (v.received_at = '2026-11-25T10:00:01.501Z')],
      ['the tenant', (v) => (v.tenant = 'acme2')],
      ['two entries swapped', (v) => v.entries.reverse()],
      ['a chain hash', (v) => (v.entries[2]!.chain_hash = v.entries[1]!.chain_hash)],
      ['a Merkle root', (v) => (v.merkle_roots[2]!.root_hash = v.merkle_roots[3]!.root_hash)],
      ['the JWS signature', (v) => (v.batch.jws = v.batch.jws.replace(/.$/, (c) => (c === 'A' ? 'Q' : 'A')))],
      ['the public key', (v) => (v.producer.public_jwk.x = v.producer.jwk.d)],
    ];
    for (const [what, edit] of edits) {
      const v = clone();
      edit(v);
      const problems = await independentCheck(v);
      assert.ok(problems.length > 0, `editing ${what} went unnoticed`);
    }
  });

  test('the generator reproduces the committed file byte for byte', async () => {
    assert.equal(renderTestVectors(await buildTestVectors()), fileText);
  });
});

describe('src/core reproduces docs/test-vectors.json', () => {
  const events = vectors.entries.map((e) => e.event as TraceEvent);

  test('event JCS, digests, batch payload and batch id', () => {
    vectors.entries.forEach((e, i) => {
      assert.equal(jcs(events[i]), e.event_jcs);
      assert.equal(eventDigest(e.event_jcs), e.digest);
    });
    assert.deepEqual(digestsOf(events), vectors.entries.map((e) => e.digest));
    assert.equal(batchPayload(digestsOf(events)), vectors.batch.payload);
    assert.equal(batchId(vectors.batch.jws), vectors.batch.id);
  });

  test('signBatch with the published key gives the same JWS; verifyBatchSignature accepts it', async () => {
    const privateKey = createPrivateKey({ key: vectors.producer.jwk as JsonWebKey, format: 'jwk' });
    assert.equal(await signBatch(events, privateKey, vectors.producer.kid, 'EdDSA'), vectors.batch.jws);
    const publicKey = createPublicKey({ key: vectors.producer.public_jwk as JsonWebKey, format: 'jwk' });
    assert.equal(await verifyBatchSignature(vectors.batch.jws, publicKey, 'EdDSA'), vectors.batch.payload);
  });

  test('records, leaf hashes, chain hashes and Merkle roots', () => {
    let chain = genesisChainHash(vectors.tenant);
    assert.equal(toHex(chain), vectors.genesis_chain_hash);
    const leaves: Buffer[] = [];
    vectors.entries.forEach((e, i) => {
      const record = buildRecord(vectors.tenant, e.seq, events[i]!, vectors.received_at, vectors.producer.kid, vectors.batch.id, e.digest);
      assert.deepEqual(record, e.record);
      assert.equal(recordJcs(record), e.record_jcs);
      assert.equal(jcs(record), e.record_jcs);
      const leaf = leafHash(e.record_jcs);
      assert.equal(toHex(leaf), e.leaf_hash);
      chain = nextChainHash(chain, leaf);
      assert.equal(toHex(chain), e.chain_hash);
      leaves.push(leaf);
      assert.equal(toHex(rootFromLeaves(leaves)), vectors.merkle_roots[i]!.root_hash);
    });
  });

  test('ChainVerifier accepts the entries with their bodies', () => {
    const verifier = new ChainVerifier(vectors.tenant);
    for (const e of vectors.entries) {
      const result = verifier.check({
        seq: e.seq,
        record: e.record_jcs,
        leaf_hash: Buffer.from(e.leaf_hash, 'hex'),
        chain_hash: Buffer.from(e.chain_hash, 'hex'),
        body: e.event_jcs,
      });
      assert.ok('record' in result, `seq ${e.seq}: ${'failure' in result ? result.failure.reason : ''}`);
    }
    assert.equal(verifier.nextSeq, 5);
  });
});
