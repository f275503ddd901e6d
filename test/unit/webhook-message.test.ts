import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import {
  envelope,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  renderBody,
  responseExcerpt,
  retryDelay,
  severityRank,
  slackMessage,
  type ViolationData,
} from '../../src/alerts/webhook-message';
import { loadEnv } from '../../src/config/config';

const data: ViolationData = {
  tenant: 'acme',
  violation: {
    id: '0193a5b0-7f1c-7cc3-8e4b-2a8f5c1d9e01',
    rule_id: 'refund-needs-approval',
    severity: 'high',
    kind: 'preceded_by',
    message: 'refund_payment(order A-1009, amount 250) ran with no prior approval.granted in trace 4bf9…',
    policy_set_hash: 'ab'.repeat(32),
    seq: 7,
    related_seqs: [],
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    session_id: 'conv-7f3a',
    agent: 'support-agent',
    retro: false,
    ledger_seq: 9,
    created_at: '2026-11-25T10:00:01.000Z',
  },
  action: { seq: 7, type: 'tool.call', name: 'refund_payment' },
  trace_url: 'https://ledger.example/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736',
};

describe('webhook messages', () => {
  test('the standard body is the {type, timestamp, data} envelope', () => {
    const env = envelope('violation.created', data, new Date('2026-11-25T10:00:02Z'));
    assert.deepEqual(JSON.parse(renderBody('standard', env)), {
      type: 'violation.created',
      timestamp: '2026-11-25T10:00:02.000Z',
      data,
    });
  });

  test('a Slack message names rule, severity, agent, action and links the trace', () => {
    const msg = slackMessage(envelope('violation.created', data));
    assert.match(msg.text, /^\[HIGH\] refund-needs-approval: refund_payment\(order A-1009/);
    const json = JSON.stringify(msg.blocks);
    for (const s of ['*Rule*', 'refund-needs-approval', '*Severity*', 'high', '*Agent*', 'support-agent', '*Action*', 'tool.call refund_payment (seq 7)']) {
      assert.ok(json.includes(s), `blocks lack ${s}`);
    }
    assert.ok(json.includes(`"url":"${data.trace_url}"`));
    assert.ok(json.includes(`<${data.trace_url}|trace ${data.violation.trace_id}>`));
  });

  test('Slack text escapes &, < and > so a message cannot forge links', () => {
    const evil = { ...data, violation: { ...data.violation, message: '<https://evil|click> & more' } };
    const json = JSON.stringify(slackMessage(envelope('violation.created', evil)).blocks);
    assert.ok(json.includes('&lt;https://evil|click&gt; &amp; more'));
    assert.ok(!json.includes('<https://evil|click>'));
  });

  test('other event types still render a readable Slack message', () => {
    const msg = slackMessage(envelope('something.else', { a: 1 }));
    assert.match(msg.text, /something\.else/);
    assert.ok(msg.blocks.length > 0);
  });

  test('the signature is the Standard Webhooks one over "id.timestamp.body"', () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    const body = renderBody('standard', envelope('violation.created', data));
    const at = new Date();
    const sig = new Webhook(secret).sign('msg_1', at, body);
    const expected = createHmac('sha256', Buffer.alloc(32, 7)).update(`msg_1.${Math.floor(at.getTime() / 1000)}.${body}`).digest('base64');
    assert.equal(sig, `v1,${expected}`);
  });

  test('Retry-After: seconds, HTTP date, garbage, and the one-day cap', () => {
    const now = Date.parse('2026-11-25T10:00:00Z');
    assert.equal(parseRetryAfter('120', now), 120_000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Wed, 25 Nov 2026 10:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 25 Nov 2026 09:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-5', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter('99999999', now), MAX_RETRY_AFTER_MS);
  });

  test('retry delays follow the schedule, a longer Retry-After wins, and the schedule ends', () => {
    const schedule = [5_000, 300_000, 1_800_000];
    assert.equal(retryDelay(schedule, 1), 5_000);
    assert.equal(retryDelay(schedule, 2), 300_000);
    assert.equal(retryDelay(schedule, 3), 1_800_000);
    assert.equal(retryDelay(schedule, 4), undefined);
    assert.equal(retryDelay(schedule, 1, 60_000), 60_000);
    assert.equal(retryDelay(schedule, 2, 1_000), 300_000);
  });

  test('the default schedule is Svix-like and a bad one is refused naming the variable', () => {
    assert.deepEqual(loadEnv({}).WEBHOOK_RETRY_SCHEDULE, [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
    assert.deepEqual(loadEnv({ WEBHOOK_RETRY_SCHEDULE: '100ms, 1s,2m' }).WEBHOOK_RETRY_SCHEDULE, [100, 1_000, 120_000]);
    assert.throws(() => loadEnv({ WEBHOOK_RETRY_SCHEDULE: '5s,soon' }), /WEBHOOK_RETRY_SCHEDULE: "soon" is not a delay/);
    assert.deepEqual(loadEnv({ WEBHOOK_ALLOWED_HOSTS: '127.0.0.1, 10.0.0.0/8,*.svc.local' }).WEBHOOK_ALLOWED_HOSTS, [
      '127.0.0.1',
      '10.0.0.0/8',
      '*.svc.local',
    ]);
    assert.throws(() => loadEnv({ WEBHOOK_ALLOWED_HOSTS: '10.0.0.0/33' }), /WEBHOOK_ALLOWED_HOSTS/);
    assert.throws(() => loadEnv({ WEBHOOK_ALLOWED_HOSTS: 'http://x' }), /WEBHOOK_ALLOWED_HOSTS/);
  });

  test('severity ranks', () => {
    assert.deepEqual(['low', 'medium', 'high', 'critical'].map(severityRank), [1, 2, 3, 4]);
    assert.equal(severityRank(null), 4);
  });

  test('response excerpts are bounded and never carry the secret', () => {
    const secret = 'whsec_c2VjcmV0';
    const body = Buffer.from(`echo ${secret} ` + 'x'.repeat(5000));
    const ex = responseExcerpt(body, 1024, [secret]);
    assert.ok(Buffer.byteLength(ex) <= 1024);
    assert.ok(!ex.includes(secret));
    assert.ok(ex.startsWith('echo [redacted] x'));
    // a multi-byte character cut at the limit does not leave a broken tail
    const ex2 = responseExcerpt(Buffer.from('é'.repeat(600)), 1024, []);
    assert.ok(Buffer.byteLength(ex2) <= 1024);
  });
});
