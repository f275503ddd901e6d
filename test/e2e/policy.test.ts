import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSpanId, newTraceId, type LedgerClient } from '../../src/client/ledger-client';
import type { TraceEvent } from '../../src/core/event';
import { loadPolicySet, PolicyEngine } from '../../src/core/policy';
import { ViolationSinks } from '../../src/policy/violation-sink';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser, randomSuffix, type TestDatabase } from '../support/db';
import { client, event, producerKey, registerKey } from '../support/factories';
import { allEntries, assertProblem, call } from '../support/http';
import { startAppOn, type ExtraApp } from '../support/process';

/**
 * DESIGN.md §6 end to end: the real app, real PostgreSQL, the sample policy
 * set. Events go in through signed ingest; violations come out as ledger
 * entries, rows and API responses, each exactly once.
 */

interface V {
  id: string;
  rule_id: string;
  severity: string;
  kind: string;
  policy_set_hash: string;
  seq: number;
  related_seqs: number[];
  trace_id: string;
  session_id: string | null;
  agent: string | null;
  message: string;
  retro: boolean;
  status: string;
  ack_note: string | null;
  ack_seq: number | null;
  ledger_seq: number;
}

interface Rec {
  seq: number;
  type: string;
  name: string | null;
  trace_id: string;
  session_id: string | null;
  kid: string;
}

const ROOT = process.env.TEST_ROOT ?? resolve(__dirname, '..', '..', '..');
const SAMPLE = join(ROOT, 'policies', 'support-agent.yaml');

function policiesDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'agent-ledger-policies-'));
  copyFileSync(SAMPLE, join(dir, 'support-agent.yaml'));
  return dir;
}

const POLICY_ENV = (dir: string) => ({ POLICIES_DIR: dir, POLICY_EVALUATOR: 'true', POLICY_POLL_MS: '200' });

/** Waits until the tenant's cursor has reached the ledger head (violation entries included). */
async function settle(db: TestDatabase, tenant: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { cursor, size } = await asSuperuser(db, async (c) => {
      const cur = await c.query(`SELECT seq FROM policy_cursors WHERE tenant_id = $1`, [tenant]);
      const head = await c.query(`SELECT coalesce(max(seq), 0) AS n FROM ledger_entries WHERE tenant_id = $1`, [tenant]);
      return { cursor: Number(cur.rows[0]?.seq ?? -1), size: Number(head.rows[0].n) };
    });
    if (cursor === size) return;
    if (Date.now() > deadline) throw new Error(`policy cursor of ${tenant} at ${cursor}, ledger head ${size}`);
    await new Promise((r) => setTimeout(r, 40));
  }
}

/** Builds the events of one run. */
function run(session = `conv-${randomSuffix()}`) {
  const trace = newTraceId();
  const root = newSpanId();
  let ms = 0;
  return {
    trace,
    session,
    ev(type: string, name: string | null, attributes: Record<string, unknown> = {}, o: Partial<TraceEvent> = {}): TraceEvent {
      ms += 10;
      return event({
        trace_id: trace,
        span_id: newSpanId(),
        parent_span_id: root,
        session_id: session,
        type,
        name,
        agent: 'support-agent',
        time: new Date(Date.UTC(2026, 10, 25, 10, 0, 0) + ms).toISOString(),
        attributes,
        ...o,
      } as Partial<TraceEvent>);
    },
  };
}

const refund = (r: ReturnType<typeof run>, order: string, amount: number) =>
  r.ev('tool.call', 'refund_payment', { args: { order_id: order, amount } });
const grant = (r: ReturnType<typeof run>, order: string, approver = 'maria@shop.example') =>
  r.ev('approval.granted', 'refund_payment', { tool: 'refund_payment', args: { order_id: order }, approver });

describe('policies and violations', () => {
  let t: TestApp;
  let dir: string;
  let admin: string;
  let reader: string;
  let writer: LedgerClient;
  let otherAdmin: string;
  let otherReader: string;
  let otherWriter: LedgerClient;
  let firstHash: string;

  before(async () => {
    dir = policiesDir();
    t = await startTestApp(POLICY_ENV(dir));
    admin = await t.token('acme', 'admin');
    reader = await t.token('acme', 'audit:read');
    const key = await producerKey();
    await registerKey(t.url, admin, key);
    writer = client(t.url, await t.token('acme', 'events:write'), key);
    otherAdmin = await t.token('globex', 'admin');
    otherReader = await t.token('globex', 'audit:read');
    const otherKey = await producerKey();
    await registerKey(t.url, otherAdmin, otherKey);
    otherWriter = client(t.url, await t.token('globex', 'events:write'), otherKey);
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const send = async (evs: TraceEvent[], w = writer) => (await w.send(evs)).map((r) => r.seq);
  const list = async (query = '', token = reader) => {
    const res = await call<{ violations: V[]; next_cursor: string | null }>(t.url, 'GET', `/v1/violations${query}`, { token });
    assert.equal(res.status, 200, res.text);
    return res.body;
  };
  const ofTrace = async (trace: string, token = reader) => (await list(`?trace_id=${trace}&limit=500`, token)).violations;
  const records = async (token = reader) => (await allEntries(t.url, token)).map((e) => JSON.parse(e.record) as Rec);

  test('GET /v1/policies shows the sample set and its hash; scopes are enforced', async () => {
    const res = await call<{ policy_set_hash: string; rules: { id: string; file: string }[]; files: string[]; evaluator: boolean }>(
      t.url, 'GET', '/v1/policies', { token: reader },
    );
    assert.equal(res.status, 200, res.text);
    assert.match(res.body.policy_set_hash, /^[0-9a-f]{64}$/);
    assert.equal(res.body.evaluator, true);
    assert.deepEqual(
      res.body.rules.map((r) => r.id).sort(),
      ['at-most-three-retries', 'escalation-only-to-listed-agents', 'no-refund-after-denial', 'no-retry-after-block', 'refund-needs-approval', 'support-agent-never-runs-shell'],
    );
    firstHash = res.body.policy_set_hash;
    assertProblem(await call(t.url, 'GET', '/v1/policies', { token: await t.token('acme', 'events:write') }), 403, 'forbidden');
    assertProblem(await call(t.url, 'GET', '/v1/policies'), 401, 'unauthenticated');
    assertProblem(await call(t.url, 'POST', '/v1/policies/reload', { token: reader }), 403, 'forbidden');
  });

  test('preceded_by: a refund above 100 needs an earlier matching approval', async () => {
    const bad = run();
    const [, refundSeq] = await send([bad.ev('run.started', null), refund(bad, 'A-1', 250)]);
    const good = run();
    await send([grant(good, 'A-2'), refund(good, 'A-2', 250), refund(good, 'A-3', 50)]);
    const wrongOrder = run();
    const [, wrongSeq] = await send([grant(wrongOrder, 'A-4'), refund(wrongOrder, 'A-5', 900)]);
    await settle(t.db, 'acme');

    const v = await ofTrace(bad.trace);
    assert.equal(v.length, 1);
    assert.equal(v[0].rule_id, 'refund-needs-approval');
    assert.equal(v[0].severity, 'high');
    assert.equal(v[0].kind, 'preceded_by');
    assert.equal(v[0].seq, refundSeq);
    assert.deepEqual(v[0].related_seqs, []);
    assert.equal(v[0].session_id, bad.session);
    assert.equal(v[0].agent, 'support-agent');
    assert.equal(v[0].policy_set_hash, firstHash);
    assert.equal(v[0].retro, false);
    assert.equal(v[0].status, 'open');
    assert.match(v[0].message, /refund_payment/);
    assert.deepEqual(await ofTrace(good.trace), [], 'an approved refund and a small one raise nothing');
    const w = await ofTrace(wrongOrder.trace);
    assert.deepEqual(w.map((x) => [x.rule_id, x.seq]), [['refund-needs-approval', wrongSeq]], 'an approval for another order does not count');
  });

  test('out of order: an approval recorded after the action is still a violation', async () => {
    const r = run();
    const [refundSeq] = await send([refund(r, 'B-1', 300)]);
    await send([grant(r, 'B-1')]);
    await settle(t.db, 'acme');
    const v = await ofTrace(r.trace);
    assert.deepEqual(v.map((x) => [x.rule_id, x.seq]), [['refund-needs-approval', refundSeq]]);
  });

  test('not_preceded_by: calling a blocked tool again; another tool is fine', async () => {
    const r = run();
    const [blockSeq, , againSeq] = await send([
      r.ev('action.blocked', 'lookup_order', { tool: 'lookup_order', reason: 'rate limit' }),
      r.ev('tool.call', 'lookup_customer', { args: { id: 'c-1' } }),
      r.ev('tool.call', 'lookup_order', { args: { order_id: 'X' } }),
    ]);
    const other = run();
    await send([other.ev('action.blocked', 'lookup_order', { tool: 'lookup_order' }), other.ev('tool.call', 'search_kb', {})]);
    await settle(t.db, 'acme');
    const v = await ofTrace(r.trace);
    assert.deepEqual(v.map((x) => [x.rule_id, x.seq, x.related_seqs]), [['no-retry-after-block', againSeq, [blockSeq]]]);
    assert.equal(v[0].severity, 'critical');
    assert.deepEqual(await ofTrace(other.trace), []);
  });

  test('max_count: the fourth retry is one violation naming the three before; three retries are fine', async () => {
    const r = run();
    const seqs = await send(Array.from({ length: 5 }, (_, i) => r.ev('retry', 'lookup_order', { attempt: i + 1 })));
    const ok = run();
    await send(Array.from({ length: 3 }, () => ok.ev('retry', 'lookup_order', {})));
    await settle(t.db, 'acme');
    const v = await ofTrace(r.trace);
    assert.deepEqual(v.map((x) => [x.rule_id, x.seq, x.related_seqs]), [['at-most-three-retries', seqs[3], seqs.slice(0, 3)]]);
    assert.deepEqual(await ofTrace(ok.trace), []);
  });

  test('forbidden: handoff to an unlisted agent and shell commands; listed targets are fine', async () => {
    const r = run();
    const [badHandoff, , shell] = await send([
      r.ev('handoff', 'escalate', { target_agent: 'random-agent' }),
      r.ev('handoff', 'escalate', { target_agent: 'billing-agent' }),
      r.ev('tool.call', 'run_shell', { args: { cmd: 'ls' } }),
      r.ev('tool.call', 'run_shell', { args: { cmd: 'ls' } }, { agent: 'ops-agent' }),
    ]);
    await settle(t.db, 'acme');
    const v = await ofTrace(r.trace);
    assert.deepEqual(
      v.map((x) => [x.rule_id, x.seq]).sort((a, b) => Number(a[1]) - Number(b[1])),
      [['escalation-only-to-listed-agents', badHandoff], ['support-agent-never-runs-shell', shell]],
    );
  });

  test('session scope: a denial in one trace forbids the refund in a resumed trace of the same conversation', async () => {
    const session = `conv-${randomSuffix()}`;
    const first = run(session);
    const [denial] = await send([
      first.ev('approval.denied', 'refund_payment', { tool: 'refund_payment', args: { order_id: 'S-1' }, approver: 'maria' }),
      first.ev('run.interrupted', null),
    ]);
    const resumed = run(session);
    const [, refundSeq] = await send([resumed.ev('run.resumed', null), refund(resumed, 'S-1', 50)]);
    const elsewhere = run();
    await send([refund(elsewhere, 'S-1', 50)]);
    await settle(t.db, 'acme');
    const v = await ofTrace(resumed.trace);
    assert.deepEqual(v.map((x) => [x.rule_id, x.seq, x.related_seqs, x.session_id]), [['no-refund-after-denial', refundSeq, [denial], session]]);
    assert.deepEqual(await ofTrace(first.trace), []);
    assert.deepEqual(await ofTrace(elsewhere.trace), [], 'another conversation is another scope');
  });

  test('violations are ledger entries signed by the service, in the run of the offending event; verify stays ok', async () => {
    await settle(t.db, 'acme');
    const recs = await records();
    const bySeq = new Map(recs.map((r) => [r.seq, r]));
    const all = (await list('?limit=500')).violations;
    assert.ok(all.length >= 8);
    for (const v of all) {
      const entry = bySeq.get(v.ledger_seq);
      assert.ok(entry, `violation entry ${v.ledger_seq}`);
      assert.equal(entry.type, 'policy.violation');
      assert.equal(entry.kid, 'ledger');
      assert.equal(entry.name, v.rule_id);
      assert.equal(entry.trace_id, bySeq.get(v.seq)!.trace_id);
      assert.equal(entry.session_id, v.session_id);
      assert.ok(v.ledger_seq > v.seq);
    }
    const violationEntries = recs.filter((r) => r.type === 'policy.violation');
    assert.equal(violationEntries.length, all.length, 'one ledger entry per violation row');
    const loaded = recs.filter((r) => r.type === 'policy.set_loaded');
    assert.equal(loaded.length, 1);
    assert.equal(loaded[0].name, firstHash);
    const metrics = await call(t.url, 'GET', '/metrics');
    assert.match(metrics.text, /agent_ledger_policy_violations_total\{severity="critical",retro="false"\} [1-9]/);
    assert.match(metrics.text, /agent_ledger_policy_entries_evaluated_total [1-9]/);
    const verify = await call<{ ok: boolean; verified: number }>(t.url, 'GET', '/v1/ledger/verify', { token: reader });
    assert.equal(verify.status, 200);
    assert.equal(verify.body.ok, true, verify.text);
    assert.equal(verify.body.verified, recs.length);
  });

  test('list: filters and keyset pagination; bad parameters are refused', async () => {
    const all = (await list('?limit=500')).violations;
    assert.deepEqual(all.map((v) => v.ledger_seq), [...all.map((v) => v.ledger_seq)].sort((a, b) => b - a), 'newest first');
    const critical = (await list('?severity=critical&limit=500')).violations;
    assert.ok(critical.length > 0);
    assert.ok(critical.every((v) => v.severity === 'critical'));
    assert.deepEqual(critical.map((v) => v.id), all.filter((v) => v.severity === 'critical').map((v) => v.id));
    const byRule = (await list('?rule=at-most-three-retries')).violations;
    assert.deepEqual(byRule.map((v) => v.id), all.filter((v) => v.rule_id === 'at-most-three-retries').map((v) => v.id));
    assert.equal((await list('?agent=nobody')).violations.length, 0);
    assert.equal((await list('?agent=support-agent&limit=500')).violations.length, all.length);
    assert.equal((await list('?from=2999-01-01T00:00:00Z')).violations.length, 0);
    assert.equal((await list('?to=2000-01-01T00:00:00Z')).violations.length, 0);
    assert.equal((await list('?from=2000-01-01T00:00:00Z&limit=500')).violations.length, all.length);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { violations: V[]; next_cursor: string | null } = await list(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(page.violations.length <= 2);
      seen.push(...page.violations.map((v) => v.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, all.map((v) => v.id), 'pages cover every violation once, in order');

    for (const q of ['?limit=0', '?limit=501', '?severity=bogus', '?status=closed', '?trace_id=xyz', '?from=yesterday', '?bogus=1']) {
      assertProblem(await call(t.url, 'GET', `/v1/violations${q}`, { token: reader }), 400, 'validation_failed');
    }
    assertProblem(await call(t.url, 'GET', '/v1/violations?cursor=not-a-cursor', { token: reader }), 400, 'bad_cursor');
    assertProblem(await call(t.url, 'GET', '/v1/violations', { token: await t.token('acme', 'events:write') }), 403, 'forbidden');
  });

  test('acknowledge: a ledger entry; once; admin only; another tenant gets 404', async () => {
    const [v] = (await list('?status=open&limit=1')).violations;
    const path = `/v1/violations/${v.id}/ack`;
    assertProblem(await call(t.url, 'POST', path, { token: reader, json: { note: 'x' } }), 403, 'forbidden');
    assertProblem(await call(t.url, 'POST', path, { token: otherAdmin, json: { note: 'x' } }), 404, 'not_found');
    assertProblem(await call(t.url, 'POST', path, { token: admin, json: {} }), 400, 'validation_failed', ['note']);
    assertProblem(await call(t.url, 'POST', path, { token: admin, json: { note: 'ok', extra: 1 } }), 400, 'validation_failed');
    assertProblem(await call(t.url, 'POST', '/v1/violations/not-a-uuid/ack', { token: admin, json: { note: 'x' } }), 400, 'validation_failed');
    assertProblem(
      await call(t.url, 'POST', '/v1/violations/00000000-0000-4000-8000-000000000000/ack', { token: admin, json: { note: 'x' } }),
      404,
      'not_found',
    );

    const res = await call<V>(t.url, 'POST', path, { token: admin, json: { note: 'refund reviewed with finance' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status, 'acknowledged');
    assert.equal(res.body.ack_note, 'refund reviewed with finance');
    const entry = (await records()).find((r) => r.seq === res.body.ack_seq);
    assert.equal(entry?.type, 'policy.violation_acknowledged');
    assert.equal(entry?.trace_id, v.trace_id);
    assertProblem(await call(t.url, 'POST', path, { token: admin, json: { note: 'again' } }), 409, 'already_acknowledged');
    const acked = (await list('?status=acknowledged')).violations;
    assert.deepEqual(acked.map((x) => x.id), [v.id]);
    assert.ok(!(await list('?status=open&limit=500')).violations.some((x) => x.id === v.id));
  });

  test('approvals report: approved, missing, denied, blocked', async () => {
    const r = run();
    const [grantSeq, approvedSeq, missingSeq, denialSeq, deniedSeq, blockSeq, blockedSeq, smallSeq] = await send([
      grant(r, 'R-1', 'maria@shop.example'),
      refund(r, 'R-1', 500),
      refund(r, 'R-2', 500),
      r.ev('approval.denied', 'refund_payment', { tool: 'refund_payment', args: { order_id: 'R-3' }, approver: 'li@shop.example' }),
      refund(r, 'R-3', 500),
      r.ev('action.blocked', 'refund_payment', { tool: 'refund_payment' }, { trace_id: newTraceId() }),
      refund(r, 'R-4', 500),
      refund(r, 'R-5', 10),
    ]);
    void blockSeq;
    const blockedRun = run();
    const [blockedRefund, block] = await send([
      refund(blockedRun, 'R-6', 700),
      blockedRun.ev('action.blocked', 'refund_payment', { tool: 'refund_payment', reason: 'over limit' }),
    ]);
    await settle(t.db, 'acme');
    const res = await call<{ actions: { seq: number; rule_id: string; outcome: string; approval_seq: number | null; approver: string | null; denial_seq: number | null; blocked_seq: number | null }[]; truncated: boolean }>(
      t.url, 'GET', '/v1/reports/approvals?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z', { token: reader },
    );
    assert.equal(res.status, 200, res.text);
    const by = new Map(res.body.actions.map((a) => [a.seq, a]));
    assert.deepEqual(
      [by.get(approvedSeq)?.outcome, by.get(approvedSeq)?.approval_seq, by.get(approvedSeq)?.approver],
      ['approved', grantSeq, 'maria@shop.example'],
    );
    assert.equal(by.get(missingSeq)?.outcome, 'missing');
    assert.deepEqual([by.get(deniedSeq)?.outcome, by.get(deniedSeq)?.denial_seq, by.get(deniedSeq)?.approver], ['denied', denialSeq, 'li@shop.example']);
    assert.equal(by.get(blockedSeq)?.outcome, 'missing', 'a block in another trace does not count');
    assert.deepEqual([by.get(blockedRefund)?.outcome, by.get(blockedRefund)?.blocked_seq], ['blocked', block]);
    assert.equal(by.has(smallSeq), false, 'a refund under 100 needs no approval');
    assert.ok(res.body.actions.every((a) => a.rule_id === 'refund-needs-approval'));
    const none = await call<{ actions: unknown[] }>(t.url, 'GET', '/v1/reports/approvals?from=2030-01-01T00:00:00Z', { token: reader });
    assert.deepEqual(none.body.actions, []);
    assertProblem(await call(t.url, 'GET', '/v1/reports/approvals?from=soon', { token: reader }), 400, 'validation_failed', ['query.from']);
    assertProblem(await call(t.url, 'GET', '/v1/reports/approvals', { token: await t.token('acme', 'events:write') }), 403, 'forbidden');
  });

  test('tenant isolation: each tenant sees its own violations and its own ledger entries', async () => {
    const r = run();
    const [seq] = await send([r.ev('tool.call', 'delete_customer', { args: { id: 'c-9' } })], otherWriter);
    await settle(t.db, 'globex');
    const theirs = (await list('?limit=500', otherReader)).violations;
    assert.deepEqual(theirs.map((v) => [v.rule_id, v.seq]), [['support-agent-never-runs-shell', seq]]);
    const ours = (await list('?limit=500')).violations;
    assert.ok(!ours.some((v) => v.id === theirs[0].id));
    assert.deepEqual(await ofTrace(r.trace), []);
    const theirRecords = await records(otherReader);
    assert.deepEqual(theirRecords.filter((x) => x.type.startsWith('policy.')).map((x) => x.type).sort(), ['policy.set_loaded', 'policy.violation']);
  });

  test('reload: a bad file is refused with its position and the set in force stays; a good one is recorded', async () => {
    writeFileSync(join(dir, 'zz-bad.yaml'), 'rules:\n  - id: broken\n    severity: high\n    kind: sometimes\n    match: { type: tool.call }\n');
    const bad = assertProblem(await call(t.url, 'POST', '/v1/policies/reload', { token: admin }), 400, 'policy_set_refused');
    assert.ok(bad.errors!.some((e) => /zz-bad\.yaml:\d+:\d+/.test(e.field)), JSON.stringify(bad.errors));
    assert.equal(bad.policy_set_hash, firstHash);
    const still = await call<{ policy_set_hash: string }>(t.url, 'GET', '/v1/policies', { token: reader });
    assert.equal(still.body.policy_set_hash, firstHash);

    writeFileSync(join(dir, 'zz-bad.yaml'), 'rules:\n  - id: x\n    severity: high\n    kind: forbidden\n    match: { type: tool.call, when: "event.attributes +" }\n');
    const celBad = assertProblem(await call(t.url, 'POST', '/v1/policies/reload', { token: admin }), 400, 'policy_set_refused');
    assert.ok(celBad.errors!.some((e) => /zz-bad\.yaml:5:\d+ \(rule x\)/.test(e.field)), JSON.stringify(celBad.errors));
    rmSync(join(dir, 'zz-bad.yaml'));

    // the same set again: not changed, nothing recorded
    const same = await call<{ changed: boolean; policy_set_hash: string }>(t.url, 'POST', '/v1/policies/reload', { token: admin });
    assert.equal(same.status, 200, same.text);
    assert.equal(same.body.changed, false);
  });

  test('retro-evaluation: a rule added later finds old events once, marked retro, never duplicating', async () => {
    const r = run();
    const [kbSeq, refundSeq] = await send([r.ev('tool.call', 'search_kb', { q: 'refund policy' }), refund(r, 'K-1', 999)]);
    await settle(t.db, 'acme');
    writeFileSync(
      join(dir, 'zz-kb.yaml'),
      'rules:\n  - id: no-kb-search\n    severity: low\n    kind: forbidden\n    match: { type: tool.call, name: search_kb }\n',
    );
    const reloaded = await call<{ changed: boolean; policy_set_hash: string; rules: unknown[] }>(t.url, 'POST', '/v1/policies/reload', { token: admin });
    assert.equal(reloaded.status, 200, reloaded.text);
    assert.equal(reloaded.body.changed, true);
    assert.notEqual(reloaded.body.policy_set_hash, firstHash);
    assert.equal(reloaded.body.rules.length, 7);
    const newHash = reloaded.body.policy_set_hash;
    // the new set is recorded in each tenant's ledger right away, not only with the next event
    for (const [token, tenant] of [[reader, 'acme'], [otherReader, 'globex']] as const) {
      const deadline = Date.now() + 10_000;
      while (!(await records(token)).some((x) => x.type === 'policy.set_loaded' && x.name === newHash)) {
        assert.ok(Date.now() < deadline, `no policy.set_loaded for ${newHash} in ${tenant}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    }

    // a new event under the new set is live; the old one only by retro-evaluation
    const [liveSeq] = await send([r.ev('tool.call', 'search_kb', { q: 'again' })]);
    await settle(t.db, 'acme');
    let v = await ofTrace(r.trace);
    assert.deepEqual(v.map((x) => [x.rule_id, x.seq, x.retro]).sort(), [['no-kb-search', liveSeq, false], ['refund-needs-approval', refundSeq, false]]);
    const loaded = (await records()).filter((x) => x.type === 'policy.set_loaded').map((x) => x.name);
    assert.deepEqual(loaded, [firstHash, newHash]);

    assertProblem(await call(t.url, 'POST', '/v1/policies/evaluate', { token: admin, json: {} }), 400, 'validation_failed');
    assertProblem(await call(t.url, 'POST', '/v1/policies/evaluate', { token: admin, json: { from_seq: 5, to_seq: 2 } }), 400, 'validation_failed', ['to_seq']);
    assertProblem(await call(t.url, 'POST', '/v1/policies/evaluate', { token: admin, json: { from_seq: 1, from: '2026-01-01T00:00:00Z' } }), 400, 'validation_failed');
    assertProblem(await call(t.url, 'POST', '/v1/policies/evaluate', { token: reader, json: { from_seq: 1 } }), 403, 'forbidden');

    const retro = await call<{ violations: V[]; evaluated: number; policy_set_hash: string }>(t.url, 'POST', '/v1/policies/evaluate', {
      token: admin,
      json: { from_seq: 1 },
    });
    assert.equal(retro.status, 200, retro.text);
    assert.equal(retro.body.policy_set_hash, newHash);
    assert.ok(retro.body.evaluated > 20);
    const kbRetro = retro.body.violations.filter((x) => x.seq === kbSeq);
    assert.deepEqual(kbRetro.map((x) => [x.rule_id, x.retro]), [['no-kb-search', true]]);
    assert.ok(retro.body.violations.every((x) => x.rule_id === 'no-kb-search' && x.retro), 'nothing the live evaluator raised is raised again');
    await settle(t.db, 'acme');
    v = await ofTrace(r.trace);
    assert.deepEqual(v.map((x) => [x.rule_id, x.seq, x.retro]).sort(), [
      ['no-kb-search', kbSeq, true],
      ['no-kb-search', liveSeq, false],
      ['refund-needs-approval', refundSeq, false],
    ]);
    const again = await call<{ violations: V[] }>(t.url, 'POST', '/v1/policies/evaluate', { token: admin, json: { from: '2000-01-01T00:00:00Z' } });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.body.violations, [], 'a second run finds nothing new');
    rmSync(join(dir, 'zz-kb.yaml'));
  });

  test('SIGHUP reloads: a bad set is refused and the set in force stays; a good one replaces it', async () => {
    const current = async () => (await call<{ policy_set_hash: string }>(t.url, 'GET', '/v1/policies', { token: reader })).body.policy_set_hash;
    const inForce = await current();
    assert.notEqual(inForce, firstHash);
    const waitFor = async (want: string) => {
      const deadline = Date.now() + 5_000;
      while ((await current()) !== want) {
        assert.ok(Date.now() < deadline, `the set in force is not ${want}`);
        await new Promise((res) => setTimeout(res, 25));
      }
    };
    writeFileSync(join(dir, 'zz-bad.yaml'), 'rules: [ { id: oops, kind: forbidden');
    process.kill(process.pid, 'SIGHUP');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(await current(), inForce, 'a bad file leaves the set in force');
    rmSync(join(dir, 'zz-bad.yaml'));
    process.kill(process.pid, 'SIGHUP');
    await waitFor(firstHash);
  });
});

describe('exactly once across restarts, crashes and two instances', () => {
  let t: TestApp;
  let dir: string;
  let second: ExtraApp | undefined;
  let third: ExtraApp | undefined;
  let firstClosed = false;

  before(async () => {
    dir = policiesDir();
    t = await startTestApp(POLICY_ENV(dir));
  });
  after(async () => {
    await second?.close();
    await third?.close();
    if (firstClosed) await t.db.drop();
    else await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Every rule+seq once in the table, and exactly one ledger entry per row. */
  async function checkOnce(tenant: string): Promise<{ rule_id: string; seq: number }[]> {
    return asSuperuser(t.db, async (c) => {
      const rows = (await c.query(`SELECT rule_id, seq::int AS seq, ledger_seq::int AS ledger_seq FROM violations WHERE tenant_id = $1 ORDER BY seq, rule_id`, [tenant])).rows as {
        rule_id: string;
        seq: number;
        ledger_seq: number;
      }[];
      const entries = (await c.query(`SELECT seq::int AS seq FROM ledger_entries WHERE tenant_id = $1 AND type = 'policy.violation' ORDER BY seq`, [tenant])).rows as { seq: number }[];
      assert.deepEqual(entries.map((e) => e.seq), rows.map((r) => r.ledger_seq).sort((a, b) => a - b), 'entries and rows agree');
      assert.equal(new Set(rows.map((r) => `${r.rule_id}@${r.seq}`)).size, rows.length, 'no rule+seq twice');
      return rows.map(({ rule_id, seq }) => ({ rule_id, seq }));
    });
  }

  /** Runs that each raise exactly one violation: a shell call. */
  const shellRuns = (n: number) =>
    Array.from({ length: n }, () => {
      const r = run();
      return [r.ev('run.started', null), r.ev('tool.call', 'run_shell', { args: { cmd: 'id' } }), r.ev('run.completed', null)];
    });

  test('crash between ledger append and evaluation, a restart mid-way, a failing violation transaction, two instances', async () => {
    const tenant = 'umbrella';
    const admin = await t.token(tenant, 'admin');
    const key = await producerKey();
    await registerKey(t.url, admin, key);
    const writerToken = await t.token(tenant, 'events:write');
    const expected = new Set<number>();
    const sendTo = async (url: string, runs: TraceEvent[][]) => {
      for (const evs of runs) {
        const seqs = (await client(url, writerToken, key).send(evs)).map((r) => r.seq);
        expected.add(seqs[1]);
      }
    };

    // 1. appended, then the process "crashes" before evaluating: an instance without the evaluator ingests
    await t.app.close();
    firstClosed = true;
    const noEval = await startAppOn(t.db, { ...t.config, env: { ...t.config.env, POLICY_EVALUATOR: false } });
    await sendTo(noEval.url, shellRuns(5));
    await noEval.close();
    assert.deepEqual(await checkOnce(tenant), [], 'nothing evaluated yet');

    // 2. restart: the evaluator catches up from the cursor
    second = await startAppOn(t.db, t.config);
    await settle(t.db, tenant);
    assert.deepEqual((await checkOnce(tenant)).map((v) => v.seq), [...expected].sort((a, b) => a - b));

    // 3. a violation transaction that fails (a sink throws once): nothing half-written, retried, once
    let failures = 0;
    second.app.get(ViolationSinks).register({
      onViolations: async (_tx, violations) => {
        if (failures === 0 && violations.length) {
          failures++;
          throw new Error('sink down');
        }
      },
    });
    await sendTo(second.url, shellRuns(3));
    await settle(t.db, tenant);
    assert.equal(failures, 1);
    assert.deepEqual((await checkOnce(tenant)).map((v) => v.seq), [...expected].sort((a, b) => a - b));

    // 4. close mid-way while batches keep arriving through another instance, then two instances at once
    third = await startAppOn(t.db, t.config);
    const sending = sendTo(third.url, shellRuns(20));
    await new Promise((r) => setTimeout(r, 30));
    await second.close();
    second = await startAppOn(t.db, t.config);
    await sending;
    await sendTo(second.url, shellRuns(10));
    await settle(t.db, tenant);
    const final = await checkOnce(tenant);
    assert.deepEqual(final.map((v) => v.seq), [...expected].sort((a, b) => a - b), 'every violation once, none lost');
    assert.ok(final.every((v) => v.rule_id === 'support-agent-never-runs-shell'));
    const reader = await t.token(tenant, 'audit:read');
    const verify = await call<{ ok: boolean }>(second.url, 'GET', '/v1/ledger/verify', { token: reader });
    assert.equal(verify.body.ok, true, verify.text);
  });
});

describe('bounded state: evicted scopes are rebuilt from the ledger', () => {
  let t: TestApp;
  let dir: string;

  before(async () => {
    dir = policiesDir();
    t = await startTestApp({ ...POLICY_ENV(dir), POLICY_MAX_SCOPES: '2', POLICY_PAGE_SIZE: '7' });
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('interleaved runs and sessions, 2 scopes held, pages of 7: the same violations as an engine that never evicts', async () => {
    const tenant = 'initech';
    const admin = await t.token(tenant, 'admin');
    const key = await producerKey();
    await registerKey(t.url, admin, key);
    const w = client(t.url, await t.token(tenant, 'events:write'), key);
    // 12 runs in 4 conversations; each run a mix that fires (or nearly fires) every rule kind
    const runs = Array.from({ length: 12 }, (_, i) => {
      const r = run(`conv-evict-${i % 4}`);
      const order = `E-${i % 3}`;
      const evs: TraceEvent[] = [r.ev('run.started', null)];
      if (i % 3 === 0) evs.push(grant(r, order));
      if (i % 4 === 1) evs.push(r.ev('approval.denied', 'refund_payment', { tool: 'refund_payment', args: { order_id: order } }));
      evs.push(r.ev('action.blocked', 'lookup_order', { tool: 'lookup_order' }));
      for (let k = 0; k < (i % 6); k++) evs.push(r.ev('retry', 'lookup_order', { attempt: k }));
      evs.push(r.ev('tool.call', 'lookup_order', { args: { order_id: order } }));
      evs.push(refund(r, order, i % 2 ? 50 : 400));
      evs.push(r.ev('handoff', 'escalate', { target_agent: i % 5 ? 'billing-agent' : 'someone' }));
      return evs;
    });
    // round-robin interleaving, sent in batches of 5
    const all: TraceEvent[] = [];
    for (let k = 0; runs.some((r) => k < r.length); k++) for (const r of runs) if (k < r.length) all.push(r[k]);
    const sent: { event: TraceEvent; seq: number }[] = [];
    for (let i = 0; i < all.length; i += 5) {
      const batch = all.slice(i, i + 5);
      (await w.send(batch)).forEach((rc, j) => sent.push({ event: batch[j], seq: rc.seq }));
    }
    await settle(t.db, tenant);

    const engine = new PolicyEngine(loadPolicySet([{ file: 'support-agent.yaml', text: readFileSync(SAMPLE, 'utf8') }]));
    const expected = sent
      .sort((a, b) => a.seq - b.seq)
      .flatMap(({ event: e, seq }) => engine.evaluate({ ...e, seq }))
      .map((v) => `${v.ruleId}@${v.seq}:${v.relatedSeqs.join(',')}`)
      .sort();
    const res = await call<{ violations: V[] }>(t.url, 'GET', '/v1/violations?limit=500', { token: await t.token(tenant, 'audit:read') });
    const got = res.body.violations.map((v) => `${v.rule_id}@${v.seq}:${v.related_seqs.join(',')}`).sort();
    assert.ok(expected.length >= 10, `a workload that raises violations (${expected.length})`);
    assert.ok(new Set(expected.map((x) => x.split('@')[0])).size >= 5, 'every kind of rule fires');
    assert.deepEqual(got, expected);
  });
});
