import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CompactSign, generateKeyPair } from 'jose';
import { BATCH_JWS_TYP, batchPayload, digestsOf } from '../../src/core/batch';
import type { TraceEvent } from '../../src/core/event';
import { startTestApp, type TestApp } from '../support/app';
import { client, event, events, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { assertProblem, call, head } from '../support/http';

/** Codes a malformed event may be refused with (the shared validation code, or ingest's own). */
const MALFORMED = ['validation_failed', 'malformed_event'] as const;

/** The batch payload a producer would sign for these events. */
const payloadOf = (evs: unknown[]) => new TextEncoder().encode(batchPayload(digestsOf(evs)));

/** The same JWS with one byte of its signature flipped. */
function corruptSignature(jws: string): string {
  const [h, p, s] = jws.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[10] ^= 0x01;
  return `${h}.${p}.${sig.toString('base64url')}`;
}

describe('POST /v1/events refusals', () => {
  let t: TestApp;
  let key: TestProducer;
  let writer: string;
  let reader: string;
  let admin: string;

  before(async () => {
    t = await startTestApp();
    admin = await t.token('acme', 'admin');
    writer = await t.token('acme', 'events:write');
    reader = await t.token('acme', 'audit:read');
    key = await producerKey();
    await registerKey(t.url, admin, key);
  });
  after(() => t.close());

  const post = <T = unknown>(body: unknown) => call<T>(t.url, 'POST', '/v1/events', { token: writer, json: body });
  const size = async () => (await head(t.url, reader)).tree_size;

  /** Sends a body, expects a problem response, and checks that the ledger did not grow. */
  async function refused(body: unknown, status: number, code: string | readonly string[], fields: string[] = []) {
    const before = await size();
    const res = await post(body);
    const problem = assertProblem(res, status, code, fields);
    assert.equal(await size(), before, 'a refused batch must not write anything');
    return problem;
  }

  describe('the signature', () => {
    test('a garbage string is not a JWS: 400 malformed_jws', async () => {
      await refused({ events: events(1), signature: 'not-a-jws' }, 400, 'malformed_jws', ['signature']);
    });

    test('a real JWS with one byte of its signature changed: 422 bad_signature', async () => {
      const body = await signedBatch(events(2), key);
      await refused({ ...body, signature: corruptSignature(body.signature) }, 422, 'bad_signature', ['signature']);
      // the untouched batch is fine: the refusal was the corrupted byte
      assert.equal((await post(body)).status, 201);
    });

    test('a kid this tenant never registered: 422 unknown_key, naming the kid', async () => {
      const stranger = await producerKey();
      const p = await refused(await signedBatch(events(1), stranger), 422, 'unknown_key', ['signature']);
      assert.match(p.detail, new RegExp(stranger.kid));
    });

    test('a revoked kid: 422 key_revoked', async () => {
      const k = await producerKey();
      await registerKey(t.url, admin, k, 'soon-revoked');
      assert.equal((await post(await signedBatch(events(1), k))).status, 201);
      const rev = await call(t.url, 'POST', `/v1/keys/${k.kid}/revoke`, { token: admin });
      assert.equal(rev.status, 200, rev.text);
      await refused(await signedBatch(events(1), k), 422, 'key_revoked', ['signature']);
    });

    test('alg HS256 (a shared secret) is not in the allow-list: 422 algorithm_not_allowed', async () => {
      const evs = events(1);
      const signature = await new CompactSign(payloadOf(evs))
        .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: BATCH_JWS_TYP })
        .sign(randomBytes(32));
      const p = await refused({ events: evs, signature }, 422, 'algorithm_not_allowed', ['signature']);
      assert.match(p.detail, /HS256/);
    });

    test('alg RS256 is not in the allow-list: 422 algorithm_not_allowed', async () => {
      const { privateKey } = await generateKeyPair('RS256');
      const evs = events(1);
      const signature = await new CompactSign(payloadOf(evs))
        .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: BATCH_JWS_TYP })
        .sign(privateKey);
      await refused({ events: evs, signature }, 422, 'algorithm_not_allowed', ['signature']);
    });

    test('a kid registered as Ed25519 with a header saying ES256: 422 algorithm_not_allowed', async () => {
      const p256 = await producerKey('ES256');
      const evs = events(1);
      const signature = await new CompactSign(payloadOf(evs))
        .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: BATCH_JWS_TYP })
        .sign(p256.privateKey);
      const p = await refused({ events: evs, signature }, 422, 'algorithm_not_allowed', ['signature']);
      assert.match(p.detail, /EdDSA/);
    });

    test('typ missing from the protected header: 400 malformed_jws', async () => {
      const evs = events(1);
      const signature = await new CompactSign(payloadOf(evs))
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid })
        .sign(key.privateKey);
      const p = await refused({ events: evs, signature }, 400, 'malformed_jws', ['signature']);
      assert.match(p.detail, /typ/);
    });

    test('a wrong typ: 400 malformed_jws', async () => {
      const evs = events(1);
      const signature = await new CompactSign(payloadOf(evs))
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT' })
        .sign(key.privateKey);
      await refused({ events: evs, signature }, 400, 'malformed_jws', ['signature']);
    });
  });

  describe('digests', () => {
    test('one field of one event changed after signing: 422 digest_mismatch naming that event', async () => {
      const evs = events(3);
      const body = await signedBatch(evs, key);
      const tampered = evs.map((e, i) => (i === 1 ? { ...e, name: 'delete_customer' } : e));
      const p = await refused({ events: tampered, signature: body.signature }, 422, 'digest_mismatch', ['events[1]']);
      assert.ok(!p.errors!.some((e) => e.field === 'events[0]' || e.field === 'events[2]'), JSON.stringify(p.errors));
    });

    test('a signature over fewer digests than events: 422 digest_mismatch', async () => {
      const evs = events(3);
      const { signature } = await signedBatch(evs.slice(0, 2), key);
      const p = await refused({ events: evs, signature }, 422, 'digest_mismatch', ['signature']);
      assert.match(p.detail, /2\b.*\b3\b/);
    });

    test('a signature over more digests than events: 422 digest_mismatch', async () => {
      const evs = events(3);
      const { signature } = await signedBatch(evs, key);
      await refused({ events: evs.slice(0, 2), signature }, 422, 'digest_mismatch', ['signature']);
    });

    test('the same events in another order: 422 digest_mismatch', async () => {
      const evs = events(2);
      const { signature } = await signedBatch(evs, key);
      await refused({ events: [evs[1], evs[0]], signature }, 422, 'digest_mismatch', ['events[0]']);
    });
  });

  describe('malformed events, each named events[i].field', () => {
    const cases: { what: string; field: string; bad: (e: TraceEvent) => Record<string, unknown> }[] = [
      { what: 'trace_id of 31 hex characters', field: 'trace_id', bad: (e) => ({ ...e, trace_id: e.trace_id.slice(1) }) },
      { what: 'trace_id of 33 hex characters', field: 'trace_id', bad: (e) => ({ ...e, trace_id: e.trace_id + 'a' }) },
      { what: 'trace_id in uppercase hex', field: 'trace_id', bad: (e) => ({ ...e, trace_id: 'ABCDEF' + e.trace_id.slice(6) }) },
      { what: 'trace_id of all zeros (invalid in W3C trace context)', field: 'trace_id', bad: (e) => ({ ...e, trace_id: '0'.repeat(32) }) },
      { what: 'span_id in uppercase hex', field: 'span_id', bad: (e) => ({ ...e, span_id: 'ABCDEF' + e.span_id.slice(6) }) },
      { what: 'id that is not a UUID', field: 'id', bad: (e) => ({ ...e, id: 'not-a-uuid' }) },
      {
        what: 'agent missing',
        field: 'agent',
        bad: (e) => {
          const { agent: _, ...rest } = e;
          return rest;
        },
      },
      { what: 'an unknown field', field: 'mood', bad: (e) => ({ ...e, mood: 'happy' }) },
      { what: 'the reserved type ledger.key_registered', field: 'type', bad: (e) => ({ ...e, type: 'ledger.key_registered' }) },
      { what: 'the reserved type policy.violation', field: 'type', bad: (e) => ({ ...e, type: 'policy.violation' }) },
      { what: 'an unknown type', field: 'type', bad: (e) => ({ ...e, type: 'tool.smash' }) },
      { what: 'a time that is not a timestamp', field: 'time', bad: (e) => ({ ...e, time: 'yesterday' }) },
      { what: 'a time without the T separator', field: 'time', bad: (e) => ({ ...e, time: '2026-11-25 10:00:00Z' }) },
      { what: 'a time without an offset', field: 'time', bad: (e) => ({ ...e, time: '2026-11-25T10:00:00' }) },
      { what: 'a time at hour 25', field: 'time', bad: (e) => ({ ...e, time: '2026-11-25T25:00:00Z' }) },
      {
        what: 'attributes of 64 KiB + 1 byte canonical',
        field: 'attributes',
        // JCS({"a":"xx…"}) is 8 bytes of framing plus the string
        bad: (e) => ({ ...e, attributes: { a: 'x'.repeat(64 * 1024 - 8 + 1) } }),
      },
      { what: 'attributes that are not an object', field: 'attributes', bad: (e) => ({ ...e, attributes: [1, 2] }) },
    ];

    for (const c of cases) {
      test(`${c.what}: 400 naming events[1].${c.field}`, async () => {
        const [a, b, d] = events(3);
        const body = await signedBatch([a, c.bad(b), d], key);
        const p = await refused(body, 400, MALFORMED, [`events[1].${c.field}`]);
        assert.ok(!p.errors!.some((e) => /^events\[[02]\]/.test(e.field)), JSON.stringify(p.errors));
      });
    }

    test('attributes of exactly 64 KiB canonical are accepted (the limit is inclusive)', async () => {
      const before = await size();
      const res = await post(await signedBatch([event({ attributes: { a: 'x'.repeat(64 * 1024 - 8) } })], key));
      assert.equal(res.status, 201, res.text);
      assert.equal(await size(), before + 1);
    });

    test('attributes over 64 KiB canonical in multi-byte characters are refused (the limit is in bytes)', async () => {
      // 30 000 × "€" is 90 000 UTF-8 bytes but only 30 000 UTF-16 code units
      const body = await signedBatch([event(), event({ attributes: { a: '€'.repeat(30_000) } })], key);
      await refused(body, 400, MALFORMED, ['events[1].attributes']);
    });

    test('duplicate ids within one batch: 400 naming the second one', async () => {
      const [a, b, d] = events(3);
      const body = await signedBatch([a, b, { ...d, id: a.id }], key);
      const p = await refused(body, 400, MALFORMED, ['events[2].id']);
      assert.match(p.errors!.find((e) => e.field === 'events[2].id')!.message, /events\[0\]/);
    });

    test('every bad event of a batch is named, not just the first', async () => {
      const [a, b, d, e] = events(4);
      const { agent: _, ...noAgent } = a;
      const body = await signedBatch([noAgent, b, d, { ...e, time: 'soon' }], key);
      await refused(body, 400, MALFORMED, ['events[0].agent', 'events[3].time']);
    });
  });

  describe('values that pass a loose check but that the ledger cannot store: refused up front, 400', () => {
    test('a calendar date that does not exist (February 30)', async () => {
      const body = await signedBatch([event(), event({ time: '2026-02-30T10:00:00Z' })], key);
      await refused(body, 400, MALFORMED, ['events[1].time']);
    });

    test('the year 0000', async () => {
      const body = await signedBatch([event(), event({ time: '0000-01-01T00:00:00Z' })], key);
      await refused(body, 400, MALFORMED, ['events[1].time']);
    });

    test('a NUL character in agent', async () => {
      const body = await signedBatch([event(), event({ agent: 'support\u0000agent' })], key);
      await refused(body, 400, MALFORMED, ['events[1].agent']);
    });

    test('a NUL character in name', async () => {
      const body = await signedBatch([event(), event({ name: 'refund\u0000' })], key);
      await refused(body, 400, MALFORMED, ['events[1].name']);
    });

    test('a batch the database cannot store does not fail the other batches committed in the same group', async () => {
      // Each batch is valid by the schema; one has a date that does not exist. Sent together, the
      // batches that arrive while a commit is in flight share the next group-commit transaction.
      const goods = await Promise.all(Array.from({ length: 12 }, () => signedBatch(events(50), key)));
      const bad = await signedBatch([event({ time: '2026-02-30T10:00:00Z' })], key);
      const before = await size();
      const results = await Promise.all([post(goods[0]), post(goods[1]), post(bad), ...goods.slice(2).map((g) => post(g))]);
      const statuses = results.map((r) => r.status);
      assert.deepEqual(
        statuses.filter((_, i) => i !== 2),
        goods.map(() => 201),
        `the good batches are appended whatever a batch beside them holds (statuses ${statuses.join(' ')})`,
      );
      assert.equal(await size(), before + goods.length * 50);
      assert.equal(statuses[2], 400, 'a date that does not exist is the client\'s fault, refused before any commit');
    });
  });

  describe('the envelope', () => {
    test('an empty events array: 400 naming events', async () => {
      const { signature } = await signedBatch(events(1), key);
      await refused({ events: [], signature }, 400, 'validation_failed', ['events']);
    });

    test('events that are not an array: 400 naming events', async () => {
      const { signature } = await signedBatch(events(1), key);
      await refused({ events: event(), signature }, 400, 'validation_failed', ['events']);
    });

    test('no signature: 400 naming signature', async () => {
      await refused({ events: events(1) }, 400, 'validation_failed', ['signature']);
    });

    test('more than 1000 events: 413 too_many_events', async () => {
      const p = await refused(await signedBatch(events(1001), key), 413, 'too_many_events', ['events']);
      assert.match(p.detail, /1001/);
    });

    test('exactly 1000 events are accepted', async () => {
      const before = await size();
      const res = await post(await signedBatch(events(1000), key));
      assert.equal(res.status, 201, res.text.slice(0, 300));
      assert.equal((res.body as { receipts: unknown[] }).receipts.length, 1000);
      assert.equal(await size(), before + 1000);
    });

    test('a body over 5 MiB: 413', async () => {
      const before = await size();
      const raw = JSON.stringify({
        events: [event({ attributes: { pad: 'x'.repeat(5 * 1024 * 1024) } })],
        signature: 'x.y.z',
      });
      assert.ok(Buffer.byteLength(raw) > 5 * 1024 * 1024);
      const res = await call(t.url, 'POST', '/v1/events', { token: writer, raw });
      assertProblem(res, 413, 'payload_too_large');
      assert.equal(await size(), before);
    });

    test('the 413 for a body over 5 MiB says what the limit is', async () => {
      const raw = JSON.stringify({ events: [event({ attributes: { pad: 'x'.repeat(5 * 1024 * 1024) } })], signature: 'x.y.z' });
      const res = await call(t.url, 'POST', '/v1/events', { token: writer, raw });
      const p = assertProblem(res, 413, 'payload_too_large');
      assert.match(p.detail, /5 MiB|5242880/);
    });

    test('a body that is not JSON: 400', async () => {
      const before = await size();
      const res = await call(t.url, 'POST', '/v1/events', { token: writer, raw: '{"events": [ {"id": ' });
      const p = assertProblem(res, 400, ['malformed_body', 'validation_failed']);
      assert.match(p.detail, /not valid JSON \(it ends too early\)/);
      const bad = await call(t.url, 'POST', '/v1/events', { token: writer, raw: '{"events": [} ' });
      assert.equal(assertProblem(bad, 400, 'malformed_body').detail, 'the body is not valid JSON (unexpected "}")');
      const colon = await call(t.url, 'POST', '/v1/events', { token: writer, raw: '{"events" []}' });
      assert.equal(assertProblem(colon, 400, 'malformed_body').detail, "the body is not valid JSON (expected ':' after property name, at position 10)");
      const empty = await call(t.url, 'POST', '/v1/events', { token: writer, raw: '' });
      assert.match(assertProblem(empty, 400, 'malformed_body').detail, /empty/);
      assert.equal(await size(), before);
    });

    test('a __proto__ key anywhere in the body (prototype poisoning): 400, nothing written', async () => {
      const before = await size();
      const body = await signedBatch([{ ...event(), attributes: { a: 1 } }], key);
      const raw = JSON.stringify(body).replace('"attributes":{"a":1}', '"attributes":{"a":{"__proto__":{"admin":true}}}');
      assert.match(raw, /__proto__/);
      const res = await call(t.url, 'POST', '/v1/events', { token: writer, raw });
      const p = assertProblem(res, 400, 'malformed_body');
      assert.match(p.detail, /__proto__.*prototype poisoning/);
      assert.equal(await size(), before);
    });

    test('an unknown top-level field: 400 naming it', async () => {
      const body = await signedBatch(events(1), key);
      await refused({ ...body, priority: 'high' }, 400, 'validation_failed', ['priority']);
    });
  });

  test('one bad event refuses the whole batch; the good ones alone are then accepted', async () => {
    const evs = events(4);
    const bad = { ...evs[2], trace_id: evs[2].trace_id.toUpperCase() };
    await refused(await signedBatch([evs[0], evs[1], bad, evs[3]], key), 400, MALFORMED, ['events[2].trace_id']);

    const before = await size();
    const good = [evs[0], evs[1], evs[3]];
    const receipts = await client(t.url, writer, key).send(good);
    assert.deepEqual(
      receipts.map((r) => r.seq),
      [before + 1, before + 2, before + 3],
      'none of the good events was written by the refused batch',
    );
  });

  test('an ES256 (P-256) producer key works end to end', async () => {
    const p256 = await producerKey('ES256');
    const reg = await registerKey(t.url, admin, p256, 'p256-runtime');
    assert.equal((reg as { alg: string }).alg, 'ES256');
    const before = await size();
    const evs = events(3);
    const res = await post<{ receipts: { id: string; seq: number }[] }>(await signedBatch(evs, p256));
    assert.equal(res.status, 201, res.text);
    assert.deepEqual(
      res.body.receipts.map((r) => [r.id, r.seq]),
      evs.map((e, i) => [e.id, before + 1 + i]),
    );
    const v = await call<{ ok: boolean; verified: number }>(t.url, 'GET', '/v1/ledger/verify', { token: reader });
    assert.equal(v.status, 200);
    assert.deepEqual([v.body.ok, v.body.verified], [true, before + 3]);
  });
});
