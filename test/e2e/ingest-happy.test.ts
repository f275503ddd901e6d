import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { client, event, events, producerKey, registerKey, type TestProducer } from '../support/factories';
import { jcs } from '../../src/core/jcs';
import type { TraceEvent } from '../../src/core/event';

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

  test('a small group (one statement) and a large one (COPY) store the same bytes and columns', async () => {
    // values the two writers encode differently: COPY's escapes, array-literal quoting, nulls, "\N" as text
    const tricky = (i: number): TraceEvent =>
      event({
        name: `tool\t${i}\\N"{,}\n\r`,
        session_id: i % 2 ? null : '\\N',
        parent_span_id: null,
        status: i % 3 ? 'ok' : 'error',
        duration_ms: i % 4 ? 0.1 + i : null,
        attributes: { text: `tab\there\nnewline \\ backslash "quote" {brace} é 😀 \u0000 ${i}`, n: i, nested: { list: [null, 1.5e-7, '\\x00'] } },
      });
    const small = Array.from({ length: 3 }, (_, i) => tricky(i));
    const large = Array.from({ length: 40 }, (_, i) => tricky(100 + i));
    const sent = [...small, ...large];
    const receipts = [...(await client(t.url, writer, key).send(small)), ...(await client(t.url, writer, key).send(large))];
    const rows = await asSuperuser(t.db, async (c) =>
      (
        await c.query<{ seq: string; body: string; name: string; session_id: string | null; status: string; duration_ms: number | null; leaf: string; batches: number }>(
          `SELECT e.seq, b.body, e.name, e.session_id, e.status, e.duration_ms, encode(e.leaf_hash, 'hex') AS leaf,
                  (SELECT count(*)::int FROM ledger_batches x WHERE x.tenant_id = e.tenant_id AND x.batch = e.batch) AS batches
           FROM ledger_entries e JOIN ledger_bodies b USING (tenant_id, seq)
           WHERE e.tenant_id = 'acme' AND e.seq = ANY($1::bigint[]) ORDER BY e.seq`,
          [receipts.map((r) => r.seq)],
        )
      ).rows,
    );
    assert.equal(rows.length, sent.length);
    rows.forEach((r, i) => {
      const e = sent[i];
      assert.equal(r.body, jcs(e), `body of events[${i}]`);
      assert.deepEqual([r.name, r.session_id, r.status, r.duration_ms], [e.name, e.session_id, e.status, e.duration_ms], `columns of events[${i}]`);
      assert.equal(r.leaf, receipts[i].leaf_hash);
      assert.equal(r.batches, 1, `events[${i}] has its batch row`);
    });
    const v = await client(t.url, reader).request<{ ok: boolean; verified: number }>('GET', '/v1/ledger/verify');
    assert.deepEqual([v.ok, v.verified], [true, 4 + sent.length]);
  });
});

