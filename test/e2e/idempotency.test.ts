import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Receipt } from '../../src/client/ledger-client';
import { startTestApp, type TestApp } from '../support/app';
import { event, events, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { assertProblem, call, head } from '../support/http';

type Receipts = { receipts: Receipt[] };

describe('idempotent ingest (event id = idempotency key)', () => {
  let t: TestApp;
  let key: TestProducer;
  let writer: string;
  let reader: string;

  before(async () => {
    t = await startTestApp();
    key = await producerKey();
    await registerKey(t.url, await t.token('acme', 'admin'), key);
    writer = await t.token('acme', 'events:write');
    reader = await t.token('acme', 'audit:read');
  });
  after(() => t.close());

  const post = (body: unknown, token = writer) => call<Receipts>(t.url, 'POST', '/v1/events', { token, json: body });
  const size = async () => (await head(t.url, reader)).tree_size;

  async function accepted(body: unknown): Promise<Receipt[]> {
    const res = await post(body);
    assert.equal(res.status, 201, res.text);
    return res.body.receipts;
  }

  test('resending the same batch returns the same receipts and appends nothing', async () => {
    const body = await signedBatch(events(3), key);
    const first = await accepted(body);
    const size1 = await size();
    assert.equal(first[2].seq, size1);

    assert.deepEqual(await accepted(body), first);
    assert.equal(await size(), size1);

    // the same events signed again (another JWS) are still the same events
    assert.deepEqual(await accepted(await signedBatch(body.events, key)), first);
    assert.equal(await size(), size1);
  });

  test('the same batch sent twice at once is appended once, both callers get the same receipts', async () => {
    const body = await signedBatch(events(5), key);
    const before = await size();
    const [a, b] = await Promise.all([post(body), post(body)]);
    assert.equal(a.status, 201, a.text);
    assert.equal(b.status, 201, b.text);
    assert.deepEqual(a.body.receipts, b.body.receipts);
    assert.equal(await size(), before + 5);
  });

  test('a batch mixing old and new events appends only the new ones, with the old receipts for the old', async () => {
    const [a, b, c, d] = events(4);
    const old = await accepted(await signedBatch([a, b], key));
    const before = await size();

    const mixed = await accepted(await signedBatch([a, c, b, d], key));
    assert.deepEqual(mixed[0], old[0]);
    assert.deepEqual(mixed[2], old[1]);
    assert.deepEqual(
      [mixed[1].id, mixed[1].seq, mixed[3].id, mixed[3].seq],
      [c.id, before + 1, d.id, before + 2],
    );
    assert.equal(await size(), before + 2);

    const v = await call<{ ok: boolean; verified: number }>(t.url, 'GET', '/v1/ledger/verify', { token: reader });
    assert.deepEqual([v.body.ok, v.body.verified], [true, before + 2], v.text);
  });

  test('the same id with different content: 409 event_conflict naming the event, nothing written', async () => {
    const original = event();
    await accepted(await signedBatch([original], key));
    const before = await size();

    const changed = { ...original, attributes: { args: { order_id: 'A-1', amount: 999_999 } } };
    const res = await post(await signedBatch([event(), changed, event()], key));
    const p = assertProblem(res, 409, 'event_conflict', ['events[1].id']);
    assert.match(p.detail, new RegExp(original.id));
    assert.equal(await size(), before, 'neither the conflicting event nor its new neighbours are written');
  });

  test('the same id with two contents sent at once: one is appended, the other is a 409', async () => {
    const e = event();
    const [a, b] = await Promise.all([
      signedBatch([e], key),
      signedBatch([{ ...e, status: 'error' }], key),
    ]);
    const before = await size();
    const results = await Promise.all([post(a), post(b)]);
    assert.deepEqual(results.map((r) => r.status).sort(), [201, 409], results.map((r) => r.text).join('\n'));
    assertProblem(results.find((r) => r.status === 409)!, 409, 'event_conflict', ['events[0].id']);
    assert.equal(await size(), before + 1);
  });

  test('an id differing only in letter case is the same id: other content is a 409 conflict', async () => {
    const original = event();
    const [receipt] = await accepted(await signedBatch([original], key));
    const before = await size();

    const changed = { ...original, id: original.id.toUpperCase(), name: 'delete_customer' };
    assert.notEqual(changed.id, original.id);
    assertProblem(await post(await signedBatch([changed], key)), 409, 'event_conflict', ['events[0].id']);
    assert.equal(await size(), before);
    assert.ok(receipt.seq <= before);
  });

  test('an id differing only in letter case, same content otherwise: never a second entry', async () => {
    const original = event();
    const [receipt] = await accepted(await signedBatch([original], key));
    const before = await size();

    const res = await post(await signedBatch([{ ...original, id: original.id.toUpperCase() }], key));
    // Either the original receipt (same UUID, same event) or a conflict (the signed bytes differ);
    // what must not happen is a second ledger entry for one UUID.
    if (res.status === 201) assert.equal(res.body.receipts[0].seq, receipt.seq, res.text);
    else assertProblem(res, 409, 'event_conflict', ['events[0].id']);
    assert.equal(await size(), before);
  });

  test('ids differing only in letter case within one batch are duplicates: 400', async () => {
    const a = event();
    const before = await size();
    const res = await post(await signedBatch([a, event(), { ...event(), id: a.id.toUpperCase() }], key));
    assertProblem(res, 400, ['validation_failed', 'malformed_event'], ['events[2].id']);
    assert.equal(await size(), before);
  });

  test("another tenant's event ids are not this tenant's: the same id is a new event there", async () => {
    const shared = event();
    await accepted(await signedBatch([shared], key));

    const other = await producerKey();
    await registerKey(t.url, await t.token('globex', 'admin'), other);
    const globexWriter = await t.token('globex', 'events:write');
    const globexReader = await t.token('globex', 'audit:read');
    const globexBefore = (await head(t.url, globexReader)).tree_size;

    // different content under the same id: a 409 here would tell globex that acme has this id
    const res = await post(await signedBatch([{ ...shared, name: 'something_else' }], other), globexWriter);
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.receipts[0].seq, globexBefore + 1);
  });
});
