import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/core/event';
import type { Span, Timeline, Tree } from '../../src/query/trace-tree';
import { startTestApp, type TestApp } from '../support/app';
import { assertProblem, call } from '../support/http';
import { rng, spanIdOf, tenant, traceIdOf, type Tenant } from '../support/query-data';

/**
 * GET /v1/traces/{trace_id}: span trees built from events that arrive out of
 * order, with orphans, a parent cycle, 50 levels of nesting and a span of
 * 5,000 events; the timeline; violations raised by the real policy evaluator
 * attached to the offending span.
 */

const r = rng(31);
let clock = Date.UTC(2026, 10, 20, 9, 0, 0);

function ev(trace_id: string, span_id: string, parent_span_id: string | null, over: Partial<TraceEvent> = {}): TraceEvent {
  clock += 10;
  return {
    id: randomUUID(),
    trace_id,
    span_id,
    parent_span_id,
    session_id: 'conv-tree',
    type: 'tool.call',
    name: 'search_kb',
    agent: 'support-agent',
    time: new Date(clock).toISOString(),
    duration_ms: null,
    status: 'ok',
    attributes: {},
    ...over,
  };
}

function walk(spans: Span[], fn: (s: Span, depth: number) => void, depth = 0): void {
  for (const s of spans) {
    fn(s, depth);
    walk(s.children as Span[], fn, depth + 1);
  }
}

async function tree(t: TestApp, token: string, traceId: string): Promise<Tree> {
  const res = await call<Tree>(t.url, 'GET', `/v1/traces/${traceId}`, { token });
  assert.equal(res.status, 200, res.text.slice(0, 300));
  return res.body;
}

describe('GET /v1/traces/{trace_id}', () => {
  let t: TestApp;
  let a: Tenant;

  before(async () => {
    t = await startTestApp();
    a = await tenant(t, 'tree');
  });
  after(() => t.close());

  test('out-of-order arrival, orphans and a parent cycle: roots first, orphans flagged at the root', async () => {
    const trace = traceIdOf(r);
    const [root, child1, child2, grand, orphan, p, q] = Array.from({ length: 7 }, () => spanIdOf(r));
    const missing = spanIdOf(r);
    const rootStart = ev(trace, root, null, { type: 'run.started', name: 'support-agent' });
    const c1call = ev(trace, child1, root, { name: 'lookup_order' });
    const c1result = ev(trace, child1, root, { type: 'tool.result', name: 'lookup_order', duration_ms: 5, status: 'error' });
    const c2 = ev(trace, child2, root, { type: 'model.call', name: 'plan', duration_ms: 700 });
    const g = ev(trace, grand, child1, { type: 'validation', name: 'check' });
    const o = ev(trace, orphan, missing, { type: 'handoff', name: 'escalate' });
    const pe = ev(trace, p, q, { name: 'p' });
    const qe = ev(trace, q, p, { name: 'q' });
    const done = ev(trace, root, null, { type: 'run.completed', name: 'support-agent', duration_ms: 1000 });
    // children before parents, across batches
    await a.send([g, c1result]);
    await a.send([o, c2]);
    await a.send([c1call, pe, qe]);
    await a.send([rootStart, done]);
    const tr = await tree(t, a.reader, trace);
    assert.equal(tr.trace_id, trace);
    assert.equal(tr.status, 'completed');
    assert.equal(tr.event_count, 9);
    assert.equal(tr.span_count, 7);
    // roots: the real root first, then the orphans by first seq (the orphan, then p: q nests under p once the cycle is cut at p)
    assert.deepEqual(tr.spans.map((s) => [s.span_id, s.orphan]), [[root, false], [orphan, true], [p, true]]);
    assert.equal(tr.orphan_count, 2);
    assert.deepEqual(tr.spans[2].children.map((c) => (c as Span).span_id), [q]);
    const rootSpan = tr.spans[0];
    // children by first seq: child2 (second batch) before child1 (its first event, the result, came first)
    assert.deepEqual(rootSpan.children.map((c) => (c as Span).span_id), [child1, child2]);
    const s1 = rootSpan.children[0] as Span;
    assert.equal(s1.status, 'error');
    assert.equal(s1.depth, 1);
    assert.deepEqual(s1.events.map((e) => e.type), ['tool.result', 'tool.call']);
    assert.ok(s1.events[0].seq < s1.events[1].seq);
    assert.deepEqual((s1.children as Span[]).map((c) => [c.span_id, c.depth]), [[grand, 2]]);
    // root span: two events; duration from its own duration_ms, at least the time between its events
    assert.deepEqual(rootSpan.events.map((e) => e.type), ['run.started', 'run.completed']);
    assert.equal(rootSpan.duration_ms, Math.max(Date.parse(done.time) - Date.parse(rootStart.time), 1000));
    assert.equal((rootSpan.children[1] as Span).duration_ms, 700);

    // the timeline: every event in time order with its span's depth
    const tl = (await call<Timeline>(t.url, 'GET', `/v1/traces/${trace}?format=timeline`, { token: a.reader })).body;
    assert.equal(tl.format, 'timeline');
    const byTime = [rootStart, c1call, c1result, c2, g, o, pe, qe, done];
    assert.deepEqual(tl.items.map((i) => i.id), byTime.map((e) => e.id));
    assert.deepEqual(tl.items.map((i) => i.depth), [0, 1, 1, 1, 2, 0, 0, 1, 0]);
    assert.deepEqual(tl.items.map((i) => i.orphan), [false, false, false, false, false, true, true, false, false]);
    assert.equal(tl.items[0].offset_ms, 0);
    assert.equal(tl.items[8].offset_ms, Date.parse(done.time) - Date.parse(rootStart.time));
  });

  test('50 levels of nesting, sent deepest first', async () => {
    const trace = traceIdOf(r);
    const ids = Array.from({ length: 51 }, () => spanIdOf(r));
    const events = ids.map((id, i) => ev(trace, id, i === 0 ? null : ids[i - 1], { name: `level-${i}` }));
    await a.send([...events].reverse().slice(0, 25));
    await a.send([...events].reverse().slice(25));
    const tr = await tree(t, a.reader, trace);
    assert.equal(tr.max_depth, 50);
    assert.equal(tr.orphan_count, 0);
    assert.equal(tr.spans.length, 1);
    let span = tr.spans[0];
    for (let depth = 0; depth <= 50; depth++) {
      assert.equal(span.span_id, ids[depth]);
      assert.equal(span.depth, depth);
      if (depth < 50) {
        assert.equal(span.children.length, 1);
        span = span.children[0] as Span;
      } else assert.equal(span.children.length, 0);
    }
  });

  test('a span with 5,000 events: all of them, in seq order', async () => {
    const trace = traceIdOf(r);
    const root = spanIdOf(r);
    const wide = spanIdOf(r);
    const seqs: number[] = [];
    await a.send([ev(trace, root, null, { type: 'run.started' })]);
    for (let b = 0; b < 5; b++) {
      const batch = Array.from({ length: 1000 }, (_, i) => ev(trace, wide, root, { type: 'model.call', name: `step-${b * 1000 + i}`, duration_ms: i }));
      seqs.push(...(await a.send(batch)).map((e) => e.seq));
    }
    const tr = await tree(t, a.reader, trace);
    assert.equal(tr.event_count, 5001);
    const span = tr.spans[0].children[0] as Span;
    assert.equal(span.span_id, wide);
    assert.deepEqual(span.events.map((e) => e.seq), seqs);
    assert.equal(span.events[4999].name, 'step-4999');
    assert.equal(span.duration_ms >= 999, true);
    let count = 0;
    walk(tr.spans, (s) => (count += s.events.length));
    assert.equal(count, 5001);
  });

  test("another tenant's trace is 404, and so is an unknown one", async () => {
    const trace = traceIdOf(r);
    await a.send([ev(trace, spanIdOf(r), null)]);
    const other = await t.token('someone-else', 'audit:read');
    assertProblem(await call(t.url, 'GET', `/v1/traces/${trace}`, { token: other }), 404, 'not_found');
    assertProblem(await call(t.url, 'GET', `/v1/traces/${traceIdOf(r)}`, { token: a.reader }), 404, 'not_found');
    assertProblem(await call(t.url, 'GET', `/v1/traces/${trace}?format=timeline`, { token: other }), 404, 'not_found');
  });
});

describe('violations in the tree, the runs list and the agents report', () => {
  let t: TestApp;
  let a: Tenant;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agent-ledger-query-policies-'));
    const root = process.env.TEST_ROOT ?? resolve(__dirname, '..', '..', '..');
    copyFileSync(join(root, 'policies', 'support-agent.yaml'), join(dir, 'support-agent.yaml'));
    t = await startTestApp({ POLICIES_DIR: dir, POLICY_EVALUATOR: 'true', POLICY_POLL_MS: '200' });
    a = await tenant(t, 'viol');
  });
  after(() => t.close());

  test('a forbidden tool call: the violation sits on its span, the run has it, the agent report counts it', async () => {
    const trace = traceIdOf(r);
    const root = spanIdOf(r);
    const shell = spanIdOf(r);
    const clean = traceIdOf(r);
    const sent = await a.send([
      ev(trace, root, null, { type: 'run.started', name: 'support-agent' }),
      ev(trace, shell, root, { name: 'run_shell', attributes: { args: { cmd: 'ls' } } }),
      ev(trace, root, null, { type: 'run.completed', name: 'support-agent' }),
      ev(clean, spanIdOf(r), null, { type: 'run.started', name: 'support-agent' }),
    ]);
    // the evaluator runs asynchronously: wait for the violation to show in the runs list
    const deadline = Date.now() + 15_000;
    let list: { trace_id: string; violation_count: number; violations_by_severity: Record<string, number> }[] = [];
    while (Date.now() < deadline) {
      list = (await call<{ traces: typeof list }>(t.url, 'GET', '/v1/traces?has_violations=true', { token: a.reader })).body.traces;
      if (list.length) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.deepEqual(list.map((x) => [x.trace_id, x.violation_count, x.violations_by_severity]), [[trace, 1, { critical: 1 }]]);
    const without = (await call<{ traces: { trace_id: string }[] }>(t.url, 'GET', '/v1/traces?has_violations=false', { token: a.reader })).body.traces;
    assert.deepEqual(without.map((x) => x.trace_id), [clean]);

    const tr = await tree(t, a.reader, trace);
    assert.equal(tr.violation_count, 1);
    assert.equal(tr.event_count, 3, 'the policy.violation entry is shown as the violation, not as a span');
    const span = tr.spans[0].children[0] as Span;
    assert.equal(span.span_id, shell);
    assert.equal(span.violations.length, 1);
    assert.equal(span.violations[0].rule_id, 'support-agent-never-runs-shell');
    assert.equal(span.violations[0].severity, 'critical');
    assert.equal(span.violations[0].seq, sent[1].seq);
    assert.deepEqual(tr.spans[0].violations, []);
    const tl = (await call<Timeline>(t.url, 'GET', `/v1/traces/${trace}?format=timeline`, { token: a.reader })).body;
    assert.deepEqual(tl.items.map((i) => i.violations.length), [0, 1, 0]);

    const agents = (await call<{ agents: { agent: string; runs: number; violations: Record<string, number> }[] }>(t.url, 'GET', '/v1/reports/agents', { token: a.reader })).body.agents;
    assert.deepEqual(agents, [{ agent: 'support-agent', runs: 2, failed_runs: 0, failure_rate: 0, violations: { low: 0, medium: 0, high: 0, critical: 1 } }]);
  });
});
