import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { startTestApp, type TestApp } from '../support/app';
import { events, producerKey, signedBatch } from '../support/factories';
import { allEntries, assertProblem, call, head, type HttpResult } from '../support/http';

interface KeyView {
  kid: string;
  producer: string;
  alg: string;
  jwk: JWK;
  created_at: string;
  registered_seq: number;
  revoked_at: string | null;
  revoked_seq: number | null;
}

interface Rec {
  seq: number;
  type: string;
  name: string | null;
  kid: string;
  agent: string;
  tenant: string;
}

/** RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace; base64url. */
const thumbprint = (members: string) => createHash('sha256').update(members).digest('base64url');

/** A public JWK made by node:crypto (for curves jose does not generate). */
const nodeJwk = (type: 'ec' | 'x25519', namedCurve?: string) =>
  (type === 'ec' ? generateKeyPairSync('ec', { namedCurve: namedCurve! }) : generateKeyPairSync('x25519')).publicKey.export({
    format: 'jwk',
  }) as JWK;

describe('producer keys', () => {
  let t: TestApp;
  let admin: string;
  let reader: string;

  before(async () => {
    t = await startTestApp();
    admin = await t.token('acme', 'admin');
    reader = await t.token('acme', 'audit:read');
  });
  after(() => t.close());

  const register = (jwk: unknown, producer = 'runtime') =>
    call<KeyView>(t.url, 'POST', '/v1/keys', { token: admin, json: { producer, jwk } });
  const revoke = (kid: string) => call<KeyView>(t.url, 'POST', `/v1/keys/${kid}/revoke`, { token: admin });
  const size = async () => (await head(t.url, reader)).tree_size;
  const records = async () => (await allEntries(t.url, reader)).map((e) => JSON.parse(e.record) as Rec);

  /** Expects a refused registration: the problem, and no ledger entry. */
  async function refusedRegistration(jwk: unknown, status: number, code: string, fields: string[] = []) {
    const before = await size();
    const p = assertProblem(await register(jwk), status, code, fields);
    assert.equal(await size(), before, 'a refused registration writes nothing');
    return p;
  }

  describe('registration', () => {
    test('an Ed25519 key without a kid: 201, kid = its RFC 7638 thumbprint, alg EdDSA', async () => {
      const k = await producerKey('EdDSA');
      const res = await register(k.publicJwk, 'ed-runtime');
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.kid, thumbprint(`{"crv":"Ed25519","kty":"OKP","x":"${k.publicJwk.x}"}`));
      assert.equal(res.body.alg, 'EdDSA');
      assert.equal(res.body.producer, 'ed-runtime');
      assert.deepEqual(res.body.jwk, { kty: 'OKP', crv: 'Ed25519', x: k.publicJwk.x, kid: res.body.kid });
      assert.equal(res.body.revoked_at, null);
      assert.equal(res.body.registered_seq, await size());
    });

    test('a P-256 key without a kid: 201, kid = its RFC 7638 thumbprint, alg ES256', async () => {
      const k = await producerKey('ES256');
      const res = await register(k.publicJwk);
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.kid, thumbprint(`{"crv":"P-256","kty":"EC","x":"${k.publicJwk.x}","y":"${k.publicJwk.y}"}`));
      assert.equal(res.body.alg, 'ES256');
    });

    test("a key with its own kid is registered under that kid, and signs batches under it", async () => {
      const k = await producerKey();
      const res = await register({ ...k.publicJwk, kid: 'runtime-7.2024:a_b~c' });
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.kid, 'runtime-7.2024:a_b~c');
      const sent = await call(t.url, 'POST', '/v1/events', {
        token: await t.token('acme', 'events:write'),
        json: await signedBatch(events(1), { ...k, kid: 'runtime-7.2024:a_b~c' }),
      });
      assert.equal(sent.status, 201, sent.text);
    });

    test('re-registering the same key: 200 with the same body, no new ledger entry', async () => {
      const k = await producerKey();
      const first = await register({ ...k.publicJwk, kid: 'same-again' });
      assert.equal(first.status, 201, first.text);
      const before = await size();
      const again = await register({ ...k.publicJwk, kid: 'same-again' });
      assert.equal(again.status, 200, again.text);
      assert.deepEqual(again.body, first.body);
      assert.equal(await size(), before);
    });

    test('the same key registered four times at once: one 201, three 200 (never 409), one ledger entry', async () => {
      const k = await producerKey();
      const before = await size();
      const results = await Promise.all([1, 2, 3, 4].map(() => register(k.publicJwk)));
      assert.deepEqual(
        results.map((r) => r.status).sort(),
        [200, 200, 200, 201],
        results.map((r) => `${r.status} ${r.text}`).join('\n'),
      );
      for (const r of results) assert.deepEqual(r.body, results[0].body);
      assert.equal(await size(), before + 1);
    });

    test('the same kid with a different key: 409 kid_taken, the first key stays', async () => {
      const k1 = await producerKey();
      const k2 = await producerKey();
      assert.equal((await register({ ...k1.publicJwk, kid: 'contested' })).status, 201);
      const p = await refusedRegistration({ ...k2.publicJwk, kid: 'contested' }, 409, 'kid_taken');
      assert.match(p.detail, /contested/);
      const list = await call<{ keys: KeyView[] }>(t.url, 'GET', '/v1/keys', { token: admin });
      assert.equal(list.body.keys.find((k) => k.kid === 'contested')?.jwk.x, k1.publicJwk.x);
    });

    test('a private JWK (with d) is refused with a clear message, and d is not echoed', async () => {
      const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
      const jwk = await exportJWK(privateKey);
      assert.ok(jwk.d);
      const before = await size();
      const res = await register(jwk);
      const p = assertProblem(res, 400, 'private_key_refused', ['jwk.d']);
      assert.match(p.detail, /private/);
      assert.ok(!res.text.includes(jwk.d), 'the private key is not echoed back');
      assert.equal(await size(), before);
    });

    test('a private P-256 JWK is refused too', async () => {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      await refusedRegistration(await exportJWK(privateKey), 400, 'private_key_refused', ['jwk.d']);
    });

    test('an RSA key is refused', async () => {
      const { publicKey } = await generateKeyPair('RS256', { extractable: true });
      const p = await refusedRegistration(await exportJWK(publicKey), 400, 'unsupported_key', ['jwk']);
      assert.match(p.detail, /RSA/);
    });

    for (const [name, jwk] of [
      ['X25519 (OKP, not a signing curve)', () => nodeJwk('x25519')],
      ['P-384', () => nodeJwk('ec', 'P-384')],
      ['secp256k1', () => nodeJwk('ec', 'secp256k1')],
      ['a symmetric (oct) key', () => ({ kty: 'oct', k: randomBytes(32).toString('base64url') })],
    ] as const) {
      test(`${name} is refused`, async () => {
        await refusedRegistration(jwk(), 400, 'unsupported_key', ['jwk']);
      });
    }

    test('garbage coordinates are refused: an Ed25519 x of 3 bytes', async () => {
      await refusedRegistration({ kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }, 400, 'unsupported_key', ['jwk']);
    });

    test('garbage coordinates are refused: a P-256 point not on the curve', async () => {
      const jwk = { kty: 'EC', crv: 'P-256', x: randomBytes(32).toString('base64url'), y: randomBytes(32).toString('base64url') };
      await refusedRegistration(jwk, 400, 'unsupported_key', ['jwk']);
    });

    test('garbage coordinates are refused: x that is not base64url', async () => {
      await refusedRegistration({ kty: 'OKP', crv: 'Ed25519', x: '!!not base64!!' }, 400, 'unsupported_key', ['jwk']);
    });

    test('a P-256 key without y is refused', async () => {
      const k = await producerKey('ES256');
      await refusedRegistration({ kty: 'EC', crv: 'P-256', x: k.publicJwk.x }, 400, 'unsupported_key', ['jwk']);
    });

    test('a kid outside the allowed characters is refused', async () => {
      const k = await producerKey();
      await refusedRegistration({ ...k.publicJwk, kid: 'has space/and slash' }, 400, 'unsupported_key', ['jwk']);
    });

    test('the kid "ledger" is refused: records use it for the service\'s own entries', async () => {
      const k = await producerKey();
      const before = await size();
      const res = await register({ ...k.publicJwk, kid: 'ledger' });
      assert.equal(res.status, 400, res.text);
      assert.equal(await size(), before);
    });

    test('an unknown field in the body is refused', async () => {
      const k = await producerKey();
      const res = await call(t.url, 'POST', '/v1/keys', { token: admin, json: { producer: 'p', jwk: k.publicJwk, owner: 'me' } });
      assertProblem(res, 400, 'validation_failed', ['owner']);
    });

    test('a missing producer is refused', async () => {
      const k = await producerKey();
      const res = await call(t.url, 'POST', '/v1/keys', { token: admin, json: { jwk: k.publicJwk } });
      assertProblem(res, 400, 'validation_failed', ['producer']);
    });
  });

  describe('revocation', () => {
    test('revoking twice is idempotent: the same key view, one revocation entry', async () => {
      const k = await producerKey();
      const reg = await register(k.publicJwk, 'to-revoke');
      assert.equal(reg.status, 201);

      const first = await revoke(k.kid);
      assert.equal(first.status, 200, first.text);
      assert.ok(first.body.revoked_at);
      assert.equal(first.body.revoked_seq, await size());
      const before = await size();

      const second = await revoke(k.kid);
      assert.equal(second.status, 200, second.text);
      assert.deepEqual(second.body, first.body);
      assert.equal(await size(), before);

      const revocations = (await records()).filter((r) => r.type === 'ledger.key_revoked' && r.name === k.kid);
      assert.equal(revocations.length, 1);
      assert.equal(revocations[0].seq, first.body.revoked_seq);
    });

    test('two revocations at once: both 200, one revocation entry', async () => {
      const k = await producerKey();
      assert.equal((await register(k.publicJwk)).status, 201);
      const results = await Promise.all([revoke(k.kid), revoke(k.kid)]);
      for (const r of results) assert.equal(r.status, 200, r.text);
      assert.deepEqual(results[0].body, results[1].body);
      assert.equal((await records()).filter((r) => r.type === 'ledger.key_revoked' && r.name === k.kid).length, 1);
    });

    test('revoking an unknown kid: 404', async () => {
      assertProblem(await revoke((await producerKey()).kid), 404, 'not_found');
    });

    test('a kid with characters outside the pattern in the path: 400 naming path.kid', async () => {
      assertProblem(await revoke('bad%20kid'), 400, 'validation_failed', ['path.kid']);
    });

    test('GET /v1/keys shows the revocation', async () => {
      const k = await producerKey();
      await register(k.publicJwk);
      await revoke(k.kid);
      const list: HttpResult<{ keys: KeyView[] }> = await call(t.url, 'GET', '/v1/keys', { token: admin });
      const v = list.body.keys.find((x) => x.kid === k.kid)!;
      assert.ok(v.revoked_at && v.revoked_seq);
    });
  });

  describe('the ledger records it all', () => {
    test('every registration and revocation is a ledger entry with kid "ledger"', async () => {
      const k = await producerKey();
      const reg = await register(k.publicJwk, 'audited');
      const rev = await revoke(k.kid);
      const recs = await records();
      const regRec = recs.find((r) => r.seq === reg.body.registered_seq)!;
      assert.deepEqual(
        [regRec.type, regRec.name, regRec.kid, regRec.tenant],
        ['ledger.key_registered', k.kid, 'ledger', 'acme'],
      );
      const revRec = recs.find((r) => r.seq === rev.body.revoked_seq)!;
      assert.deepEqual([revRec.type, revRec.name, revRec.kid], ['ledger.key_revoked', k.kid, 'ledger']);

      // every key in the list has its registration entry, every revoked one its revocation entry
      const list = await call<{ keys: KeyView[] }>(t.url, 'GET', '/v1/keys', { token: admin });
      for (const key of list.body.keys) {
        const r = recs.find((x) => x.seq === key.registered_seq);
        assert.deepEqual([r?.type, r?.name, r?.kid], ['ledger.key_registered', key.kid, 'ledger']);
        if (key.revoked_seq !== null) {
          const v = recs.find((x) => x.seq === key.revoked_seq);
          assert.deepEqual([v?.type, v?.name, v?.kid], ['ledger.key_revoked', key.kid, 'ledger']);
        }
      }
      const registrations = recs.filter((r) => r.type === 'ledger.key_registered');
      assert.equal(registrations.length, list.body.keys.length, 'one registration entry per key, none for refusals or repeats');
    });

    test('GET /.well-known/jwks.json serves the ledger\'s Ed25519 public key, without d', async () => {
      const res = await call<{ keys: JWK[] }>(t.url, 'GET', '/.well-known/jwks.json');
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.keys.length, 1);
      const [jwk] = res.body.keys;
      assert.deepEqual([jwk.kty, jwk.crv], ['OKP', 'Ed25519']);
      assert.equal(Buffer.from(jwk.x!, 'base64url').length, 32);
      assert.ok(!('d' in jwk), 'no private key material');
      assert.ok(!res.text.includes('"d"'));
      await importJWK(jwk, 'EdDSA');
      assert.deepEqual(jwk, t.config.ledgerKey.publicJwk);
    });

    test('GET /v1/ledger/verify is ok after all of it', async () => {
      const v = await call<{ ok: boolean; verified: number }>(t.url, 'GET', '/v1/ledger/verify', { token: reader });
      assert.equal(v.status, 200, v.text);
      assert.deepEqual([v.body.ok, v.body.verified], [true, await size()]);
    });
  });
});
