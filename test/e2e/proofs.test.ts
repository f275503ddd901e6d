import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { verifyCheckpoint } from '../../src/core/checkpoint';
import { fromHex } from '../../src/core/encoding';
import { rootFromLeaves, verifyConsistency, verifyInclusion } from '../../src/core/merkle';
import { startTestApp, type TestApp } from '../support/app';
import { client, events, producerKey, registerKey, type TestProducer } from '../support/factories';
import { allEntries, assertProblem, call, head, type HttpResult } from '../support/http';

/**
 * GET /v1/ledger/proofs/inclusion and /consistency over real HTTP: every
 * proof the service assembles from its stored nodes verifies with the RFC 9162
 * verifier of src/core/merkle.ts against roots recomputed here from the leaf
 * hashes (and against signed checkpoint roots); tampered proofs and wrong
 * sizes do not; bad parameters are 400 problems naming the parameter.
 */

const A = 'acme';
const B = 'globex';

interface Inclusion {
  leaf_index: number;
  tree_size: number;
  leaf_hash: string;
  path: string[];
}

interface Consistency {
  from_size: number;
  to_size: number;
  path: string[];
}

describe('Merkle proofs', () => {
  let t: TestApp;
  const reader: Record<string, string> = {};
  let leaves: Buffer[] = [];
  let leavesB: Buffer[] = [];
  const roots: Buffer[] = [];

  async function send(tenant: string, key: TestProducer, sizes: number[]): Promise<void> {
    const writer = await t.token(tenant, 'events:write');
    const c = client(t.url, writer, key);
    for (const n of sizes) await c.send(events(n));
  }

  const inclusion = (tenant: string, q: string) => call<Inclusion>(t.url, 'GET', `/v1/ledger/proofs/inclusion?${q}`, { token: reader[tenant] });
  const consistency = (tenant: string, q: string) =>
    call<Consistency>(t.url, 'GET', `/v1/ledger/proofs/consistency?${q}`, { token: reader[tenant] });

  before(async () => {
    t = await startTestApp();
    for (const tenant of [A, B]) {
      reader[tenant] = await t.token(tenant, 'audit:read');
      const key = await producerKey();
      await registerKey(t.url, await t.token(tenant, 'admin'), key);
      // uneven batches, so the tree sizes at commits are not powers of two
      await send(tenant, key, tenant === A ? [1, 2, 5, 13, 31, 64, 97, 40, 17, 29] : [7, 12]);
    }
    leaves = (await allEntries(t.url, reader[A])).map((e) => fromHex(e.leaf_hash));
    leavesB = (await allEntries(t.url, reader[B])).map((e) => fromHex(e.leaf_hash));
    // root of every prefix, from the leaves alone
    for (let n = 0; n <= leaves.length; n++) roots.push(rootFromLeaves(leaves.slice(0, n)));
  });

  after(async () => {
    await t?.close();
  });

  test('the head root is the RFC 9162 root of the stored leaves', async () => {
    assert.ok(leaves.length >= 300, `only ${leaves.length} entries`);
    const h = await head(t.url, reader[A]);
    assert.equal(h.tree_size, leaves.length);
    assert.equal(h.root_hash, roots[leaves.length].toString('hex'));
  });

  test('every inclusion proof at the head verifies against the head root', async () => {
    const n = leaves.length;
    for (let seq = 1; seq <= n; seq++) {
      const res = await inclusion(A, `seq=${seq}`);
      assert.equal(res.status, 200, res.text);
      const p = res.body;
      assert.deepEqual([p.leaf_index, p.tree_size, p.leaf_hash], [seq - 1, n, leaves[seq - 1].toString('hex')]);
      assert.ok(p.path.every((h) => /^[0-9a-f]{64}$/.test(h)), 'path elements are lowercase hex');
      const path = p.path.map(fromHex);
      assert.ok(verifyInclusion(leaves[seq - 1], seq - 1, n, path, roots[n]), `seq ${seq}`);
      if (seq % 37 === 1 && path.length > 0) {
        // any flipped bit, wrong index, wrong size or wrong leaf fails
        const flipped = path.map((h) => Buffer.from(h));
        flipped[seq % flipped.length][seq % 32] ^= 1;
        assert.equal(verifyInclusion(leaves[seq - 1], seq - 1, n, flipped, roots[n]), false);
        assert.equal(verifyInclusion(leaves[seq - 1], seq % n, n, path, roots[n]), false);
        // a proof binds the tree it was made for: not the next one's root
        assert.equal(verifyInclusion(leaves[seq - 1], seq - 1, n, path, roots[n - 1]), false);
        assert.equal(verifyInclusion(leaves[seq % n], seq - 1, n, path, roots[n]), false);
      }
    }
  });

  test('inclusion proofs in older trees verify against those trees’ roots', async () => {
    const n = leaves.length;
    for (const size of [1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200, 255, 256, 257, n - 1]) {
      for (const seq of new Set([1, 2, Math.ceil(size / 2), size - 1, size].filter((s) => s >= 1 && s <= size))) {
        const res = await inclusion(A, `seq=${seq}&tree_size=${size}`);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.tree_size, size);
        const path = res.body.path.map(fromHex);
        assert.ok(verifyInclusion(leaves[seq - 1], seq - 1, size, path, roots[size]), `seq ${seq} in ${size}`);
        if (size < n) assert.equal(verifyInclusion(leaves[seq - 1], seq - 1, size, path, roots[size + 1]), false);
      }
    }
  });

  test('inclusion proofs verify against signed checkpoint roots', async () => {
    const key = t.config.ledgerKey.publicKey;
    const list = await call<{ checkpoints: { size: number; note: string }[] }>(t.url, 'GET', '/v1/ledger/checkpoints?limit=1000', {
      token: reader[A],
    });
    assert.equal(list.status, 200, list.text);
    const notes = list.body.checkpoints.map((c) => c.note);
    // the checkpointer cuts within a second of the last append: wait for the head's checkpoint
    for (let i = 0; i < 40; i++) {
      const cp = await call(t.url, 'GET', '/v1/ledger/checkpoint', { token: reader[A] });
      if (cp.status === 200 && cp.text.split('\n')[1] === String(leaves.length)) {
        notes.push(cp.text);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(notes.some((note) => note.split('\n')[1] === String(leaves.length)), 'no checkpoint of the head size');
    for (const note of notes) {
      const checkpoint = verifyCheckpoint(note, t.config.env.LEDGER_ORIGIN, key, { origin: `${t.config.env.LEDGER_ORIGIN}/${A}` });
      assert.deepEqual(checkpoint.rootHash, roots[checkpoint.size]);
      for (const seq of new Set([1, checkpoint.size, Math.ceil(checkpoint.size / 3)])) {
        const res = await inclusion(A, `seq=${seq}&tree_size=${checkpoint.size}`);
        assert.equal(res.status, 200, res.text);
        assert.ok(verifyInclusion(leaves[seq - 1], seq - 1, checkpoint.size, res.body.path.map(fromHex), checkpoint.rootHash));
      }
    }
  });

  test('consistency proofs between many size pairs verify, and fail for other roots', async () => {
    const n = leaves.length;
    const pairs: [number, number][] = [];
    for (let m = 1; m <= 40; m++) for (const to of [m, m + 1, 64, 65, n]) if (to <= n) pairs.push([m, to]);
    let x = 7;
    for (let i = 0; i < 150; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const a = 1 + (x % n);
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const b = 1 + (x % n);
      pairs.push([Math.min(a, b), Math.max(a, b)]);
    }
    for (const [m, to] of pairs) {
      const res = await consistency(A, `from_size=${m}&to_size=${to}`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual([res.body.from_size, res.body.to_size], [m, to]);
      const path = res.body.path.map(fromHex);
      assert.ok(verifyConsistency(m, to, path, roots[m], roots[to]), `${m} -> ${to}`);
      if (m < to) {
        assert.equal(verifyConsistency(m, to, path, roots[m - 1], roots[to]), false, `${m} -> ${to} with another old root`);
        assert.equal(verifyConsistency(m, to, path, roots[m], roots[to - 1]), false, `${m} -> ${to} with another new root`);
        const flipped = path.map((h) => Buffer.from(h));
        flipped[0][0] ^= 0x80;
        assert.equal(verifyConsistency(m, to, flipped, roots[m], roots[to]), false);
      } else {
        assert.deepEqual(path, []);
      }
    }
    // to_size defaults to the head
    const res = await consistency(A, 'from_size=10');
    assert.equal(res.body.to_size, n);
    assert.ok(verifyConsistency(10, n, res.body.path.map(fromHex), roots[10], roots[n]));
  });

  test('property: any proof verifies; a flipped bit, another size or another root fails (fast-check)', async () => {
    const n = leaves.length;
    const flip = (path: Buffer[], at: number, bit: number) => {
      const out = path.map((h) => Buffer.from(h));
      out[at % out.length][Math.floor(bit / 8) % 32] ^= 1 << (bit % 8);
      return out;
    };
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: n }), fc.integer({ min: 1, max: n }), fc.nat(), fc.nat(255), async (a, b, at, bit) => {
        const [seq, size] = [Math.min(a, b), Math.max(a, b)];
        const inc = await inclusion(A, `seq=${seq}&tree_size=${size}`);
        const path = inc.body.path.map(fromHex);
        assert.ok(verifyInclusion(leaves[seq - 1], seq - 1, size, path, roots[size]));
        if (path.length) assert.equal(verifyInclusion(leaves[seq - 1], seq - 1, size, flip(path, at, bit), roots[size]), false);
        const other = size === n ? size - 1 : size + 1;
        if (other >= seq) assert.equal(verifyInclusion(leaves[seq - 1], seq - 1, other, path, roots[other]), false);

        const con = await consistency(A, `from_size=${seq}&to_size=${size}`);
        const cpath = con.body.path.map(fromHex);
        assert.ok(verifyConsistency(seq, size, cpath, roots[seq], roots[size]));
        if (cpath.length) assert.equal(verifyConsistency(seq, size, flip(cpath, at, bit), roots[seq], roots[size]), false);
        if (seq < size) {
          assert.equal(verifyConsistency(seq, size, cpath, roots[seq - 1], roots[size]), false);
          assert.equal(verifyConsistency(seq + 1, size, cpath, roots[seq + 1], roots[size]), false);
        }
      }),
      { numRuns: 60, seed: 20261125 },
    );
  });

  test('out-of-range and malformed parameters are 400 problems naming the parameter', async () => {
    const n = leaves.length;
    const cases: [(tenant: string, q: string) => Promise<HttpResult>, string, string, string][] = [
      [inclusion, 'seq=0', 'validation_failed', 'query.seq'],
      [inclusion, 'seq=-1', 'validation_failed', 'query.seq'],
      [inclusion, 'seq=1.5', 'validation_failed', 'query.seq'],
      [inclusion, 'seq=abc', 'validation_failed', 'query.seq'],
      [inclusion, '', 'validation_failed', 'query.seq'],
      [inclusion, 'seq=1&tree_size=0', 'validation_failed', 'query.tree_size'],
      [inclusion, 'seq=1&tree_size=-3', 'validation_failed', 'query.tree_size'],
      [inclusion, 'seq=1&tree_size=x', 'validation_failed', 'query.tree_size'],
      [inclusion, `seq=1&tree_size=${n + 1}`, 'bad_range', 'query.tree_size'],
      [inclusion, `seq=${n + 1}`, 'bad_range', 'query.seq'],
      [inclusion, 'seq=11&tree_size=10', 'bad_range', 'query.seq'],
      [inclusion, 'seq=1&size=3', 'validation_failed', 'query.size'],
      [consistency, 'from_size=0&to_size=5', 'validation_failed', 'query.from_size'],
      [consistency, 'from_size=-2&to_size=5', 'validation_failed', 'query.from_size'],
      [consistency, 'from_size=2.5&to_size=5', 'validation_failed', 'query.from_size'],
      [consistency, 'to_size=5', 'validation_failed', 'query.from_size'],
      [consistency, 'from_size=1&to_size=0', 'validation_failed', 'query.to_size'],
      [consistency, 'from_size=6&to_size=5', 'bad_range', 'query.from_size'],
      [consistency, `from_size=1&to_size=${n + 1}`, 'bad_range', 'query.to_size'],
      [consistency, `from_size=${n + 1}`, 'bad_range', 'query.from_size'],
    ];
    for (const [fn, q, code, field] of cases) {
      const p = assertProblem(await fn(A, q), 400, code, [field]);
      assert.ok(p.detail.includes(field.replace('query.', '')), `${q}: ${p.detail}`);
    }
  });

  test('scopes: a token is needed, and audit:read', async () => {
    assertProblem(await call(t.url, 'GET', '/v1/ledger/proofs/inclusion?seq=1'), 401, 'unauthenticated');
    const writer = await t.token(A, 'events:write');
    assertProblem(await call(t.url, 'GET', '/v1/ledger/proofs/inclusion?seq=1', { token: writer }), 403, 'forbidden');
    assertProblem(await call(t.url, 'GET', '/v1/ledger/proofs/consistency?from_size=1', { token: writer }), 403, 'forbidden');
  });

  test('another tenant sees only its own tree', async () => {
    const nB = leavesB.length;
    assert.equal(nB, 20, '19 events and the key registration');
    const rootB = rootFromLeaves(leavesB);
    for (let seq = 1; seq <= nB; seq++) {
      const res = await inclusion(B, `seq=${seq}`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.leaf_hash, leavesB[seq - 1].toString('hex'));
      assert.ok(verifyInclusion(leavesB[seq - 1], seq - 1, nB, res.body.path.map(fromHex), rootB));
    }
    // A's sizes are beyond B's head: refused, never answered from A's tree
    assertProblem(await inclusion(B, `seq=${nB + 1}`), 400, 'bad_range', ['query.seq']);
    assertProblem(await inclusion(B, `seq=1&tree_size=${leaves.length}`), 400, 'bad_range', ['query.tree_size']);
    assertProblem(await consistency(B, `from_size=1&to_size=${leaves.length}`), 400, 'bad_range', ['query.to_size']);
    const c = await consistency(B, `from_size=7&to_size=${nB}`);
    assert.ok(verifyConsistency(7, nB, c.body.path.map(fromHex), rootFromLeaves(leavesB.slice(0, 7)), rootB));
    // an empty ledger has no proofs
    const empty = await t.token('initech', 'audit:read');
    assertProblem(await call(t.url, 'GET', '/v1/ledger/proofs/inclusion?seq=1', { token: empty }), 400, 'bad_range', ['query.seq']);
  });
});
