import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { TraceEvent } from '../../src/core/event';
import { AgentLedger, LedgerQueueFullError } from '../../src/sdk';
import { startTestApp, type TestApp } from '../support/app';
import { producerKey, registerKey, type TestProducer } from '../support/factories';
import { eventually, storedEvents } from '../support/ledger-events';

/**
 * The SDK against the real service: batching by size and by time, ordered
 * delivery, retry after a 503 with the same ids (a local fake upstream in
 * front of the service answers the 503), shutdown flush, the full-queue
 * policies, and the run helpers' trace tree.
 */

interface Upstream {
  url: string;
  /** Bodies of the POST /v1/events requests it saw. */
  posts: string[];
  close(): Promise<void>;
}

/**
 * A proxy to the service that answers the first `fail` POST /v1/events with
 * 503: before forwarding ("lost") or after the service committed ("after").
 */
async function upstream(target: string, fail: number, when: 'before' | 'after' | 'hang'): Promise<Upstream> {
  const posts: string[] = [];
  const read = (req: IncomingMessage) =>
    new Promise<string>((res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => res(Buffer.concat(chunks).toString('utf8')));
    });
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await read(req);
      const isPost = req.method === 'POST' && req.url === '/v1/events';
      if (isPost) posts.push(body);
      if (isPost && when === 'hang') return;
      const failing = isPost && posts.length <= fail;
      if (failing && when === 'before') {
        res.writeHead(503, { 'content-type': 'application/problem+json' }).end('{"code":"unavailable","detail":"fake upstream"}');
        return;
      }
      const forwarded = await fetch(new URL(req.url!, target), {
        method: req.method,
        headers: { authorization: req.headers.authorization ?? '', 'content-type': req.headers['content-type'] ?? 'application/json' },
        body: req.method === 'GET' ? undefined : body,
      });
      const text = await forwarded.text();
      if (failing) res.writeHead(503).end('{"detail":"committed, but the answer was lost"}');
      else res.writeHead(forwarded.status, { 'content-type': forwarded.headers.get('content-type') ?? 'application/json' }).end(text);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    posts,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('SDK batching client', () => {
  let t: TestApp;
  let key: TestProducer;
  let writer: string;
  const TENANT = 'sdk';

  before(async () => {
    t = await startTestApp();
    key = await producerKey();
    await registerKey(t.url, await t.token(TENANT, 'admin'), key);
    writer = await t.token(TENANT, 'events:write');
  });
  after(() => t.close());

  const stored = async (session: string) => (await storedEvents(t.db, TENANT)).filter((e) => e.event.session_id === session);

  it('sends a full batch at once and the rest by time, in recording order', async () => {
    const ledger = new AgentLedger({ baseUrl: t.url, token: writer, key, maxBatchEvents: 10, flushIntervalMs: 100 });
    const run = ledger.startRun({ agent: 'support-agent', session_id: 'conv-batch' });
    for (let i = 0; i < 23; i++) run.custom('custom.step', `step-${i}`, { i });
    run.completed();
    // 25 events: two full batches go at once, the last 5 by the timer
    await eventually(async () => ((await stored('conv-batch')).length === 25 ? true : undefined), 5000, '25 events');
    assert.equal(ledger.stats.batches, 3);
    assert.equal(ledger.stats.sent, 25);
    const names = (await stored('conv-batch')).map((e) => e.event.name);
    assert.deepEqual(names, ['support-agent', ...Array.from({ length: 23 }, (_, i) => `step-${i}`), 'support-agent']);
    await ledger.shutdown();
  });

  it('shutdown() flushes what is queued; recording after it throws', async () => {
    const ledger = new AgentLedger({ baseUrl: t.url, token: writer, key, maxBatchEvents: 100, flushIntervalMs: 60_000 });
    const run = ledger.startRun({ agent: 'a', session_id: 'conv-shutdown' });
    run.toolCall('lookup_order', { order_id: 'A-1' }).result({ status: 'shipped' });
    run.completed();
    assert.equal((await stored('conv-shutdown')).length, 0, 'nothing sent before the timer or a full batch');
    await ledger.shutdown();
    assert.equal((await stored('conv-shutdown')).length, 4);
    assert.throws(() => run.completed(), /shut down/);
  });

  it('retries after a 503 with the same event ids; a lost answer does not duplicate', async () => {
    for (const when of ['before', 'after'] as const) {
      const up = await upstream(t.url, 1, when);
      const session = `conv-503-${when}`;
      const receipts: number[] = [];
      const ledger = new AgentLedger({ baseUrl: up.url, token: writer, key, backoffMs: 10, onReceipts: (r) => receipts.push(...r.map((x) => x.seq)) });
      const run = ledger.startRun({ agent: 'a', session_id: session });
      run.modelCall('gpt-4.1', { input_tokens: 10, output_tokens: 2 });
      run.completed();
      await ledger.shutdown();
      await up.close();
      assert.equal(up.posts.length, 2, `${when}: one 503, one retry`);
      assert.equal(up.posts[0], up.posts[1], `${when}: the retry is byte-identical (same ids, same signature)`);
      const evs = await stored(session);
      assert.equal(evs.length, 3, `${when}: stored once`);
      assert.deepEqual(receipts, evs.map((e) => e.seq), `${when}: the receipts name the stored entries`);
    }
  });

  it('a batch that still fails stays queued and goes out at a later flush, unchanged', async () => {
    const up = await upstream(t.url, 3, 'before');
    const ledger = new AgentLedger({ baseUrl: up.url, token: writer, key, backoffMs: 5, maxAttempts: 2, flushIntervalMs: 60_000 });
    ledger.startRun({ agent: 'a', session_id: 'conv-later' }).completed();
    await assert.rejects(ledger.flush(), /503/);
    assert.equal(ledger.stats.queued, 2);
    assert.equal(ledger.stats.deferred, 1);
    await ledger.flush();
    assert.equal(ledger.stats.queued, 0);
    assert.equal(new Set(up.posts).size, 1, 'every attempt sent the same batch');
    assert.equal((await stored('conv-later')).length, 2);
    await ledger.shutdown();
    await up.close();
  });

  it('a full queue throws by default, or drops and counts with whenFull "drop"', async () => {
    const up = await upstream(t.url, 0, 'hang');
    const strict = new AgentLedger({ baseUrl: up.url, token: writer, key, maxQueueEvents: 5, maxBatchEvents: 100, flushIntervalMs: 60_000 });
    const run = strict.startRun({ agent: 'a' });
    for (let i = 0; i < 4; i++) run.retry('call_api', i + 1);
    assert.throws(() => run.retry('call_api', 5), LedgerQueueFullError);
    assert.equal(strict.stats.queued, 5);

    const dropped: TraceEvent[] = [];
    const lossy = new AgentLedger({ baseUrl: up.url, token: writer, key, maxQueueEvents: 2, whenFull: 'drop', onDrop: (e) => dropped.push(e), flushIntervalMs: 60_000 });
    const r2 = lossy.startRun({ agent: 'a' });
    r2.evaluation('helpfulness', 0.8);
    const third = r2.evaluation('tone', 0.5);
    assert.equal(lossy.record(third), false, 'the queue (2) already holds run.started and the first evaluation');
    assert.equal(lossy.stats.dropped, 2);
    assert.equal(dropped.length, 2);
    await up.close();
  });

  it('a batch the ledger refuses for good is reported and dropped, not retried', async () => {
    const errors: { status?: number; n: number }[] = [];
    const ledger = new AgentLedger({
      baseUrl: t.url,
      token: await t.token(TENANT, 'audit:read'),
      key,
      onError: (err, evs) => errors.push({ status: (err as { status?: number }).status, n: evs.length }),
    });
    ledger.startRun({ agent: 'a' }).completed();
    await ledger.shutdown();
    assert.deepEqual(errors, [{ status: 403, n: 2 }]);
    assert.equal(ledger.stats.refused, 2);
  });

  it('the run helpers make a valid trace tree: tool and approval spans, a nested handoff run', async () => {
    const ledger = new AgentLedger({ baseUrl: t.url, token: writer, key });
    const run = ledger.startRun({ agent: 'support-agent', session_id: 'conv-helpers', attributes: { input: 'refund A-1009' } });
    run.modelCall('gpt-4.1', { input_tokens: 100, output_tokens: 20, duration_ms: 800 });
    run.validation('pii-check', true);
    const approval = run.approvalRequested('refund_payment', { order_id: 'A-1009', amount: 250 });
    run.interrupted('waiting for a manager');
    approval.granted({ approver: 'maria@shop.example', role: 'manager' });
    run.resumed();
    run.toolCall('refund_payment', { order_id: 'A-1009', amount: 250 }, { call_id: 'c1' }).result({ refunded: true });
    run.blocked('delete_customer', 'not allowed for support');
    run.evaluation('resolution', 1);
    const billing = run.handoff('billing-agent');
    billing.toolCall('send_invoice', { order_id: 'A-1009' }).failed(new Error('smtp down'));
    billing.failed(new Error('could not send'));
    run.completed('refunded');
    await ledger.shutdown();

    const evs = (await stored('conv-helpers')).map((e) => e.event);
    const trace = evs[0].trace_id;
    assert.ok(evs.every((e) => e.trace_id === trace));
    const by = (type: string, agent = 'support-agent') => evs.filter((e) => e.type === type && e.agent === agent);
    const root = by('run.started')[0];
    assert.equal(root.parent_span_id, null);
    const [requested] = by('approval.requested');
    const [granted] = by('approval.granted');
    assert.equal(granted.span_id, requested.span_id);
    assert.equal(granted.parent_span_id, root.span_id);
    assert.deepEqual(granted.attributes, { tool: 'refund_payment', args: { order_id: 'A-1009', amount: 250 }, approver: 'maria@shop.example', role: 'manager', reason: null });
    const [call] = by('tool.call');
    const [result] = by('tool.result');
    assert.equal(call.span_id, result.span_id);
    assert.equal(call.parent_span_id, root.span_id);
    assert.ok(typeof result.duration_ms === 'number');
    assert.equal(by('run.interrupted')[0].span_id, root.span_id);
    const [handoff] = by('handoff');
    assert.deepEqual(handoff.attributes, { from_agent: 'support-agent', target_agent: 'billing-agent' });
    const [billingRun] = by('run.started', 'billing-agent');
    assert.equal(billingRun.parent_span_id, handoff.span_id);
    const [failedTool] = by('tool.result', 'billing-agent');
    assert.equal(failedTool.status, 'error');
    assert.deepEqual(failedTool.attributes?.error, { type: 'Error', message: 'smtp down' });
    assert.equal(by('run.failed', 'billing-agent')[0].span_id, billingRun.span_id);
    assert.equal(by('run.completed')[0].span_id, root.span_id);
    assert.equal(evs.length, 17);
  });
});
