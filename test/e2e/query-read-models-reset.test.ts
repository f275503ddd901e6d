import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { newSpanId, newTraceId } from '../../src/client/ledger-client';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { client, event, producerKey, registerKey } from '../support/factories';
import { call } from '../support/http';

/**
 * The read models are unlogged (migration 1765100000000): a crash of
 * PostgreSQL empties them and their cursors together, while the service may
 * keep running. Crash recovery's reset is reproduced here by emptying the six
 * tables as the superuser: no answer may then claim a projection it does not
 * hold, and the projector rebuilds the same answers from the ledger.
 */

const READ_MODELS = ['query_cursors', 'query_events', 'trace_summaries', 'tool_calls', 'tool_call_days', 'tool_call_repeats'];

let t: TestApp;
before(async () => {
  t = await startTestApp();
});
after(() => t.close());

test('the read models are unlogged; the ledger and the reviewers\' data are not', async () => {
  const persistence = await asSuperuser(t.db, async (c) =>
    Object.fromEntries(
      (await c.query<{ relname: string; relpersistence: string }>(`SELECT relname, relpersistence FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace`)).rows.map(
        (r) => [r.relname, r.relpersistence],
      ),
    ),
  );
  for (const tbl of READ_MODELS) assert.equal(persistence[tbl], 'u', `${tbl} is unlogged`);
  for (const tbl of ['ledger_entries', 'ledger_bodies', 'ledger_batches', 'merkle_nodes', 'checkpoints', 'producer_keys', 'policy_cursors', 'violations']) {
    assert.equal(persistence[tbl], 'p', `${tbl} is logged`);
  }
});

test('after the read models are reset under a running service, answers never claim rows they lack, and the rebuild gives the same answers', async () => {
  const tenant = 'reset';
  const key = await producerKey();
  await registerKey(t.url, await t.token(tenant, 'admin'), key);
  const traces = [newTraceId(), newTraceId()];
  const receipts = await client(t.url, await t.token(tenant, 'events:write'), key).send(
    Array.from({ length: 24 }, (_, i) =>
      event({ trace_id: traces[i % 2], span_id: newSpanId(), type: 'tool.call', name: `tool-${i % 3}`, status: i % 5 ? 'ok' : 'error', duration_ms: 10 + i }),
    ),
  );
  const head = receipts[receipts.length - 1].seq;
  const reader = await t.token(tenant, 'audit:read');
  const get = async (path: string) => {
    const res = await call<Record<string, unknown> & { projected_seq?: number }>(t.url, 'GET', path, { token: reader });
    assert.equal(res.status, 200, res.text);
    return res.body;
  };
  const paths = [`/v1/events?trace_id=${traces[0]}`, '/v1/traces', '/v1/reports/tools', '/v1/reports/loops', '/v1/reports/agents'];
  const answers = async () => Promise.all(paths.map(get));
  const projectedAll = async () => {
    for (let i = 0; i < 200; i++) {
      const a = await answers();
      // the lists say how far the projection is; the reports (same read models) are compared whole
      if (a[0].projected_seq === head && a[1].projected_seq === head) return a;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail('the read models did not reach the head');
  };

  const before = await projectedAll();
  assert.equal((before[0].events as unknown[]).length, 12);

  // what crash recovery does to unlogged tables
  await asSuperuser(t.db, (c) => c.query(`TRUNCATE ${READ_MODELS.join(', ')}`));
  const during = await get(`/v1/events?trace_id=${traces[0]}`);
  assert.ok(
    during.projected_seq! < head || (during.events as unknown[]).length === 12,
    `an answer claimed projected_seq ${during.projected_seq} with ${(during.events as unknown[]).length} of 12 events`,
  );

  assert.deepEqual(await projectedAll(), before, 'the rebuilt read models answer as before');
});
