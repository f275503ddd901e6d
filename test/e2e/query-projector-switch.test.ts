import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { newSpanId, newTraceId } from '../../src/client/ledger-client';
import { startTestApp, type TestApp } from '../support/app';
import { client, event, producerKey, registerKey } from '../support/factories';
import { call } from '../support/http';
import { startAppOn, type ExtraApp } from '../support/process';

/**
 * QUERY_PROJECTOR=false: a process that ingests and answers queries but
 * projects nothing; the read models are what another process (a projection
 * worker on the same database) leaves, and the answer says how far that is.
 */

interface Page {
  events: { seq: number }[];
  projected_seq: number;
}

let t: TestApp;
let worker: ExtraApp | undefined;

before(async () => {
  t = await startTestApp({ QUERY_PROJECTOR: 'false' });
});
after(async () => {
  await worker?.close();
  await t.close();
});

test('with QUERY_PROJECTOR=false nothing is projected here; a projecting process on the same database fills the read models', async () => {
  const tenant = 'projector-switch';
  const key = await producerKey();
  await registerKey(t.url, await t.token(tenant, 'admin'), key);
  const trace = newTraceId();
  const receipts = await client(t.url, await t.token(tenant, 'events:write'), key).send(
    Array.from({ length: 12 }, (_, i) => event({ trace_id: trace, span_id: newSpanId(), type: 'tool.call', name: `tool-${i % 3}` })),
  );
  const head = receipts[receipts.length - 1].seq;
  const reader = await t.token(tenant, 'audit:read');

  // answered at once (no wait for a projection that this process will never do), and says so
  await new Promise((r) => setTimeout(r, 300));
  const before = await call<Page>(t.url, 'GET', `/v1/events?trace_id=${trace}`, { token: reader });
  assert.equal(before.status, 200, before.text);
  assert.equal(before.body.projected_seq, 0);
  assert.deepEqual(before.body.events, []);

  // a projection worker (the default, QUERY_PROJECTOR=true) on the same database catches up from the cursor
  worker = await startAppOn(t.db, { ...t.config, env: { ...t.config.env, QUERY_PROJECTOR: true } });
  const deadline = Date.now() + 10_000;
  let page = before.body;
  while (page.projected_seq < head && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    page = (await call<Page>(t.url, 'GET', `/v1/events?trace_id=${trace}`, { token: reader })).body;
  }
  assert.equal(page.projected_seq, head, 'the read models reached the head through the other process');
  assert.deepEqual(
    page.events.map((e) => e.seq).sort((a, b) => a - b),
    receipts.map((r) => r.seq),
  );
});
