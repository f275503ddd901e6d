import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { DataSource } from 'typeorm';
import { AlertsService } from '../../src/alerts/alerts.service';
import { newTraceId } from '../../src/client/ledger-client';
import type { ViolationRecord } from '../../src/policy/violation-sink';
import type { AppConfig } from '../../src/runtime/runtime';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser, randomSuffix, type TestDatabase } from '../support/db';
import { event, producerKey, registerKey, signedBatch } from '../support/factories';
import { assertProblem, call } from '../support/http';
import { startAppOn, type ExtraApp } from '../support/process';

/**
 * Webhook alerts end to end: the real app, real HTTP receivers on 127.0.0.1
 * (the only address the tests ever send to), signatures checked with the
 * `standardwebhooks` package, retries on a short schedule.
 */

const SCHEDULE_MS = 200;
const ENV = {
  WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  WEBHOOK_RETRY_SCHEDULE: `${SCHEDULE_MS}ms,${SCHEDULE_MS}ms,${SCHEDULE_MS}ms`,
  WEBHOOK_POLL_MS: '50',
  WEBHOOK_TIMEOUT_MS: '1500',
  PUBLIC_BASE_URL: 'https://ledger.example.test',
};

interface Hit {
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

/** A webhook receiver on 127.0.0.1 that answers the n-th request (0-based) with `answer(n)`. */
async function receiver(answer: (n: number, hit: Hit) => Answer = () => ({ status: 204 })) {
  const hits: Hit[] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      hits.push(hit);
      const a = answer(hits.length - 1, hit);
      if (a === 'hang') return;
      res.writeHead(a.status, a.headers ?? {});
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface WebhookView {
  id: string;
  url: string;
  event_types: string[];
  min_severity: string;
  format: string;
  secret?: string;
  disabled_at: string | null;
  disabled_reason: string | null;
}

interface Attempt {
  attempt: number;
  at: string;
  status_code: number | null;
  latency_ms: number | null;
  response_excerpt: string | null;
  error: string | null;
}

interface Delivery {
  id: string;
  endpoint_id: string;
  webhook_id: string;
  event_type: string;
  status: 'pending' | 'delivered' | 'failed' | 'dead';
  attempts: number;
  next_attempt_at: string | null;
  last_status: number | null;
  delivered_at: string | null;
  payload: { type: string; timestamp: string; data: Record<string, unknown> };
  attempt_log: Attempt[];
}

function violation(tenant: string, over: Partial<ViolationRecord> = {}): ViolationRecord {
  return {
    id: randomUUID(),
    tenant,
    rule_id: 'refund-needs-approval',
    severity: 'high',
    kind: 'preceded_by',
    policy_set_hash: 'ab'.repeat(32),
    seq: 1,
    related_seqs: [],
    trace_id: newTraceId(),
    session_id: 'conv-7f3a',
    agent: 'support-agent',
    message: 'refund_payment(order A-1009, amount 250) ran with no prior approval.granted',
    retro: false,
    ledger_seq: 2,
    created_at: new Date().toISOString(),
    ...over,
  };
}

/** What one app instance offers the tests. */
function helpers(app: { app: TestApp['app']; url: string }, token: (tenant: string, scope: string) => Promise<string>) {
  const alerts = app.app.get(AlertsService);
  const ds = app.app.get(DataSource);
  return {
    /** What the policy evaluator does: hand violations to the sinks inside its transaction. */
    raise: (...vs: ViolationRecord[]) => ds.transaction((tx) => alerts.onViolations(tx, vs)),
    create: async (tenant: string, body: Record<string, unknown>) =>
      call<WebhookView>(app.url, 'POST', '/v1/webhooks', { token: await token(tenant, 'admin'), json: body }),
    deliveries: async (tenant: string, endpointId: string) => {
      const res = await call<{ deliveries: Delivery[] }>(app.url, 'GET', `/v1/webhooks/${endpointId}/deliveries`, {
        token: await token(tenant, 'admin'),
      });
      assert.equal(res.status, 200, res.text);
      return res.body.deliveries;
    },
    retry: async (tenant: string, deliveryId: string) =>
      call<Delivery>(app.url, 'POST', `/v1/webhooks/deliveries/${deliveryId}/retry`, { token: await token(tenant, 'admin') }),
    enqueue: (tenant: string, data: Record<string, unknown>, severity?: string) =>
      ds.transaction((tx) => alerts.enqueue(tx, tenant, 'violation.created', data, severity)),
  };
}

describe('webhooks', () => {
  let t: TestApp;
  let h: ReturnType<typeof helpers>;
  const receivers: { close(): Promise<void> }[] = [];
  const tenant = () => `wh-${randomSuffix()}`;
  const recv = async (answer?: (n: number, hit: Hit) => Answer) => {
    const r = await receiver(answer);
    receivers.push(r);
    return r;
  };
  const endpoint = async (tn: string, url: string, extra: Record<string, unknown> = {}) => {
    const res = await h.create(tn, { url, event_types: ['violation.created'], ...extra });
    assert.equal(res.status, 201, res.text);
    return res.body;
  };

  before(async () => {
    t = await startTestApp(ENV);
    h = helpers(t, (tn, scope) => t.token(tn, scope));
  });
  after(async () => {
    await t.close();
    await Promise.all(receivers.map((r) => r.close()));
  });

  describe('endpoints', () => {
    test('POST returns the whsec_ secret once (201); GET lists endpoints without it', async () => {
      const tn = tenant();
      const r = await recv();
      const res = await h.create(tn, { url: r.url, event_types: ['violation.created'], min_severity: 'high', format: 'slack' });
      assert.equal(res.status, 201, res.text);
      assert.match(res.body.secret!, /^whsec_[A-Za-z0-9+/]{43}=$/);
      assert.equal(Buffer.from(res.body.secret!.slice(6), 'base64').length, 32);
      assert.deepEqual(
        { ...res.body, id: undefined, secret: undefined, created_at: undefined },
        {
          id: undefined,
          secret: undefined,
          created_at: undefined,
          url: r.url,
          event_types: ['violation.created'],
          min_severity: 'high',
          format: 'slack',
          disabled_at: null,
          disabled_reason: null,
        },
      );
      const list = await call<{ webhooks: WebhookView[] }>(t.url, 'GET', '/v1/webhooks', { token: await t.token(tn, 'admin') });
      assert.equal(list.status, 200, list.text);
      assert.equal(list.body.webhooks.length, 1);
      assert.equal(list.body.webhooks[0].id, res.body.id);
      assert.ok(!list.text.includes('whsec_'), 'the list never shows a secret');
      assert.ok(!('secret' in list.body.webhooks[0]));
    });

    test('defaults: min_severity low, format standard', async () => {
      const ep = await endpoint(tenant(), (await recv()).url);
      assert.equal(ep.min_severity, 'low');
      assert.equal(ep.format, 'standard');
    });

    test('bad bodies are 400 naming the field; unknown fields too', async () => {
      const tn = tenant();
      const url = (await recv()).url;
      assertProblem(await h.create(tn, { url, event_types: ['violation.exploded'] }), 400, 'validation_failed', ['event_types[0]']);
      assertProblem(await h.create(tn, { url, event_types: [] }), 400, 'validation_failed', ['event_types']);
      assertProblem(await h.create(tn, { url }), 400, 'validation_failed', ['event_types']);
      assertProblem(await h.create(tn, { url, event_types: ['violation.created'], format: 'teams' }), 400, 'validation_failed', ['format']);
      assertProblem(await h.create(tn, { url, event_types: ['violation.created'], min_severity: 'huge' }), 400, 'validation_failed', [
        'min_severity',
      ]);
      assertProblem(await h.create(tn, { url, event_types: ['violation.created'], secret: 'mine' }), 400, 'validation_failed', ['secret']);
      assertProblem(await h.create(tn, { url: 'not a url', event_types: ['violation.created'] }), 400, 'webhook_url_refused', ['url']);
    });

    test('admin scope is required; no token is 401', async () => {
      const tn = tenant();
      const reader = await t.token(tn, 'audit:read events:write');
      const body = { url: (await recv()).url, event_types: ['violation.created'] };
      assertProblem(await call(t.url, 'POST', '/v1/webhooks', { token: reader, json: body }), 403, 'forbidden');
      assertProblem(await call(t.url, 'GET', '/v1/webhooks', { token: reader }), 403, 'forbidden');
      assertProblem(await call(t.url, 'POST', '/v1/webhooks', { json: body }), 401, 'unauthenticated');
      assertProblem(await call(t.url, 'GET', `/v1/webhooks/${randomUUID()}/deliveries`, { token: reader }), 403, 'forbidden');
    });

    test("another tenant's endpoints and deliveries are 404", async () => {
      const a = tenant();
      const b = tenant();
      const r = await recv();
      const ep = await endpoint(a, r.url);
      await h.raise(violation(a));
      const [d] = await waitFor('a delivery', async () => {
        const ds = await h.deliveries(a, ep.id);
        return ds.length && ds[0].status === 'delivered' ? ds : undefined;
      });
      const bAdmin = await t.token(b, 'admin');
      assertProblem(await call(t.url, 'GET', `/v1/webhooks/${ep.id}/deliveries`, { token: bAdmin }), 404, 'not_found');
      assertProblem(await call(t.url, 'POST', `/v1/webhooks/deliveries/${d.id}/retry`, { token: bAdmin }), 404, 'not_found');
      const list = await call<{ webhooks: WebhookView[] }>(t.url, 'GET', '/v1/webhooks', { token: bAdmin });
      assert.deepEqual(list.body.webhooks, []);
      assertProblem(await call(t.url, 'GET', `/v1/webhooks/not-a-uuid/deliveries`, { token: bAdmin }), 400, 'validation_failed', ['path.id']);
    });
    test('the worker and the delivery log queries can use their indexes (EXPLAIN)', async () => {
      const plans = await asSuperuser(t.db, async (c) => {
        await c.query('SET enable_seqscan = off');
        const explain = async (sql: string, params: unknown[] = []) =>
          (await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params)).rows.map((r) => r['QUERY PLAN']).join('\n');
        return {
          due: await explain(
            `SELECT tenant_id, id FROM webhook_deliveries WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT 16 FOR UPDATE SKIP LOCKED`,
          ),
          log: await explain(
            `SELECT id FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY created_at DESC, id DESC LIMIT 50`,
            ['acme', randomUUID()],
          ),
        };
      });
      assert.match(plans.due, /webhook_deliveries_due/, plans.due);
      assert.match(plans.log, /webhook_deliveries_endpoint/, plans.log);
    });
  });

  describe('delivery', () => {
    test('a standard delivery: signed per Standard Webhooks, verified by the receiver with the whsec_ secret', async () => {
      const tn = tenant();
      let secret = '';
      const verified: unknown[] = [];
      const r = await recv((_n, hit) => {
        try {
          verified.push(new Webhook(secret).verify(hit.body, hit.headers as Record<string, string>));
          return { status: 200, body: 'ok' };
        } catch (err) {
          return { status: 400, body: String(err) };
        }
      });
      const ep = await endpoint(tn, r.url);
      secret = ep.secret!;
      const v = violation(tn);
      await h.raise(v);
      await waitFor('the webhook', () => r.hits.length === 1);
      const [hit] = r.hits;
      assert.equal(verified.length, 1, 'the receiver verified the signature');
      assert.match(hit.headers['webhook-id'] as string, /^msg_[0-9a-f]{32}$/);
      assert.match(hit.headers['webhook-timestamp'] as string, /^\d{10}$/);
      assert.ok(Math.abs(Number(hit.headers['webhook-timestamp']) - Date.now() / 1000) < 10);
      assert.match(hit.headers['webhook-signature'] as string, /^v1,[A-Za-z0-9+/]{43}=$/);
      assert.equal(hit.headers['content-type'], 'application/json');

      const body = JSON.parse(hit.body) as { type: string; timestamp: string; data: Record<string, unknown> };
      assert.equal(body.type, 'violation.created');
      assert.ok(!Number.isNaN(Date.parse(body.timestamp)));
      assert.deepEqual(body.data.violation, {
        id: v.id,
        rule_id: v.rule_id,
        severity: 'high',
        kind: 'preceded_by',
        message: v.message,
        policy_set_hash: v.policy_set_hash,
        seq: 1,
        related_seqs: [],
        trace_id: v.trace_id,
        session_id: 'conv-7f3a',
        agent: 'support-agent',
        retro: false,
        ledger_seq: 2,
        created_at: v.created_at,
      });
      assert.equal(body.data.tenant, tn);
      assert.equal(body.data.trace_url, `https://ledger.example.test/v1/traces/${v.trace_id}`);

      // a forged signature fails the receiver's check: the test can fail
      assert.throws(() =>
        new Webhook(secret).verify(hit.body.replace('high', 'low'), hit.headers as Record<string, string>),
      );

      const [d] = await waitFor('delivered', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' ? ds : undefined;
      });
      assert.equal(d.webhook_id, hit.headers['webhook-id']);
      assert.equal(d.attempts, 1);
      assert.equal(d.last_status, 200);
      assert.equal(d.next_attempt_at, null);
      assert.ok(d.delivered_at);
      assert.equal(d.attempt_log.length, 1);
      assert.equal(d.attempt_log[0].status_code, 200);
      assert.equal(d.attempt_log[0].response_excerpt, 'ok');
      assert.equal(d.attempt_log[0].error, null);
      assert.ok(d.attempt_log[0].latency_ms! >= 0);
    });

    test('min_severity filters; every subscribed endpoint of the tenant gets its own delivery; other tenants none', async () => {
      const tn = tenant();
      const other = tenant();
      const all = await recv();
      const critical = await recv();
      const foreign = await recv();
      await endpoint(tn, all.url, { min_severity: 'medium' });
      await endpoint(tn, critical.url, { min_severity: 'critical' });
      await endpoint(other, foreign.url);
      await h.raise(violation(tn, { severity: 'low' }), violation(tn, { severity: 'high' }), violation(tn, { severity: 'critical' }));
      await waitFor('deliveries', () => all.hits.length === 2 && critical.hits.length === 1);
      await sleep(300);
      assert.equal(all.hits.length, 2);
      assert.equal(critical.hits.length, 1);
      assert.equal(foreign.hits.length, 0);
      const sev = (hit: Hit) => (JSON.parse(hit.body) as { data: { violation: { severity: string } } }).data.violation.severity;
      assert.deepEqual(all.hits.map(sev).sort(), ['critical', 'high']);
      assert.deepEqual(critical.hits.map(sev), ['critical']);
      assert.notEqual(all.hits[0].headers['webhook-id'], all.hits[1].headers['webhook-id']);
    });

    test('a receiver that fails twice then succeeds: 3 attempts recorded, the same webhook-id each time', async () => {
      const tn = tenant();
      const big = 'e'.repeat(5000);
      const r = await recv((n) => (n < 2 ? { status: 500, body: n === 0 ? big : 'still down' } : { status: 200, body: 'finally' }));
      const ep = await endpoint(tn, r.url);
      await h.raise(violation(tn));
      await waitFor('three attempts', () => r.hits.length === 3);
      const ids = new Set(r.hits.map((x) => x.headers['webhook-id']));
      assert.equal(ids.size, 1, 'one webhook-id across retries');
      for (let i = 1; i < 3; i++) assert.ok(r.hits[i].at - r.hits[i - 1].at >= SCHEDULE_MS - 20, 'the schedule is kept');
      const [d] = await waitFor('delivered', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' ? ds : undefined;
      });
      assert.equal(d.webhook_id, [...ids][0]);
      assert.equal(d.attempts, 3);
      assert.deepEqual(
        d.attempt_log.map((a) => [a.attempt, a.status_code]),
        [
          [1, 500],
          [2, 500],
          [3, 200],
        ],
      );
      assert.equal(Buffer.byteLength(d.attempt_log[0].response_excerpt!), 1024, 'the excerpt is cut at 1 KiB');
      assert.equal(d.attempt_log[1].response_excerpt, 'still down');
      assert.match(d.attempt_log[0].error!, /HTTP 500/);
      assert.equal(d.attempt_log[2].error, null);
      await sleep(3 * SCHEDULE_MS);
      assert.equal(r.hits.length, 3, 'nothing more after success');
      const metrics = await call(t.url, 'GET', '/metrics');
      assert.match(metrics.text, /^agent_ledger_webhook_attempts_total\{outcome="failed"\} [1-9]\d*$/m);
      assert.match(metrics.text, /^agent_ledger_webhook_attempts_total\{outcome="delivered"\} [1-9]\d*$/m);
    });

    test('the schedule ends: a receiver that always fails gets 1 + schedule attempts, then the delivery is dead', async () => {
      const tn = tenant();
      const r = await recv(() => ({ status: 502 }));
      const ep = await endpoint(tn, r.url);
      await h.raise(violation(tn));
      const [d] = await waitFor('dead', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'dead' ? ds : undefined;
      });
      assert.equal(d.attempts, 4);
      assert.equal(r.hits.length, 4);
      assert.match(d.attempt_log[3].error!, /retries exhausted/);
      await sleep(3 * SCHEDULE_MS);
      assert.equal(r.hits.length, 4);
      // the endpoint stays enabled: only a 410 disables it
      const list = await call<{ webhooks: WebhookView[] }>(t.url, 'GET', '/v1/webhooks', { token: await t.token(tn, 'admin') });
      assert.equal(list.body.webhooks[0].disabled_at, null);
    });

    test('410 Gone: no more attempts, the endpoint is disabled with the reason, later violations enqueue nothing', async () => {
      const tn = tenant();
      const r = await recv(() => ({ status: 410, body: 'gone' }));
      const ep = await endpoint(tn, r.url);
      await h.raise(violation(tn));
      const [d] = await waitFor('dead', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'dead' ? ds : undefined;
      });
      assert.equal(d.attempts, 1);
      assert.equal(d.last_status, 410);
      assert.equal(d.next_attempt_at, null);
      const list = await call<{ webhooks: WebhookView[] }>(t.url, 'GET', '/v1/webhooks', { token: await t.token(tn, 'admin') });
      const disabled = list.body.webhooks.find((w) => w.id === ep.id)!;
      assert.ok(disabled.disabled_at);
      assert.match(disabled.disabled_reason!, /410 Gone/);

      assert.equal(await h.enqueue(tn, { any: 'thing' }, 'critical'), 0, 'a disabled endpoint gets no deliveries');
      await h.raise(violation(tn));
      await sleep(4 * SCHEDULE_MS);
      assert.equal(r.hits.length, 1, 'exactly one request ever');
      assert.equal((await h.deliveries(tn, ep.id)).length, 1);

      // a replay to a disabled endpoint is refused, saying why
      const p = assertProblem(await h.retry(tn, d.id), 409, 'webhook_endpoint_disabled');
      assert.match(p.detail, /410 Gone/);
    });

    test('Retry-After is honoured over a shorter schedule (seconds and HTTP date)', async () => {
      const tn = tenant();
      const r = await recv((n) => {
        if (n === 0) return { status: 503, headers: { 'retry-after': '1' } };
        if (n === 1) return { status: 429, headers: { 'retry-after': new Date(Date.now() + 2000).toUTCString() } };
        return { status: 200 };
      });
      const ep = await endpoint(tn, r.url);
      await h.raise(violation(tn));
      await waitFor('three attempts', () => r.hits.length === 3, 15_000);
      assert.ok(r.hits[1].at - r.hits[0].at >= 1000, `waited ${r.hits[1].at - r.hits[0].at} ms after Retry-After: 1`);
      // the HTTP date has second precision: at least one second, in practice about two
      assert.ok(r.hits[2].at - r.hits[1].at >= 1000, `waited ${r.hits[2].at - r.hits[1].at} ms after an HTTP-date Retry-After`);
      const [d] = await waitFor('delivered', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' ? ds : undefined;
      });
      assert.deepEqual(
        d.attempt_log.map((a) => a.status_code),
        [503, 429, 200],
      );
    });

    test('a receiver that never answers: the attempt times out and is recorded as such', async () => {
      const tn = tenant();
      const r = await recv((n) => (n === 0 ? 'hang' : { status: 200 }));
      const ep = await endpoint(tn, r.url);
      await h.raise(violation(tn));
      const [d] = await waitFor('delivered after a timeout', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' ? ds : undefined;
      });
      assert.equal(d.attempts, 2);
      assert.equal(d.attempt_log[0].status_code, null);
      assert.match(d.attempt_log[0].error!, /no complete response within 1500 ms/);
      assert.ok(d.attempt_log[0].latency_ms! >= 1400);
    });

    test('replay: POST /v1/webhooks/deliveries/{id}/retry sends it again with the same webhook-id', async () => {
      const tn = tenant();
      let secret = '';
      const r = await recv((_n, hit) => {
        new Webhook(secret).verify(hit.body, hit.headers as Record<string, string>);
        return { status: 200 };
      });
      const ep = await endpoint(tn, r.url);
      secret = ep.secret!;
      await h.raise(violation(tn));
      const [d] = await waitFor('delivered', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' ? ds : undefined;
      });
      const res = await h.retry(tn, d.id);
      assert.equal(res.status, 202, res.text);
      assert.equal(res.body.id, d.id);
      assert.equal(res.body.webhook_id, d.webhook_id);
      await waitFor('the replay', () => r.hits.length === 2);
      assert.equal(r.hits[1].headers['webhook-id'], r.hits[0].headers['webhook-id']);
      assert.equal(r.hits[1].headers['webhook-id'], d.webhook_id);
      assert.equal(r.hits[1].body, r.hits[0].body, 'the same message');
      const [again] = await waitFor('delivered again', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' && ds[0].attempts === 2 ? ds : undefined;
      });
      assert.deepEqual(
        again.attempt_log.map((a) => [a.attempt, a.status_code]),
        [
          [1, 200],
          [2, 200],
        ],
      );
      assertProblem(await h.retry(tn, randomUUID()), 404, 'not_found');
    });

    test('replaying a delivery that is still being retried is a 409 naming the next attempt', async () => {
      const tn = tenant();
      const r = await recv(() => ({ status: 500 }));
      const ep = await endpoint(tn, r.url);
      // a schedule long enough to catch it between attempts: a Retry-After of a minute
      const slow = await recv(() => ({ status: 503, headers: { 'retry-after': '60' } }));
      const ep2 = await endpoint(tn, slow.url);
      await h.raise(violation(tn));
      const [d] = await waitFor('a failed attempt', async () => {
        const ds = await h.deliveries(tn, ep2.id);
        return ds[0]?.status === 'failed' ? ds : undefined;
      });
      const p = assertProblem(await h.retry(tn, d.id), 409, 'webhook_delivery_scheduled');
      assert.match(p.detail, /next attempt at/);
      assert.ok(Date.parse(d.next_attempt_at!) - Date.now() > 50_000);
      assert.ok((await h.deliveries(tn, ep.id)).length === 1);
    });

    test('slack format: a Slack message with rule, severity, agent, action and a link to the trace', async () => {
      const tn = tenant();
      const r = await recv(() => ({ status: 200, body: 'ok' }));
      const ep = await endpoint(tn, r.url, { format: 'slack' });
      const v = violation(tn, { rule_id: 'support-agent-never-runs-shell', severity: 'critical', kind: 'forbidden', agent: 'support-agent' });
      await h.raise(v);
      await waitFor('the message', () => r.hits.length === 1);
      const msg = JSON.parse(r.hits[0].body) as { text: string; blocks: { type: string; [k: string]: unknown }[] };
      assert.deepEqual(Object.keys(msg).sort(), ['blocks', 'text']);
      assert.match(msg.text, /^\[CRITICAL\] support-agent-never-runs-shell: /);
      assert.deepEqual(
        msg.blocks.map((b) => b.type),
        ['header', 'section', 'section', 'context', 'actions'],
      );
      const fields = (msg.blocks[2].fields as { type: string; text: string }[]).map((f) => f.text);
      assert.deepEqual(fields.map((f) => f.split('\n')[0]), ['*Rule*', '*Severity*', '*Agent*', '*Action*']);
      assert.match(fields[0], /support-agent-never-runs-shell/);
      assert.match(fields[1], /critical/);
      assert.match(fields[2], /support-agent/);
      const traceUrl = `https://ledger.example.test/v1/traces/${v.trace_id}`;
      const button = (msg.blocks[4].elements as { url: string }[])[0];
      assert.equal(button.url, traceUrl);
      assert.ok(JSON.stringify(msg.blocks[3]).includes(`<${traceUrl}|trace ${v.trace_id}>`));
      // Slack ignores them, but the message is signed like any other
      new Webhook(ep.secret!).verify(r.hits[0].body, r.hits[0].headers as Record<string, string>);
      const [d] = await waitFor('delivered', async () => {
        const ds = await h.deliveries(tn, ep.id);
        return ds[0]?.status === 'delivered' ? ds : undefined;
      });
      assert.equal(d.payload.type, 'violation.created', 'the stored payload is the standard message; the format is applied when sending');
    });

    test('the delivery log pages newest first with a keyset cursor', async () => {
      const tn = tenant();
      const r = await recv();
      const ep = await endpoint(tn, r.url);
      for (let i = 0; i < 3; i++) await h.raise(violation(tn, { rule_id: `rule-${i}` }));
      await waitFor('three deliveries', () => r.hits.length === 3);
      const admin = await t.token(tn, 'admin');
      const page = (q: string) =>
        call<{ deliveries: Delivery[]; next_cursor: string | null }>(t.url, 'GET', `/v1/webhooks/${ep.id}/deliveries${q}`, { token: admin });
      const first = await page('?limit=2');
      assert.equal(first.status, 200, first.text);
      assert.equal(first.body.deliveries.length, 2);
      assert.ok(first.body.next_cursor);
      const second = await page(`?limit=2&cursor=${first.body.next_cursor}`);
      assert.equal(second.body.deliveries.length, 1);
      assert.equal(second.body.next_cursor, null);
      const rules = [...first.body.deliveries, ...second.body.deliveries].map(
        (d) => (d.payload.data.violation as { rule_id: string }).rule_id,
      );
      assert.deepEqual(rules, ['rule-2', 'rule-1', 'rule-0']);
      assertProblem(await page('?cursor=bm9wZQ'), 400, 'validation_failed', ['query.cursor']);
      assertProblem(await page('?limit=0'), 400, 'validation_failed', ['query.limit']);
      assertProblem(await page('?status=x'), 400, 'validation_failed');
    });

    test('AlertsService.enqueue: another event type can be sent through the same outbox', async () => {
      const tn = tenant();
      const r = await recv();
      const ep = await endpoint(tn, r.url);
      assert.equal(await h.enqueue(tn, { note: 'hello' }, null as unknown as string), 1);
      await waitFor('the webhook', () => r.hits.length === 1);
      assert.deepEqual(JSON.parse(r.hits[0].body).data, { note: 'hello' });
      assert.equal((await h.deliveries(tn, ep.id))[0].event_type, 'violation.created');
    });

    test('a rolled-back violation transaction leaves no delivery behind (outbox)', async () => {
      const tn = tenant();
      const r = await recv();
      const ep = await endpoint(tn, r.url);
      const alerts = t.app.get(AlertsService);
      await assert.rejects(
        t.app.get(DataSource).transaction(async (tx) => {
          await alerts.onViolations(tx, [violation(tn)]);
          throw new Error('the evaluator failed after the outbox write');
        }),
        /evaluator failed/,
      );
      await sleep(300);
      assert.equal(r.hits.length, 0);
      assert.deepEqual(await h.deliveries(tn, ep.id), []);
    });
  });

  describe('SSRF', () => {
    let open: ExtraApp;
    let hs: ReturnType<typeof helpers>;
    let connections = 0;
    let tcp: ReturnType<typeof createTcpServer>;
    let port = 0;

    before(async () => {
      // the same service without any allow-list (and without a worker: these tests only create endpoints)
      const config: AppConfig = { ...t.config, env: { ...t.config.env, WEBHOOK_ALLOWED_HOSTS: [], WEBHOOK_WORKER: false } };
      open = await startAppOn(t.db, config);
      hs = helpers(open, (tn, scope) => t.token(tn, scope));
      tcp = createTcpServer((s) => {
        connections++;
        s.destroy();
      });
      await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
      port = (tcp.address() as AddressInfo).port;
    });
    after(async () => {
      await open.close();
      await new Promise((r) => tcp.close(r));
    });

    const cases: [string, RegExp][] = [
      ['http://127.0.0.1:PORT/hooks', /the address 127\.0\.0\.1 is a loopback address/],
      ['http://localhost:PORT/hooks', /the host "localhost" resolves to (127\.0\.0\.1|::1), which is a loopback address/],
      ['http://[::1]:PORT/hooks', /the address ::1 is a loopback address/],
      ['http://[::ffff:127.0.0.1]:PORT/hooks', /loopback \(IPv4 127\.0\.0\.1 inside IPv6\)/],
      ['http://2130706433:PORT/hooks', /127\.0\.0\.1 is a loopback/],
      ['http://10.0.0.1/hooks', /the address 10\.0\.0\.1 is a private address/],
      ['http://192.168.1.20/hooks', /a private address/],
      ['http://169.254.169.254/latest/meta-data/', /the address 169\.254\.169\.254 is a link-local address/],
      ['http://100.64.0.1/', /CGNAT/],
      ['http://[fd12::1]/', /private \(unique local\)/],
      ['http://[fe80::1]/', /link-local/],
      ['http://224.0.0.1/', /multicast/],
      ['http://0.0.0.0:PORT/', /unspecified/],
      ['http://[::]:PORT/', /unspecified/],
      ['ftp://127.0.0.1:PORT/hooks', /the scheme "ftp" is not allowed; use http or https/],
      ['file:///etc/passwd', /the scheme "file" is not allowed/],
    ];
    for (const [template, why] of cases) {
      test(`refused with a clear 400: ${template}`, async () => {
        const tn = tenant();
        const res = await hs.create(tn, { url: template.replace('PORT', String(port)), event_types: ['violation.created'] });
        const p = assertProblem(res, 400, 'webhook_url_refused', ['url']);
        assert.match(p.detail, why);
        if (!/scheme/.test(p.detail)) assert.match(p.detail, /WEBHOOK_ALLOWED_HOSTS/);
        const list = await call<{ webhooks: unknown[] }>(open.url, 'GET', '/v1/webhooks', { token: await t.token(tn, 'admin') });
        assert.deepEqual(list.body.webhooks, [], 'nothing is stored');
      });
    }

    test('no connection was ever made to the refused loopback targets', () => {
      assert.equal(connections, 0);
    });
  });
});

describe('webhooks across a crash', () => {
  const receivers: { close(): Promise<void> }[] = [];
  after(() => Promise.all(receivers.map((r) => r.close())));

  async function stored(db: TestDatabase, tenant: string) {
    return asSuperuser(db, async (c) =>
      (
        await c.query<{ webhook_id: string; status: string; attempts: number }>(
          `SELECT webhook_id, status, attempts FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY created_at`,
          [tenant],
        )
      ).rows,
    );
  }

  test('a violation committed with its outbox row but not sent before the app stops is sent by the next instance, same webhook-id', async () => {
    const first = await startTestApp({ ...ENV, WEBHOOK_WORKER: 'false' });
    let second: ExtraApp | undefined;
    try {
      const r = await receiver();
      receivers.push(r);
      const h1 = helpers(first, (tn, s) => first.token(tn, s));
      const tn = `crash-${randomSuffix()}`;
      const res = await h1.create(tn, { url: r.url, event_types: ['violation.created'] });
      assert.equal(res.status, 201, res.text);
      await h1.raise(violation(tn));
      const [row] = await stored(first.db, tn);
      assert.equal(row.status, 'pending');
      assert.equal(row.attempts, 0);
      await first.app.close();
      assert.equal(r.hits.length, 0, 'nothing was sent before the stop');

      second = await startAppOn(first.db, { ...first.config, env: { ...first.config.env, WEBHOOK_WORKER: true } });
      await waitFor('the delivery after restart', () => r.hits.length === 1);
      assert.equal(r.hits[0].headers['webhook-id'], row.webhook_id);
      await waitFor('delivered', async () => (await stored(first.db, tn))[0].status === 'delivered');
      await sleep(300);
      assert.equal(r.hits.length, 1, 'sent once');
    } finally {
      await second?.close();
      await first.db.drop();
    }
  });

  test('the URL is checked again before each attempt: allowed when created, refused when the address no longer is', async () => {
    const first = await startTestApp({ ...ENV, WEBHOOK_WORKER: 'false' });
    let second: ExtraApp | undefined;
    try {
      const r = await receiver();
      receivers.push(r);
      const h1 = helpers(first, (tn, s) => first.token(tn, s));
      const tn = `rebind-${randomSuffix()}`;
      const res = await h1.create(tn, { url: r.url, event_types: ['violation.created'] });
      assert.equal(res.status, 201, res.text);
      await h1.raise(violation(tn));
      await first.app.close();
      // the next instance has no allow-list (as after a config change, or a host that now resolves elsewhere)
      second = await startAppOn(first.db, { ...first.config, env: { ...first.config.env, WEBHOOK_ALLOWED_HOSTS: [], WEBHOOK_WORKER: true } });
      const h2 = helpers(second, (tn2, s) => first.token(tn2, s));
      const [d] = await waitFor('a refused attempt', async () => {
        const ds = await h2.deliveries(tn, res.body.id);
        return ds[0]?.attempt_log.length >= 1 ? ds : undefined;
      });
      assert.ok(['failed', 'dead'].includes(d.status), JSON.stringify(d));
      assert.equal(d.attempt_log[0].status_code, null);
      assert.match(d.attempt_log[0].error!, /^refused before connecting: the address 127\.0\.0\.1 is a loopback address/);
      await sleep(2 * SCHEDULE_MS);
      assert.equal(r.hits.length, 0, 'no request reached the receiver');
    } finally {
      await second?.close();
      await first.db.drop();
    }
  });

  test('stopping the app during an attempt does not hang; the cut-short attempt is given back and sent after restart', async () => {
    const first = await startTestApp({ ...ENV, WEBHOOK_TIMEOUT_MS: '30000' });
    let second: ExtraApp | undefined;
    try {
      const r = await receiver((n) => (n === 0 ? 'hang' : { status: 200 }));
      receivers.push(r);
      const h1 = helpers(first, (tn, s) => first.token(tn, s));
      const tn = `stop-${randomSuffix()}`;
      const res = await h1.create(tn, { url: r.url, event_types: ['violation.created'] });
      assert.equal(res.status, 201, res.text);
      await h1.raise(violation(tn));
      await waitFor('the first request', () => r.hits.length === 1);
      const started = Date.now();
      await first.app.close();
      assert.ok(Date.now() - started < 5000, `app.close() took ${Date.now() - started} ms`);
      const [row] = await stored(first.db, tn);
      assert.deepEqual([row.status, row.attempts], ['pending', 0], 'the claim was given back');

      second = await startAppOn(first.db, first.config);
      await waitFor('delivered after restart', async () => (await stored(first.db, tn))[0].status === 'delivered');
      assert.equal(r.hits.length, 2);
      assert.equal(r.hits[1].headers['webhook-id'], r.hits[0].headers['webhook-id']);
    } finally {
      await second?.close();
      await first.db.drop();
    }
  });

  test('two instances on one database never send one delivery twice at once (SKIP LOCKED)', async () => {
    const env = { ...ENV, WEBHOOK_TIMEOUT_MS: '10000' };
    const first = await startTestApp(env);
    const second = await startAppOn(first.db, first.config);
    try {
      const r = await receiver(() => ({ status: 200 }));
      receivers.push(r);
      const h1 = helpers(first, (tn, s) => first.token(tn, s));
      const h2 = helpers(second, (tn, s) => first.token(tn, s));
      const tn = `two-${randomSuffix()}`;
      const res = await h1.create(tn, { url: r.url, event_types: ['violation.created'] });
      assert.equal(res.status, 201, res.text);
      const n = 60;
      await Promise.all(Array.from({ length: n / 2 }, (_, i) => (i % 2 ? h1 : h2).raise(violation(tn), violation(tn))));
      await waitFor('all delivered', async () => (await stored(first.db, tn)).every((d) => d.status === 'delivered'));
      await sleep(300);
      const rows = await stored(first.db, tn);
      assert.equal(rows.length, n);
      const hitsById = new Map<string, number>();
      for (const x of r.hits) hitsById.set(x.headers['webhook-id'] as string, (hitsById.get(x.headers['webhook-id'] as string) ?? 0) + 1);
      assert.equal(hitsById.size, n, 'every message arrived');
      // each request the receiver saw is one recorded attempt of that delivery: no two workers sent the same attempt
      for (const row of rows) assert.equal(hitsById.get(row.webhook_id), row.attempts, `delivery ${row.webhook_id}`);
      const successes = await asSuperuser(first.db, async (c) =>
        (
          await c.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM webhook_attempts WHERE tenant_id = $1 AND status_code BETWEEN 200 AND 299 GROUP BY delivery_id`,
            [tn],
          )
        ).rows.map((x) => x.n),
      );
      assert.deepEqual(successes, Array(n).fill(1), 'one successful attempt per delivery');
    } finally {
      await second.close();
      await first.close();
    }
  });
});

describe('webhooks from the policy evaluator', () => {
  test('a refund without approval, ingested with the sample policies, arrives as a signed violation.created webhook', async () => {
    const t = await startTestApp({ ...ENV, POLICY_EVALUATOR: 'true', POLICY_POLL_MS: '100' });
    const r = await receiver(() => ({ status: 200 }));
    try {
      const tn = 'acme';
      const admin = await t.token(tn, 'admin events:write audit:read');
      const res = await call<WebhookView>(t.url, 'POST', '/v1/webhooks', {
        token: admin,
        json: { url: r.url, event_types: ['violation.created'], min_severity: 'medium' },
      });
      assert.equal(res.status, 201, res.text);
      const key = await producerKey();
      await registerKey(t.url, admin, key);
      const trace_id = newTraceId();
      const refund = event({ trace_id, type: 'tool.call', name: 'refund_payment', attributes: { args: { order_id: 'A-1009', amount: 250 } } });
      const sent = await call(t.url, 'POST', '/v1/events', { token: admin, json: await signedBatch([refund], key) });
      assert.equal(sent.status, 201, sent.text);
      const at201 = Date.now();
      await waitFor('the webhook', () => r.hits.length >= 1, 15_000);
      const latency = r.hits[0].at - at201;
      const hit = r.hits.find((x) => (JSON.parse(x.body) as { data: { violation: { rule_id: string } } }).data.violation.rule_id === 'refund-needs-approval');
      assert.ok(hit, `no refund-needs-approval webhook among ${r.hits.map((x) => x.body).join('\n')}`);
      const body = new Webhook(res.body.secret!).verify(hit.body, hit.headers as Record<string, string>) as {
        type: string;
        data: { violation: { trace_id: string; agent: string; severity: string; seq: number; message: string }; action: unknown; trace_url: string };
      };
      assert.equal(body.type, 'violation.created');
      assert.equal(body.data.violation.trace_id, trace_id);
      assert.equal(body.data.violation.agent, 'support-agent');
      assert.match(body.data.violation.message, /refund_payment/);
      assert.deepEqual(body.data.action, { seq: body.data.violation.seq, type: 'tool.call', name: 'refund_payment' });
      assert.equal(body.data.trace_url, `https://ledger.example.test/v1/traces/${trace_id}`);
      assert.ok(latency < 5000, `alert latency ${latency} ms`);
    } finally {
      await r.close();
      await t.close();
    }
  });
});
