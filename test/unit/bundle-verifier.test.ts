import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { KeyObject } from 'node:crypto';
import fc from 'fast-check';
import type { JWK } from 'jose';
import { bodyDigest, BundleWriter, bundleText, entryJcs, type EvidenceBundle } from '../../src/core/bundle';
import { BundleFileError, verifyBundleFile, type BundleFileResult } from '../../src/core/bundle-file';
import { InclusionVerifier, verifyBundle as verifyInMemory, type BundleCheck, type BundleResult } from '../../src/core/bundle-verifier';
import { jcs } from '../../src/core/jcs';
import { assembleInclusionProof, rootFromLeaves, verifyInclusion } from '../../src/core/merkle';
import { signBatch } from '../../src/core/batch';
import { leafHash } from '../../src/core/record';
import { event, producerKey, type TestProducer } from '../support/factories';
import { writeBigBundle } from '../support/big-bundle';
import { MemoryLedger } from '../support/memory-ledger';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const OTHER_TRACE = '0af7651916cd43dd8448eb211c80319c';

const clone = (b: EvidenceBundle): EvidenceBundle => JSON.parse(JSON.stringify(b)) as EvidenceBundle;

const fileDir = mkdtempSync(join(tmpdir(), 'bundle-file-'));
process.on('exit', () => rmSync(fileDir, { recursive: true, force: true }));

/**
 * The bundle as files a verifier may be given: the service's line-per-item
 * layout (entries before the head: two passes), re-serialised with other
 * whitespace, and with the head before the entries (one pass), the contents
 * digest before or after them.
 */
function serialisations(b: unknown): [name: string, text: string, passes: 1 | 2][] {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return [['as JSON', JSON.stringify(b), 2]];
  const out: [string, string, 1 | 2][] = [];
  try {
    out.push(['service layout', bundleText(b as EvidenceBundle), 2]);
  } catch {
    // not writable by the service's writer (malformed on purpose): the other forms still are
  }
  out.push(['pretty-printed', JSON.stringify(b, null, 2).replace(/\n/g, '\r\n'), 2]);
  const { entries, contents_digest, ...head } = b as Record<string, unknown>;
  out.push(['head first, tab-indented', JSON.stringify({ ...head, contents_digest, entries }, null, '\t'), 1]);
  out.push(['head first, contents digest last', JSON.stringify({ ...head, entries, contents_digest }), 1]);
  return out;
}

/**
 * verifyBundle, and the streaming file verifier (what the CLI runs) on each
 * serialisation of the same bundle: the same verdict, failures (in order),
 * erasures and summary. A bundle the in-memory verifier refuses on its
 * format may instead be refused by the file reader as a whole.
 */
async function verifyBundle(b: unknown, key: JWK | KeyObject): Promise<BundleResult> {
  const r = await verifyInMemory(b, key);
  const formatOnly = r.failures.length > 0 && r.failures.every((f) => f.check === 'format');
  for (const [name, text, passes] of serialisations(b)) {
    const file = join(fileDir, 'bundle.json');
    writeFileSync(file, text);
    let f: BundleFileResult;
    try {
      f = await verifyBundleFile(file, key);
    } catch (err) {
      assert.ok(err instanceof BundleFileError && formatOnly, `${name}: ${(err as Error).message}`);
      continue;
    }
    if (formatOnly) {
      assert.ok(!f.ok && f.failures.every((x) => x.check === 'format'), `${name}: ${JSON.stringify(f.failures)}`);
      continue;
    }
    const { passes: fp, ...same } = f;
    if (name.endsWith('contents digest last')) {
      // the manifest signature can only be checked after the entries: the same failures, that one later
      const sorted = (x: BundleResult) => ({ ...x, failures: [...x.failures].sort((a, c) => JSON.stringify(a).localeCompare(JSON.stringify(c))) });
      assert.deepEqual(sorted(same), sorted(r), `${name}: the file verifier disagrees`);
    } else assert.deepEqual(same, r, `${name}: the file verifier disagrees`);
    assert.equal(fp, passes, `${name}: passes over the file`);
  }
  return r;
}

/** Asserts the result failed, with (at least) this check on this entry (undefined: on the bundle as a whole). */
function assertFails(r: BundleResult, check: BundleCheck, entry?: number): void {
  assert.equal(r.ok, false, 'the tampered bundle must not verify');
  const hit = r.failures.some((f) => f.check === check && f.entry === entry);
  assert.ok(hit, `expected a ${check} failure on ${entry === undefined ? 'the bundle' : `entry ${entry}`}; got ${JSON.stringify(r.failures)}`);
}

describe('evidence bundle verifier', () => {
  let ledger: MemoryLedger;
  let a: TestProducer;
  let b: TestProducer;
  let bundle: EvidenceBundle;
  const traceSeqs: number[] = [];

  before(async () => {
    ledger = await MemoryLedger.create('acme');
    a = await producerKey('EdDSA');
    b = await producerKey('ES256');
    await ledger.register(a, 'runtime-a'); // seq 1
    await ledger.register(b, 'runtime-b'); // seq 2
    traceSeqs.push(...(await ledger.append([event({ trace_id: TRACE, type: 'run.started' }), event({ trace_id: TRACE }), event({ trace_id: TRACE, name: 'search_kb' })], a))); // 3-5
    await ledger.append([event({ trace_id: OTHER_TRACE }), event({ trace_id: OTHER_TRACE })], b); // 6-7
    traceSeqs.push(...(await ledger.append([event({ trace_id: TRACE, type: 'approval.granted' }), event({ trace_id: TRACE, type: 'run.completed' })], b))); // 8-9
    await ledger.append([event({ trace_id: OTHER_TRACE, session_id: 'conv-other' })], a); // 10
    bundle = await ledger.bundle({ trace_id: TRACE }, { exportedBy: 'alice' });
  });

  test('an untouched bundle verifies, with its summary', async () => {
    const r = await verifyBundle(bundle, ledger.ledgerKey.publicJwk);
    assert.deepEqual(r.failures, []);
    assert.equal(r.ok, true);
    assert.deepEqual(bundle.entries.map((e) => e.seq), traceSeqs);
    assert.equal(r.summary.entries, 5);
    assert.equal(r.summary.traces, 1);
    assert.equal(r.summary.tenant, 'acme');
    assert.equal(r.summary.checkpointSize, 10);
    assert.equal(r.summary.exportedBy, 'alice');
    const times = ledger.entries.filter((e) => traceSeqs.includes(e.seq)).map((e) => e.parsed.time).sort();
    assert.equal(r.summary.from, times[0]);
    assert.equal(r.summary.to, times[times.length - 1]);
    assert.deepEqual(r.erased, []);
    assert.deepEqual(bundle.producer_keys.map((k) => k.registration.seq).sort(), [1, 2]);
    // the KeyObject form of the ledger key works as well as the JWK
    assert.equal((await verifyBundle(bundle, ledger.ledgerKey.publicKey)).ok, true);
  });

  test('the line-per-item text form is the same JSON', () => {
    const text = bundleText(bundle);
    assert.deepEqual(JSON.parse(text), bundle);
    const lines = text.split('\n');
    for (const e of bundle.entries) assert.ok(lines.includes(jcs(e) + ',') || lines.includes(jcs(e)), `entry ${e.seq} is on a line of its own`);
  });

  test('entryJcs is the RFC 8785 form of an entry item', () => {
    for (const e of [...bundle.entries, { ...bundle.entries[0], body: null }, { ...bundle.entries[0], record: '"\u2028\ud83d\ude00\u0007"' }]) {
      assert.equal(entryJcs(e), jcs(e));
    }
  });

  test("BundleWriter.entryJson (the export's hot path) writes the same item and contents digest as entry()", () => {
    const entries = [...bundle.entries, { ...bundle.entries[0], body: null }, { ...bundle.entries[1], record: '"\u2028\ud83d\ude00\u0007"' }];
    const a = new BundleWriter();
    const b = new BundleWriter();
    let textA = a.start(bundle.checkpoint);
    let textB = b.start(bundle.checkpoint);
    for (const e of entries) {
      textA += a.entry(e);
      const bodyJson = e.body === null ? 'null' : JSON.stringify(e.body);
      textB += b.entryJson(e.seq, e.leaf_hash, JSON.stringify(e.record), bodyJson, e.body === null ? null : bodyDigest(e.body), `[${e.inclusion_proof.map((h) => `"${h}"`).join(',')}]`);
    }
    const closedA = a.close();
    const closedB = b.close();
    assert.equal(textB + closedB.text, textA + closedA.text);
    assert.equal(closedB.contentsDigest, closedA.contentsDigest);
    assert.equal(b.count, entries.length);
  });

  test('agent and time-range and session bundles verify, and only hold matching entries', async () => {
    const byAgent = await ledger.bundle({ agent: 'support-agent', from: '2000-01-01T00:00:00.000Z', to: '2100-01-01T00:00:00.000Z' });
    assert.equal(byAgent.entries.length, 8);
    assert.equal((await verifyBundle(byAgent, ledger.ledgerKey.publicJwk)).ok, true);
    const bySession = await ledger.bundle({ session_id: 'conv-other' });
    assert.deepEqual(bySession.entries.map((e) => e.seq), [10]);
    assert.equal((await verifyBundle(bySession, ledger.ledgerKey.publicJwk)).ok, true);
    const empty = await ledger.bundle({ agent: 'nobody' });
    const r = await verifyBundle(empty, ledger.ledgerKey.publicJwk);
    assert.equal(r.ok, true, JSON.stringify(r.failures));
    assert.equal(r.summary.entries, 0);
    assert.equal(r.summary.from, null);
  });

  test('an erased body is reported as erased, not as a failure', async () => {
    const erased = await ledger.bundle({ trace_id: TRACE }, { erase: [4] });
    const r = await verifyBundle(erased, ledger.ledgerKey.publicJwk);
    assert.equal(r.ok, true, JSON.stringify(r.failures));
    const digest = (JSON.parse(erased.entries[1].record) as { digest: string }).digest;
    assert.deepEqual(r.erased, [{ entry: 4, digest, message: `body erased, digest ${digest}` }]);
  });

  test('a body stripped after export (made to look erased): fails (contents digest)', async () => {
    const t = clone(bundle);
    t.entries[1].body = null;
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'contents_digest');
    assert.deepEqual(r.erased.map((e) => e.entry), [4]);
  });

  test('a body byte changed: fails on that entry (body)', async () => {
    const t = clone(bundle);
    t.entries[2].body = t.entries[2].body!.replace('"amount":250', '"amount":251');
    assert.notEqual(t.entries[2].body, bundle.entries[2].body);
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'body', 5);
    assertFails(r, 'contents_digest');
  });

  test('a forger holding the ledger key still cannot change a body: the digest chain catches it', async () => {
    const t = clone(bundle);
    t.entries[0].body = t.entries[0].body!.replace('support-agent', 'support-agenT');
    await ledger.resign(t);
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assert.deepEqual(r.failures.map((f) => [f.entry, f.check]), [[3, 'body']]);
  });

  test('a record field changed: fails on that entry (leaf hash, inclusion)', async () => {
    const t = clone(bundle);
    t.entries[1].record = t.entries[1].record.replace('"agent":"support-agent"', '"agent":"billing-agent"');
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'leaf_hash', 4);
    assertFails(r, 'inclusion', 4);
    // with a recomputed leaf hash, the inclusion proof still fails
    t.entries[1].leaf_hash = leafHash(t.entries[1].record).toString('hex');
    assertFails(await verifyBundle(t, ledger.ledgerKey.publicJwk), 'inclusion', 4);
  });

  test('a proof element changed: fails on that entry (inclusion)', async () => {
    for (const i of [0, 3]) {
      const t = clone(bundle);
      const p = t.entries[i].inclusion_proof;
      p[1] = (p[1][0] === '0' ? '1' : '0') + p[1].slice(1);
      const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
      assertFails(r, 'inclusion', bundle.entries[i].seq);
      assert.ok(!r.failures.some((f) => f.check === 'inclusion' && f.entry !== bundle.entries[i].seq), JSON.stringify(r.failures));
    }
  });

  test('a batch signature changed: fails on the entries of that batch', async () => {
    const t = clone(bundle);
    const i = t.batches.findIndex((x) => x.batch === (JSON.parse(t.entries[3].record) as { batch: string }).batch);
    const jws = t.batches[i].jws;
    const sig = jws.slice(jws.lastIndexOf('.') + 1);
    const flipped = Buffer.from(sig, 'base64url');
    flipped[10] ^= 1;
    t.batches[i].jws = jws.slice(0, jws.lastIndexOf('.') + 1) + flipped.toString('base64url');
    // keep the id so only the signature is wrong
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'batch', undefined); // the JWS no longer hashes to its id
    assertFails(r, 'batch', 8);
    assertFails(r, 'batch', 9);
    assert.ok(!r.failures.some((f) => f.entry === 3), 'entries of other batches still verify');
  });

  test("a batch whose JWS was re-signed by another key: fails the batch signature of its entries", async () => {
    const t = clone(bundle);
    const rogue = await producerKey('ES256');
    // the same events, signed by a key that was never registered, under b's kid
    const evs = ledger.entries.filter((e) => e.seq === 8 || e.seq === 9).map((e) => JSON.parse(e.body!) as never);
    const forged = await signBatch(evs, rogue.privateKey, b.kid, 'ES256');
    const id = (JSON.parse(t.entries[3].record) as { batch: string }).batch;
    const i = t.batches.findIndex((x) => x.batch === id);
    t.batches[i].jws = forged;
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'batch', 8);
  });

  test('the manifest signature changed: fails (signature)', async () => {
    const t = clone(bundle);
    const parts = t.signature.split('.');
    const sig = Buffer.from(parts[2], 'base64url');
    sig[0] ^= 0x80;
    t.signature = `${parts[0]}.${parts[1]}.${sig.toString('base64url')}`;
    assertFails(await verifyBundle(t, ledger.ledgerKey.publicJwk), 'signature');
  });

  test('the manifest count changed: fails (count, signature)', async () => {
    const t = clone(bundle);
    t.manifest.count = 4;
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'count');
    assertFails(r, 'signature');
  });

  test('a removed entry: fails (contents digest, count)', async () => {
    const t = clone(bundle);
    t.entries.splice(2, 1);
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'contents_digest');
    assertFails(r, 'count');
  });

  test('an entry from another tenant (same ledger key): fails on that entry', async () => {
    const globex = new MemoryLedger('globex', ledger.ledgerKey);
    await globex.register(a);
    await globex.append([event({ trace_id: TRACE })], a);
    const foreign = (await globex.bundle({ trace_id: TRACE })).entries[0];
    const t = clone(bundle);
    t.entries.push(foreign);
    t.entries.sort((x, y) => x.seq - y.seq);
    t.manifest.count = t.entries.length;
    await ledger.resign(t); // even re-signed by the ledger key
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'tenant', foreign.seq);
    assertFails(r, 'inclusion', foreign.seq);
  });

  test('a producer key swapped for another: fails on the key and on the entries it signed', async () => {
    const t = clone(bundle);
    const rogue = await producerKey('EdDSA');
    const k = t.producer_keys.find((x) => x.kid === a.kid)!;
    const { kty, crv, x } = rogue.publicJwk;
    k.jwk = { kty, crv, x };
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'producer_key', 1);
    for (const seq of [3, 4, 5]) assertFails(r, 'producer_key', seq);
    assert.ok(!r.failures.some((f) => f.entry === 8 || f.entry === 9), 'entries signed by the other producer still verify');

    // swapping the registration body as well breaks the registration entry itself
    const t2 = clone(bundle);
    const k2 = t2.producer_keys.find((x) => x.kid === a.kid)!;
    k2.jwk = { kty, crv, x };
    k2.registration.body = k2.registration.body!.replace(a.publicJwk.x!, x!);
    assertFails(await verifyBundle(t2, ledger.ledgerKey.publicJwk), 'body', 1);
  });

  test('a missing producer key: fails on the entries it signed', async () => {
    const t = clone(bundle);
    t.producer_keys = t.producer_keys.filter((k) => k.kid !== b.kid);
    const r = await verifyBundle(t, ledger.ledgerKey.publicJwk);
    assertFails(r, 'producer_key', 8);
    assertFails(r, 'producer_key', 9);
  });

  test('another ledger key: the checkpoint and the manifest signature fail', async () => {
    const other = await MemoryLedger.create('acme');
    const r = await verifyBundle(bundle, other.ledgerKey.publicJwk);
    assertFails(r, 'checkpoint');
    assertFails(r, 'signature');
  });

  test('a checkpoint of another size: fails (checkpoint)', async () => {
    const t = clone(bundle);
    t.checkpoint = ledger.checkpoint(9);
    assertFails(await verifyBundle(t, ledger.ledgerKey.publicJwk), 'checkpoint');
  });

  test('an entry outside the filter, even re-signed: fails (filter)', async () => {
    const t = clone(bundle);
    const outsider = (await ledger.bundle({ session_id: 'conv-other' })).entries[0];
    t.entries.push(outsider);
    t.manifest.count = t.entries.length;
    await ledger.resign(t);
    assertFails(await verifyBundle(t, ledger.ledgerKey.publicJwk), 'filter', 10);
  });

  test('malformed input: a format failure, never an exception', async () => {
    for (const bad of [null, [], {}, { ...bundle, entries: 'x' }, { ...bundle, entries: [{ seq: 1 }] }, { ...bundle, manifest: { ...bundle.manifest, filter: {} } }]) {
      const r = await verifyBundle(bad, ledger.ledgerKey.publicJwk);
      assert.equal(r.ok, false);
      assert.ok(r.failures.length > 0 && r.failures.every((f) => f.check === 'format'), JSON.stringify(r.failures));
    }
  });

  test('InclusionVerifier agrees with RFC 9162 verification, in and out of order, and refuses flipped bits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.array(fc.nat(), { minLength: 1, maxLength: 20 }), fc.nat(), (size, picks, flip) => {
        const l = Array.from({ length: size }, (_, i) => leafHash(`leaf ${i}`));
        const root = rootFromLeaves(l);
        const v = new InclusionVerifier(size, root);
        const lookup = (r: { level: number; index: number }) => rootFromLeaves(l.slice(r.index * 2 ** r.level, (r.index + 1) * 2 ** r.level));
        for (const pick of picks) {
          const i = pick % size;
          const proof = assembleInclusionProof(i, size, lookup);
          assert.equal(v.verify(l[i], i, proof), verifyInclusion(l[i], i, size, proof, root));
          assert.equal(v.verify(l[i], i, proof), true);
          if (proof.length) {
            const bad = proof.map((p) => Buffer.from(p));
            bad[flip % bad.length][flip % 32] ^= 1;
            assert.equal(v.verify(l[i], i, bad), false);
          }
          assert.equal(v.verify(l[(i + 1) % size], i, proof), size === 1);
        }
      }),
      { numRuns: 200 },
    );
  });

  test('InclusionVerifier refuses any changed proof element right after verifying another leaf (bytes or hex)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 70 }), fc.nat(), fc.nat(), fc.nat(), fc.boolean(), (size, pa, pb, flip, hex) => {
        const l = Array.from({ length: size }, (_, i) => leafHash(`leaf ${i}`));
        const root = rootFromLeaves(l);
        const lookup = (r: { level: number; index: number }) => rootFromLeaves(l.slice(r.index * 2 ** r.level, (r.index + 1) * 2 ** r.level));
        const [a, b] = [pa % size, pb % size];
        const form = (ps: Buffer[]) => (hex ? ps.map((x) => x.toString('hex')) : ps);
        const proofB = assembleInclusionProof(b, size, lookup);
        if (!proofB.length) return;
        for (let at = 0; at < proofB.length; at++) {
          const v = new InclusionVerifier(size, root);
          assert.equal(v.verify(hex ? l[a].toString('hex') : l[a], a, form(assembleInclusionProof(a, size, lookup))), true);
          const bad = proofB.map((x) => Buffer.from(x));
          bad[at][flip % 32] ^= 1 << (flip % 8);
          assert.equal(v.verify(hex ? l[b].toString('hex') : l[b], b, form(bad)), false, `element ${at} of ${b}'s proof changed, after ${a}`);
          assert.equal(v.verify(hex ? l[b].toString('hex') : l[b], b, form(proofB)), true);
        }
      }),
      { numRuns: 300 },
    );
  });

  describe('CLI: agent-ledger verify', () => {
    const cli = resolve(__dirname, '..', '..', 'src', 'cli', 'agent-ledger.js');
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'bundle-'));
      writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [ledger.ledgerKey.publicJwk] }));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));
    const run = (file: string) => spawnSync(process.execPath, [cli, 'verify', file, '--key', join(dir, 'jwks.json')], { encoding: 'utf8' });

    test('exit 0 and a summary for a good bundle', () => {
      writeFileSync(join(dir, 'good.json'), bundleText(bundle));
      const r = run(join(dir, 'good.json'));
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /entries:\s+5/);
      assert.match(r.stdout, /traces:\s+1/);
      assert.match(r.stdout, /tree size 10/);
      assert.match(r.stdout, /^OK/m);
    });

    test('a re-serialised bundle (pretty-printed, CRLF, head first) verifies: exit 0', () => {
      const { entries, ...head } = bundle;
      for (const text of [JSON.stringify(bundle, null, 2).replace(/\n/g, '\r\n'), JSON.stringify({ ...head, entries }, null, '\t')]) {
        writeFileSync(join(dir, 'pretty.json'), text);
        const r = run(join(dir, 'pretty.json'));
        assert.equal(r.status, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /entries:\s+5/);
        assert.match(r.stdout, /^OK/m);
      }
    });

    test('a truncated file fails cleanly: exit 1 and what is wrong, nothing verified', () => {
      const text = bundleText(bundle);
      const cuts = [text.indexOf('"entries"') + 100, text.indexOf('"batches"') + 50, text.indexOf('"manifest"'), text.length - 3];
      for (const cut of cuts) {
        writeFileSync(join(dir, 'cut.json'), text.slice(0, cut));
        const r = run(join(dir, 'cut.json'));
        assert.equal(r.status, 1, r.stdout + r.stderr);
        assert.match(r.stdout, /^FAILED: .*cut\.json is not a readable JSON file \(.*ends .*truncated\?/m, `cut at ${cut}`);
        assert.doesNotMatch(r.stdout, /^OK/m);
        assert.equal(r.stderr, '');
      }
    });

    test('malformed JSON fails cleanly: exit 1 naming where', () => {
      const text = bundleText(bundle);
      const cases: [string, RegExp][] = [
        [text.replace(`"seq":${bundle.entries[1].seq}}`, `"seq":${bundle.entries[1].seq},}`), /entries\[1\] \(at byte \d+\) is not valid JSON/],
        [text.replace('"batches":[', '"batches":[}'), /expected a value in "batches"/],
        [text.replace('"manifest":', '"manifest"'), /expected ":" after "manifest"/],
        [text.replace('"contents_digest"', '"signature"'), /the member "signature" appears twice/],
        [`${text}{}`, /expected nothing after the top-level object/],
      ];
      for (const [bad, message] of cases) {
        assert.notEqual(bad, text);
        writeFileSync(join(dir, 'malformed.json'), bad);
        const r = run(join(dir, 'malformed.json'));
        assert.equal(r.status, 1, r.stdout + r.stderr);
        assert.match(r.stdout, /^FAILED: .*malformed\.json is not a readable JSON file/m);
        assert.match(r.stdout, message);
        assert.equal(r.stderr, '');
      }
      const missing = run(join(dir, 'no-such-file.json'));
      assert.equal(missing.status, 1);
      assert.match(missing.stdout, /^FAILED: .*no-such-file\.json is not a readable JSON file \(ENOENT/m);
    });

    test('a big bundle is verified in bounded memory (a heap too small to hold the file parsed)', async () => {
      // 30k entries, ~70 MB: under a 48 MB heap, JSON.parse of the file (the former CLI) runs out of memory
      const file = join(dir, 'big.json');
      const { ledgerJwk } = await writeBigBundle(file, 30_000);
      writeFileSync(join(dir, 'big-jwks.json'), JSON.stringify({ keys: [ledgerJwk] }));
      const heap = '--max-old-space-size=48';
      const whole = spawnSync(process.execPath, [heap, '-e', `JSON.parse(require('fs').readFileSync(${JSON.stringify(file)}, 'utf8'))`], { encoding: 'utf8' });
      assert.notEqual(whole.status, 0, 'the control: the whole file parsed does not fit the heap');
      const r = spawnSync(process.execPath, [heap, cli, 'verify', file, '--key', join(dir, 'big-jwks.json')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /entries:\s+30000/);
      assert.match(r.stdout, /^OK/m);
    });

    test('exit 1 naming the entry and the check for a tampered bundle', () => {
      const t = clone(bundle);
      t.entries[1].body = t.entries[1].body!.replace('"amount":250', '"amount":999');
      writeFileSync(join(dir, 'bad.json'), bundleText(t));
      const r = run(join(dir, 'bad.json'));
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /entry 4: body: /);
      assert.match(r.stdout, /FAILED/);
    });
  });
});
