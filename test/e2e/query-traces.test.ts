import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/core/event';
import { jcs } from '../../src/core/jcs';
import { startTestApp, type TestApp } from '../support/app';
import { assertProblem, call } from '../support/http';
import { generateRuns, interleave, tenant, TOOLS, type Tenant } from '../support/query-data';

/**
 * GET /v1/traces and the reports end to end, against summaries computed here
 * from the events as sent (with the seqs of their receipts).
 */

type Sent = TraceEvent & { seq: number };

interface Summary {
  trace_id: string;
  session_id: string | null;
  agents: string[];
  tools: string[];
  first_time: string | null;
  last_time: string | null;
  duration_ms: number | null;
  status: string;
  counts: Record<string, number>;
  event_count: number;
  error_count: number;
  violation_count: number;
  violations_by_severity: Record<string, number>;
  first_seq: number;
  last_seq: number;
}

const RUN_STATUS: Record<string, string> = {
  'run.completed': 'completed',
  'run.failed': 'failed',
  'run.interrupted': 'interrupted',
  'run.started': 'running',
  'run.resumed': 'running',
};

/** The summary of each run, computed independently of the projector's SQL. */
function expectedSummaries(sent: Sent[]): Map<string, Summary> {
  const out = new Map<string, Summary>();
  for (const e of [...sent].sort((a, b) => a.seq - b.seq)) {
    let s = out.get(e.trace_id);
    if (!s) {
      s = { trace_id: e.trace_id, session_id: null, agents: [], tools: [], first_time: null, last_time: null, duration_ms: null, status: 'unknown',
        counts: {}, event_count: 0, error_count: 0, violation_count: 0, violations_by_severity: {}, first_seq: e.seq, last_seq: e.seq };
      out.set(e.trace_id, s);
    }
    s.session_id ??= e.session_id ?? null;
    if (!s.agents.includes(e.agent)) s.agents = [...s.agents, e.agent].sort();
    if (e.type === 'tool.call' && e.name && !s.tools.includes(e.name)) s.tools = [...s.tools, e.name].sort();
    const t = new Date(e.time).toISOString();
    if (!s.first_time || t < s.first_time) s.first_time = t;
    if (!s.last_time || t > s.last_time) s.last_time = t;
    s.duration_ms = Date.parse(s.last_time) - Date.parse(s.first_time);
    if (RUN_STATUS[e.type]) s.status = RUN_STATUS[e.type];
    s.counts[e.type] = (s.counts[e.type] ?? 0) + 1;
    s.event_count++;
    if (e.status === 'error') s.error_count++;
    s.last_seq = e.seq;
  }
  return out;
}

async function allTraces(t: TestApp, token: string, query: Record<string, string>, limit: number): Promise<Summary[]> {
  const out: Summary[] = [];
  let cursor: string | null = null;
  do {
    const qs = new URLSearchParams({ ...query, limit: String(limit), ...(cursor ? { cursor } : {}) });
    const res = await call<{ traces: Summary[]; next_cursor: string | null }>(t.url, 'GET', `/v1/traces?${qs}`, { token });
    assert.equal(res.status, 200, res.text);
    out.push(...res.body.traces);
    cursor = res.body.next_cursor;
  } while (cursor);
  return out;
}

/** percentile_cont: linear interpolation between the closest ranks. */
function percentileCont(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const close = (a: number | null, b: number | null) => (a === null || b === null ? a === b : Math.abs(a - b) < 1e-6);

describe('GET /v1/traces and the reports', () => {
  let t: TestApp;
  let a: Tenant;
  let b: Tenant;
  const sent: Sent[] = [];
  let expected: Map<string, Summary>;

  before(async () => {
    t = await startTestApp();
    a = await tenant(t, 'ta');
    b = await tenant(t, 'tb');
    for (const batch of interleave(generateRuns({ traces: 45, seed: 21 }), 90)) sent.push(...(await a.send(batch)));
    await b.send(generateRuns({ traces: 2, seed: 22 }).flat());
    expected = expectedSummaries(sent);
  });
  after(() => t.close());

  const cases: [string, Record<string, string>, (s: Summary) => boolean][] = [
    ['no filter', {}, () => true],
    ['agent', { agent: 'billing-agent' }, (s) => s.agents.includes('billing-agent')],
    ['status', { status: 'failed' }, (s) => s.status === 'failed'],
    ['status running', { status: 'running' }, (s) => s.status === 'running'],
    ['tool', { tool: 'refund_payment' }, (s) => s.tools.includes('refund_payment')],
    ['time range', { from: '2026-11-01T00:10:00Z', to: '2026-11-01T00:25:00Z' }, (s) => s.last_time! >= '2026-11-01T00:10:00.000Z' && s.first_time! < '2026-11-01T00:25:00.000Z'],
    ['has_violations=false', { has_violations: 'false' }, () => true],
    ['has_violations=true', { has_violations: 'true' }, () => false],
  ];
  for (const [label, query, pred] of cases) {
    test(`filter ${label}: every page, both orders, equals the summaries computed here`, async () => {
      const want = [...expected.values()].filter(pred).sort((x, y) => y.first_seq - x.first_seq);
      const desc = await allTraces(t, a.reader, query, 7);
      assert.deepEqual(desc, want);
      const asc = await allTraces(t, a.reader, { ...query, order: 'asc' }, 5);
      assert.deepEqual(asc, [...want].reverse());
    });
  }

  test('report tools: calls, errors, exact percentiles and the slowest traces, per tool', async () => {
    const calls = sent.filter((e) => e.type === 'tool.call');
    const results = sent.filter((e) => e.type === 'tool.result');
    const res = await call<{ tools: { tool: string; calls: number; errors: number; error_rate: number; p50_ms: number | null; p95_ms: number | null; p99_ms: number | null; slowest: { trace_id: string; duration_ms: number }[] }[] }>(
      t.url, 'GET', '/v1/reports/tools?slowest=2', { token: a.reader });
    assert.equal(res.status, 200, res.text);
    const tools = [...new Set(calls.map((c) => c.name!))].sort();
    assert.deepEqual(res.body.tools.map((x) => x.tool), tools);
    for (const row of res.body.tools) {
      const mine = calls.filter((c) => c.name === row.tool).map((c) => {
        const r = results.find((x) => x.trace_id === c.trace_id && x.span_id === c.span_id && x.name === c.name);
        return { trace: c.trace_id, error: c.status === 'error' || r?.status === 'error', duration: c.duration_ms ?? r?.duration_ms ?? null };
      });
      assert.equal(row.calls, mine.length);
      assert.equal(row.errors, mine.filter((m) => m.error).length);
      const ds = mine.map((m) => m.duration).filter((d): d is number => d !== null).sort((x, y) => x - y);
      assert.ok(close(row.p50_ms, percentileCont(ds, 0.5)), `${row.tool} p50 ${row.p50_ms}`);
      assert.ok(close(row.p95_ms, percentileCont(ds, 0.95)), `${row.tool} p95 ${row.p95_ms}`);
      assert.ok(close(row.p99_ms, percentileCont(ds, 0.99)), `${row.tool} p99 ${row.p99_ms}`);
      const slowestFirst = [...mine].filter((m) => m.duration !== null).sort((x, y) => y.duration! - x.duration!);
      assert.equal(row.slowest[0]?.duration_ms, slowestFirst[0]?.duration);
      assert.ok(row.slowest.length <= 2 && new Set(row.slowest.map((s) => s.trace_id)).size === row.slowest.length);
    }
    // agent and time filters narrow the calls
    const agentRes = await call<{ tools: { tool: string; calls: number }[] }>(t.url, 'GET', '/v1/reports/tools?agent=triage-agent&from=2026-11-01T00:05:00Z', { token: a.reader });
    for (const row of agentRes.body.tools) {
      assert.equal(row.calls, calls.filter((c) => c.name === row.tool && c.agent === 'triage-agent' && c.time >= '2026-11-01T00:05:00.000Z').length);
    }
  });

  test('report loops: identical tool calls repeated in a run, and model-call-heavy runs', async () => {
    const groups = new Map<string, Sent[]>();
    for (const c of sent.filter((e) => e.type === 'tool.call')) {
      const k = `${c.trace_id}|${c.name}|${JSON.stringify(c.attributes?.args)}`;
      groups.set(k, [...(groups.get(k) ?? []), c]);
    }
    const loops = [...groups.values()].filter((g) => g.length >= 3);
    assert.ok(loops.length > 0, 'the dataset has loops');
    const res = await call<{ repeated_calls: { trace_id: string; tool: string; args: unknown; count: number; first_seq: number; last_seq: number }[]; model_call_heavy: { trace_id: string; model_calls: number }[] }>(
      t.url, 'GET', '/v1/reports/loops?min_repeats=3&max_model_calls=1', { token: a.reader });
    assert.equal(res.status, 200, res.text);
    const got = res.body.repeated_calls.map((r) => `${r.trace_id}|${r.tool}|${r.count}|${r.first_seq}|${r.last_seq}|${jcs(r.args)}`).sort();
    const want = loops.map((g) => `${g[0].trace_id}|${g[0].name}|${g.length}|${g[0].seq}|${g[g.length - 1].seq}|${jcs(g[0].attributes?.args)}`).sort();
    assert.deepEqual(got, want);
    const heavy = [...expected.values()].filter((s) => (s.counts['model.call'] ?? 0) > 1).map((s) => s.trace_id).sort();
    assert.deepEqual(res.body.model_call_heavy.map((h) => h.trace_id).sort(), heavy);
  });

  test('report agents: runs and failure rate per agent', async () => {
    const res = await call<{ agents: { agent: string; runs: number; failed_runs: number; failure_rate: number; violations: Record<string, number> }[] }>(
      t.url, 'GET', '/v1/reports/agents', { token: a.reader });
    assert.equal(res.status, 200, res.text);
    const agents = [...new Set([...expected.values()].flatMap((s) => s.agents))].sort();
    assert.deepEqual(res.body.agents.map((x) => x.agent), agents);
    for (const row of res.body.agents) {
      const runs = [...expected.values()].filter((s) => s.agents.includes(row.agent));
      assert.equal(row.runs, runs.length);
      assert.equal(row.failed_runs, runs.filter((s) => s.status === 'failed').length);
      assert.ok(close(row.failure_rate, row.failed_runs / row.runs));
      assert.deepEqual(row.violations, { low: 0, medium: 0, high: 0, critical: 0 });
    }
  });

  test('tenant isolation: another tenant gets 404 for these runs and none of them in lists or reports', async () => {
    const mine = [...expected.keys()];
    for (const id of mine.slice(0, 5)) {
      assertProblem(await call(t.url, 'GET', `/v1/traces/${id}`, { token: b.reader }), 404, 'not_found');
      assertProblem(await call(t.url, 'GET', `/v1/traces/${id}?format=timeline`, { token: b.reader }), 404, 'not_found');
    }
    const theirs = await allTraces(t, b.reader, {}, 1000);
    assert.equal(theirs.length, 2);
    assert.ok(theirs.every((s) => !expected.has(s.trace_id)));
    const tools = await call<{ tools: { calls: number }[] }>(t.url, 'GET', '/v1/reports/tools', { token: b.reader });
    const theirCalls = tools.body.tools.reduce((n, x) => n + x.calls, 0);
    assert.ok(theirCalls < sent.filter((e) => e.type === 'tool.call').length);
    const agents = await call<{ agents: { runs: number }[] }>(t.url, 'GET', '/v1/reports/agents', { token: b.reader });
    assert.equal(agents.body.agents.reduce((n, x) => Math.max(n, x.runs), 0) <= 2, true);
    const loops = await call<{ repeated_calls: { trace_id: string }[] }>(t.url, 'GET', '/v1/reports/loops?min_repeats=2', { token: b.reader });
    assert.ok(loops.body.repeated_calls.every((l) => !expected.has(l.trace_id)));
    // a tenant without any data: empty, not an error
    const c = await t.token('tc', 'audit:read');
    for (const path of ['/v1/traces', '/v1/events', '/v1/reports/tools', '/v1/reports/loops', '/v1/reports/agents']) {
      const res = await call<Record<string, unknown[]>>(t.url, 'GET', path, { token: c });
      assert.equal(res.status, 200, path);
      const list = Object.values(res.body).find(Array.isArray)!;
      assert.deepEqual(list, [], path);
    }
  });

  test('invalid parameters are 400 problems naming the parameter', async () => {
    const bad: [string, string][] = [
      ['/v1/traces?limit=0', 'query.limit'],
      ['/v1/traces?status=done', 'query.status'],
      ['/v1/traces?has_violations=yes', 'query.has_violations'],
      ['/v1/traces?from=now', 'query.from'],
      ['/v1/traces?foo=1', 'query.foo'],
      ['/v1/traces?cursor=%25%25', 'query.cursor'],
      ['/v1/traces/not-a-trace', 'path.trace_id'],
      [`/v1/traces/${'0'.repeat(32)}`, 'path.trace_id'],
      [`/v1/traces/${'a'.repeat(32)}?format=gantt`, 'query.format'],
      ['/v1/reports/tools?slowest=50', 'query.slowest'],
      ['/v1/reports/tools?to=2026-13-01T00:00:00Z', 'query.to'],
      ['/v1/reports/loops?min_repeats=1', 'query.min_repeats'],
      ['/v1/reports/loops?limit=2000', 'query.limit'],
      ['/v1/reports/agents?agent=', 'query.agent'],
      ['/v1/reports/agents?limit=5', 'query.limit'],
    ];
    for (const [path, field] of bad) {
      assertProblem(await call(t.url, 'GET', path, { token: a.reader }), 400, 'validation_failed', [field]);
    }
    const events = await call<{ next_cursor: string }>(t.url, 'GET', '/v1/events?limit=1&order=desc', { token: a.reader });
    assertProblem(await call(t.url, 'GET', `/v1/traces?cursor=${events.body.next_cursor}`, { token: a.reader }), 400, 'validation_failed', ['query.cursor']);
    assertProblem(await call(t.url, 'GET', `/v1/traces/${'a'.repeat(32)}`, { token: a.reader }), 404, 'not_found');
    assertProblem(await call(t.url, 'GET', '/v1/reports/tools', { token: await t.token('ta', 'events:write') }), 403, 'forbidden');
  });

  test('CSV and NDJSON of the runs', async () => {
    const want = [...expected.values()].filter((s) => s.tools.includes(TOOLS[0])).sort((x, y) => y.first_seq - x.first_seq);
    const nd = await fetch(`${t.url}/v1/traces?tool=${TOOLS[0]}`, { headers: { authorization: `Bearer ${a.reader}`, accept: 'application/x-ndjson' } });
    assert.match(nd.headers.get('content-type') ?? '', /^application\/x-ndjson/);
    const lines = (await nd.text()).trim().split('\n').map((l) => JSON.parse(l) as Summary);
    assert.deepEqual(lines, want);
    const csv = await fetch(`${t.url}/v1/traces?tool=${TOOLS[0]}&order=asc`, { headers: { authorization: `Bearer ${a.reader}`, accept: 'text/csv' } });
    assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
    const rows = (await csv.text()).split('\r\n').filter(Boolean);
    assert.equal(rows[0].split(',')[0], 'trace_id');
    assert.deepEqual(rows.slice(1).map((r) => r.split(',')[0]), [...want].reverse().map((s) => s.trace_id));
  });
});
