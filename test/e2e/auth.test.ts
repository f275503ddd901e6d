import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SignJWT, UnsecuredJWT } from 'jose';
import type { Receipt } from '../../src/client/ledger-client';
import { startTestApp, TEST_JWT_SECRET, type TestApp } from '../support/app';
import { events, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { allEntries, assertProblem, call, head } from '../support/http';

const secret = new TextEncoder().encode(TEST_JWT_SECRET);
const now = () => Math.floor(Date.now() / 1000);

/** A token signed with the right secret, with exactly the claims given (for claims mintToken always sets). */
function rawToken(claims: Record<string, unknown>, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(secret);
}

describe('authentication, scopes and tenant isolation', () => {
  let t: TestApp;
  let keyA: TestProducer;
  let keyB: TestProducer;
  let adminA: string;
  let readerA: string;
  let adminB: string;
  let readerB: string;
  let writerB: string;
  let receiptsA: Receipt[];

  before(async () => {
    t = await startTestApp();
    adminA = await t.token('acme', 'admin');
    readerA = await t.token('acme', 'audit:read');
    adminB = await t.token('globex', 'admin');
    readerB = await t.token('globex', 'audit:read');
    writerB = await t.token('globex', 'events:write');
    keyA = await producerKey();
    keyB = await producerKey();
    await registerKey(t.url, adminA, keyA, 'acme-runtime');
    await registerKey(t.url, adminB, keyB, 'globex-runtime');
    const res = await call<{ receipts: Receipt[] }>(t.url, 'POST', '/v1/events', {
      token: await t.token('acme', 'events:write'),
      json: await signedBatch(events(3), keyA),
    });
    assert.equal(res.status, 201, res.text);
    receiptsA = res.body.receipts;
  });
  after(() => t.close());

  const get = (path: string, headers: Record<string, string> = {}) => call(t.url, 'GET', path, { headers });

  describe('401: no valid token', () => {
    test('no Authorization header', async () => {
      const p = assertProblem(await get('/v1/ledger/head'), 401, 'unauthenticated');
      assert.match(p.detail, /Authorization/);
    });

    test('a 401 carries WWW-Authenticate: Bearer (RFC 9110 §11.6.1, RFC 6750 §3)', async () => {
      const res = await get('/v1/ledger/head');
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer\b/);
    });

    for (const header of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer ', 'Bearer a b', 'Token abc.def.ghi', 'Bearer not-a-jwt']) {
      test(`a malformed Authorization header: ${JSON.stringify(header)}`, async () => {
        assertProblem(await get('/v1/ledger/head', { authorization: header }), 401, 'unauthenticated');
      });
    }

    test('the scheme name is case-insensitive (RFC 9110 §11.1): "bearer <token>" is accepted', async () => {
      const res = await get('/v1/ledger/head', { authorization: `bearer ${readerA}` });
      assert.equal(res.status, 200, res.text);
    });

    test('an expired token', async () => {
      const expired = await t.token('acme', 'audit:read', { ttlSeconds: -60 });
      const p = assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token: expired }), 401, 'unauthenticated');
      assert.match(p.detail, /expired/);
    });

    test('a token signed with another secret', async () => {
      const forged = await t.token('acme', 'audit:read', { secret: 'not-the-secret-0123456789-abcdefghijkl' });
      const p = assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token: forged }), 401, 'unauthenticated');
      assert.match(p.detail, /signature/);
    });

    test('a token without a tenant claim', async () => {
      const token = await rawToken({ sub: 'u', scope: 'audit:read', iat: now(), exp: now() + 600 });
      const p = assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token }), 401, 'unauthenticated');
      assert.match(p.detail, /tenant/);
    });

    test('a token whose tenant is not a plain id', async () => {
      const token = await rawToken({ sub: 'u', tenant: '../acme', scope: 'audit:read', exp: now() + 600 });
      assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token }), 401, 'unauthenticated');
    });

    test('a token without exp', async () => {
      const token = await rawToken({ sub: 'u', tenant: 'acme', scope: 'audit:read', iat: now() });
      const p = assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token }), 401, 'unauthenticated');
      assert.match(p.detail, /exp/);
    });

    test('an unsecured token (alg none)', async () => {
      const token = new UnsecuredJWT({ sub: 'u', tenant: 'acme', scope: 'audit:read' }).setExpirationTime('10m').encode();
      assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token }), 401, 'unauthenticated');
    });

    test('a token with the right secret but another HMAC algorithm (HS512)', async () => {
      const token = await rawToken({ sub: 'u', tenant: 'acme', scope: 'audit:read', exp: now() + 600 }, 'HS512');
      assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token }), 401, 'unauthenticated');
    });

    test('a scope claim that is not a string', async () => {
      const token = await rawToken({ sub: 'u', tenant: 'acme', scope: ['audit:read'], exp: now() + 600 });
      assertProblem(await call(t.url, 'GET', '/v1/ledger/head', { token }), 401, 'unauthenticated');
    });

    test('the same request with a valid token succeeds (the 401s above are about the token)', async () => {
      const res = await call(t.url, 'GET', '/v1/ledger/head', { token: readerA });
      assert.equal(res.status, 200, res.text);
    });
  });

  describe('403: valid token, missing scope', () => {
    /** Every scope but the one the route needs. */
    const allBut = (scope: string) => ['events:write', 'audit:read', 'export:create', 'admin'].filter((s) => s !== scope).join(' ');

    const routes: { method: string; route: string; path?: () => string; scope: string; body?: () => Promise<unknown> }[] = [
      { method: 'POST', route: '/v1/events', scope: 'events:write', body: () => signedBatch(events(1), keyA) },
      { method: 'GET', route: '/v1/ledger/head', scope: 'audit:read' },
      { method: 'GET', route: '/v1/ledger/entries', scope: 'audit:read' },
      { method: 'GET', route: '/v1/ledger/verify', scope: 'audit:read' },
      { method: 'GET', route: '/v1/keys', scope: 'admin' },
      { method: 'POST', route: '/v1/keys', scope: 'admin', body: async () => ({ producer: 'p', jwk: (await producerKey()).publicJwk }) },
      { method: 'POST', route: '/v1/keys/{kid}/revoke', path: () => `/v1/keys/${keyA.kid}/revoke`, scope: 'admin' },
    ];

    for (const r of routes) {
      test(`${r.method} ${r.route} needs ${r.scope}`, async () => {
        const before = (await head(t.url, readerA)).tree_size;
        const token = await t.token('acme', allBut(r.scope));
        const res = await call(t.url, r.method, r.path ? r.path() : r.route, { token, json: r.body ? await r.body() : undefined });
        const p = assertProblem(res, 403, 'forbidden');
        assert.match(p.detail, new RegExp(r.scope));
        assert.equal((await head(t.url, readerA)).tree_size, before, 'a forbidden request writes nothing');
      });
    }

    test('a 403 on revoke left the key usable', async () => {
      const keys = await call<{ keys: { kid: string; revoked_at: string | null }[] }>(t.url, 'GET', '/v1/keys', { token: adminA });
      assert.equal(keys.body.keys.find((k) => k.kid === keyA.kid)?.revoked_at, null);
    });
  });

  describe('tenants are isolated', () => {
    test("GET /v1/keys lists only the caller's tenant's keys", async () => {
      const b = await call<{ keys: { kid: string }[] }>(t.url, 'GET', '/v1/keys', { token: adminB });
      assert.deepEqual(
        b.body.keys.map((k) => k.kid),
        [keyB.kid],
      );
      const a = await call<{ keys: { kid: string }[] }>(t.url, 'GET', '/v1/keys', { token: adminA });
      assert.ok(a.body.keys.some((k) => k.kid === keyA.kid));
      assert.ok(!a.body.keys.some((k) => k.kid === keyB.kid));
    });

    test("revoking another tenant's kid is 404 (never 403), the same answer as for a kid nobody has", async () => {
      const theirs = assertProblem(await call(t.url, 'POST', `/v1/keys/${keyA.kid}/revoke`, { token: adminB }), 404, 'not_found');
      const nobodys = assertProblem(
        await call(t.url, 'POST', `/v1/keys/${(await producerKey()).kid}/revoke`, { token: adminB }),
        404,
        'not_found',
      );
      assert.deepEqual([theirs.title, theirs.type], [nobodys.title, nobodys.type]);

      const a = await call<{ keys: { kid: string; revoked_at: string | null }[] }>(t.url, 'GET', '/v1/keys', { token: adminA });
      assert.equal(a.body.keys.find((k) => k.kid === keyA.kid)?.revoked_at, null, "A's key is not revoked");
    });

    test("a tenant's head and entries hold only its own entries", async () => {
      const headB = await head(t.url, readerB);
      const entriesB = await allEntries(t.url, readerB);
      assert.equal(headB.tree_size, entriesB.length);
      assert.ok(entriesB.length >= 1);
      const idsA = new Set(receiptsA.map((r) => r.id));
      for (const e of entriesB) {
        const rec = JSON.parse(e.record) as { tenant: string; id: string };
        assert.equal(rec.tenant, 'globex');
        assert.ok(!idsA.has(rec.id));
      }
      const headA = await head(t.url, readerA);
      assert.notEqual(headA.chain_hash, headB.chain_hash);
      const entriesA = await allEntries(t.url, readerA);
      assert.ok(entriesA.every((e) => (JSON.parse(e.record) as { tenant: string }).tenant === 'acme'));
      for (const r of receiptsA) assert.ok(entriesA.some((e) => e.seq === r.seq && e.chain_hash === r.chain_hash));
    });

    test("a tenant cannot ingest with another tenant's key: 422 unknown_key, nothing written anywhere", async () => {
      const beforeA = (await head(t.url, readerA)).tree_size;
      const beforeB = (await head(t.url, readerB)).tree_size;
      const res = await call(t.url, 'POST', '/v1/events', { token: writerB, json: await signedBatch(events(1), keyA) });
      assertProblem(res, 422, 'unknown_key', ['signature']);
      assert.equal((await head(t.url, readerA)).tree_size, beforeA);
      assert.equal((await head(t.url, readerB)).tree_size, beforeB);
    });

    test("verify covers only the caller's tenant", async () => {
      const v = await call<{ ok: boolean; verified: number }>(t.url, 'GET', '/v1/ledger/verify', { token: readerB });
      assert.deepEqual([v.body.ok, v.body.verified], [true, (await head(t.url, readerB)).tree_size]);
    });
  });

  describe('public routes need no token', () => {
    test('GET /health/live', async () => {
      const res = await get('/health/live');
      assert.equal(res.status, 200, res.text);
    });

    test('GET /health/ready', async () => {
      const res = await get('/health/ready');
      assert.equal(res.status, 200, res.text);
      assert.equal((res.body as { status: string }).status, 'ok');
    });

    test('GET /metrics', async () => {
      const res = await get('/metrics');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(res.text, /^# HELP agent_ledger_/m);
    });

    test('GET /.well-known/jwks.json', async () => {
      const res = await get('/.well-known/jwks.json');
      assert.equal(res.status, 200, res.text);
      assert.ok(Array.isArray((res.body as { keys: unknown[] }).keys));
    });

    test('GET /docs and the OpenAPI document', async () => {
      const docs = await get('/docs');
      assert.equal(docs.status, 200);
      assert.match(docs.text, /swagger/i);
      const spec = await get('/docs/openapi.json');
      assert.equal(spec.status, 200, spec.text.slice(0, 200));
      assert.ok((spec.body as { paths: Record<string, unknown> }).paths['/v1/events']);
    });

    test('a bad token on a public route is ignored, not refused', async () => {
      const res = await get('/health/live', { authorization: 'Bearer not-a-jwt' });
      assert.equal(res.status, 200);
    });
  });

  describe('unknown routes', () => {
    test('an unknown route is a 404 problem, without a token', async () => {
      assertProblem(await get('/v1/nothing-here'), 404, 'not_found');
    });

    test('an unknown route is a 404 problem, with a token', async () => {
      assertProblem(await call(t.url, 'GET', '/v1/ledger/nothing-here', { token: readerA }), 404, 'not_found');
    });
  });
});
