import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../support/app';
import { client, events, producerKey, registerKey, type TestProducer } from '../support/factories';

describe('signed ingest, happy path', () => {
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

  test('a signed batch gets one receipt per event, after the key registration entry', async () => {
    const receipts = await client(t.url, writer, key).send(events(3));
    assert.deepEqual(
      receipts.map((r) => r.seq),
      [2, 3, 4],
    );
    for (const r of receipts) assert.match(r.chain_hash, /^[0-9a-f]{64}$/);
    const head = await client(t.url, reader).request<{ tree_size: number; chain_hash: string }>('GET', '/v1/ledger/head');
    assert.equal(head.tree_size, 4);
    assert.equal(head.chain_hash, receipts[2].chain_hash);
    const v = await client(t.url, reader).request<{ ok: boolean; verified: number }>('GET', '/v1/ledger/verify');
    assert.deepEqual([v.ok, v.verified], [true, 4]);
  });
});
