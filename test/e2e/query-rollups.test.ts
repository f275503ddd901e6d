import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/core/event';
import { jcs } from '../../src/core/jcs';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { call } from '../support/http';
import { generateRuns, interleave, rng, spanIdOf, tenant, traceIdOf, type Tenant } from '../support/query-data';

/**
 * The loops report's rollup (tool_call_repeats) and the tools report's
 * index-only plans, against results computed here from the events as sent:
 * groups whose calls arrive out of time order, span a day boundary, come
 * from several agents, grow across many batches (projector pages), and the
 * same trace ids, tools and args in another tenant.
 */

type Sent = TraceEvent & { seq: number };

const r = rng(77);
const DAY = Date.UTC(2026, 10, 10);
const at = (minutesFromMidnight: number) => new Date(DAY + minutesFromMidnight * 60_000).toISOString();

function call_(trace_id: string, agent: string, tool: string, args: unknown, time: string, over: Partial<TraceEvent> = {}): TraceEvent[] {
  const span = spanIdOf(r);
  const base = { trace_id, parent_span_id: null, session_id: null, agent, attributes: {}, duration_ms: null };
  return [
    { ...base, id: randomUUID(), span_id: span, type: 'tool.call', name: tool, time, status: null, attributes: { args }, ...over },
    {
      ...base, id: randomUUID(), span_id: span, type: 'tool.result', name: tool, time, status: r() < 0.2 ? 'error' : 'ok',
      duration_ms: 1 + Math.floor(r() * 3000),
    },
  ];
}

interface Filter {
  agent?: string;
  from?: string;
  to?: string;
}

const inFilter = (e: Sent, f: Filter) =>
  (!f.agent || e.agent === f.agent) && (!f.from || Date.parse(e.time) >= Date.parse(f.from)) && (!f.to || Date.parse(e.time) < Date.parse(f.to));

/** The loops report's repeated calls, computed independently: "trace|tool|count|first_seq|last_seq|args", in report order. */
function expectedLoops(sent: Sent[], f: Filter, min: number): string[] {
  const groups = new Map<string, Sent[]>();
  for (const c of sent.filter((e) => e.type === 'tool.call' && inFilter(e, f)).sort((a, b) => a.seq - b.seq)) {
    const k = `${c.trace_id}|${c.name}|${jcs(c.attributes?.args ?? null)}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  return [...groups.values()]
    .filter((g) => g.length >= min)
    .sort((x, y) => y.length - x.length || x[0].seq - y[0].seq)
    .map((g) => `${g[0].trace_id}|${g[0].name}|${g.length}|${g[0].seq}|${g[g.length - 1].seq}|${jcs(g[0].attributes?.args ?? null)}`);
}

async function reportLoops(t: TestApp, token: string, f: Filter, min: number): Promise<string[]> {
  const qs = new URLSearchParams({ ...f, min_repeats: String(min), limit: '1000' } as Record<string, string>);
  const res = await call<{ repeated_calls: { trace_id: string; tool: string; args: unknown; count: number; first_seq: number; last_seq: number }[] }>(
    t.url, 'GET', `/v1/reports/loops?${qs}`, { token });
  assert.equal(res.status, 200, res.text);
  return res.body.repeated_calls.map((l) => `${l.trace_id}|${l.tool}|${l.count}|${l.first_seq}|${l.last_seq}|${jcs(l.args)}`);
}

function percentileCont(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

describe('report rollups: loops from tool_call_repeats, tools from index-only scans', () => {
  let t: TestApp;
  let a: Tenant;
  let b: Tenant;
  const sentA: Sent[] = [];
  const sentB: Sent[] = [];
  const T1 = traceIdOf(r);
  const T2 = traceIdOf(r);
  const T3 = traceIdOf(r);
  const refund = { order_id: 'A-1009', amount: 250 };

  before(async () => {
    t = await startTestApp();
    a = await tenant(t, 'rollup-a');
    b = await tenant(t, 'rollup-b');
    // T1: four identical calls around midnight, the later ones sent first (seq order is not time order)
    sentA.push(...(await a.send([...call_(T1, 'support-agent', 'refund_payment', refund, at(1)), ...call_(T1, 'support-agent', 'refund_payment', refund, at(2))])));
    sentA.push(...(await a.send([...call_(T1, 'support-agent', 'refund_payment', refund, at(-2)), ...call_(T1, 'support-agent', 'search_kb', { q: 'x' }, at(0))])));
    sentA.push(...(await a.send(call_(T1, 'support-agent', 'refund_payment', refund, at(-1)))));
    // T2: one group from two agents (a handoff), one call per batch
    for (const [agent, m] of [['support-agent', 10], ['billing-agent', 11], ['billing-agent', -30], ['support-agent', 12]] as const) {
      sentA.push(...(await a.send(call_(T2, agent, 'lookup_order', { order_id: 'A-7' }, at(m)))));
    }
    // T3: args equal as JSON values but written in another key order: one group
    sentA.push(...(await a.send([
      ...call_(T3, 'triage-agent', 'send_email', { to: 'c@example.com', body: 'hi' }, at(60 * 24 + 5)),
      ...call_(T3, 'triage-agent', 'send_email', { body: 'hi', to: 'c@example.com' }, at(60 * 24 + 6)),
      ...call_(T3, 'triage-agent', 'send_email', { body: 'hi', to: 'd@example.com' }, at(60 * 24 + 7)),
    ])));
    // a call just before midnight whose failing result (with the duration) comes in a later batch, after midnight;
    // a call that never gets a result (no duration: the tool's percentiles are null)
    const late = spanIdOf(r);
    const lateCall: TraceEvent = { id: randomUUID(), trace_id: T3, span_id: late, parent_span_id: null, session_id: null, type: 'tool.call',
      name: 'lookup_invoice', agent: 'triage-agent', time: new Date(DAY - 100).toISOString(), duration_ms: null, status: null, attributes: { args: { order_id: 'A-8' } } };
    sentA.push(...(await a.send([lateCall, { ...lateCall, id: randomUUID(), span_id: spanIdOf(r), type: 'tool.call', name: 'close_case', time: at(3) }])));
    sentA.push(...(await a.send(call_(T2, 'billing-agent', 'search_kb', { q: 'y' }, at(20)))));
    // a report waits for the projection: the result below is projected in a later page than its call
    assert.equal((await call(t.url, 'GET', '/v1/reports/tools', { token: a.reader })).status, 200);
    sentA.push(...(await a.send([{ ...lateCall, id: randomUUID(), type: 'tool.result', time: new Date(DAY + 100).toISOString(), status: 'error', duration_ms: 4321, attributes: {} }])));
    // generated runs around midnight, interleaved over many batches
    const runs = generateRuns({ traces: 30, seed: 78, start: DAY - 15 * 60_000 });
    for (const batch of interleave(runs, 25, 79)) sentA.push(...(await a.send(batch)));
    // tenant B: the same trace ids, tools and args
    sentB.push(...(await b.send([...call_(T1, 'support-agent', 'refund_payment', refund, at(3)), ...call_(T1, 'support-agent', 'refund_payment', refund, at(4))])));
    sentB.push(...(await b.send([...call_(T3, 'triage-agent', 'send_email', { to: 'c@example.com', body: 'hi' }, at(5))])));
  });
  after(() => t.close());

  const filters: [string, Filter][] = [
    ['no filter', {}],
    ['agent', { agent: 'support-agent' }],
    ['the other agent of a shared group', { agent: 'billing-agent' }],
    ['from midnight (cuts groups)', { from: at(0) }],
    ['to midnight (cuts groups)', { to: at(0) }],
    ['one day', { from: at(0), to: at(60 * 24) }],
    ['a window holding whole groups', { from: at(-60), to: at(60 * 24 + 60) }],
    ['agent and a range', { agent: 'support-agent', from: at(-1), to: at(11) }],
    ['a range with no calls', { from: at(60 * 24 * 5) }],
    ['whole days holding every call', { from: at(-24 * 60), to: at(3 * 24 * 60) }],
    ['up to a minute before the last call', { from: at(-24 * 60), to: at(60 * 24 + 6) }],
    ['from a minute after the first call', { from: new Date(DAY - 14 * 60_000).toISOString() }],
  ];
  for (const [label, f] of filters) {
    test(`loops, ${label}: equals the groups computed from the events as sent`, async () => {
      for (const min of [2, 3, 4]) {
        const want = expectedLoops(sentA, f, min);
        assert.deepEqual(await reportLoops(t, a.reader, f, min), want, `min_repeats=${min}`);
      }
    });
  }

  test('loops: the dataset exercises the cases (cut groups, shared groups, out-of-order times)', () => {
    const all = expectedLoops(sentA, {}, 2);
    assert.ok(all.some((l) => l.startsWith(`${T1}|refund_payment|4|`)), 'T1 loop of 4');
    assert.ok(all.some((l) => l.startsWith(`${T2}|lookup_order|4|`)), 'T2 loop of 4 from two agents');
    assert.ok(all.some((l) => l.startsWith(`${T3}|send_email|2|`)), 'T3 loop with reordered keys');
    assert.notDeepEqual(expectedLoops(sentA, { from: at(0) }, 2), all);
    assert.ok(all.length > 5, `generated loops: ${all.length}`);
  });

  test('loops: tenant isolation (the same trace ids, tools and args in another tenant)', async () => {
    assert.deepEqual(await reportLoops(t, b.reader, {}, 2), expectedLoops(sentB, {}, 2));
    assert.equal((await reportLoops(t, b.reader, {}, 2)).length, 1);
    assert.deepEqual(await reportLoops(t, a.reader, {}, 2), expectedLoops(sentA, {}, 2));
    const c = await t.token('rollup-c', 'audit:read');
    assert.deepEqual(await reportLoops(t, c, {}, 2), []);
  });

  for (const [label, f] of filters) {
    test(`tools, ${label}: calls, errors, exact percentiles and the slowest call per tool`, async () => {
      const qs = new URLSearchParams({ ...f, slowest: '3' } as Record<string, string>);
      const res = await call<{ tools: { tool: string; calls: number; errors: number; p50_ms: number | null; p95_ms: number | null; p99_ms: number | null; slowest: { trace_id: string; seq: number; duration_ms: number }[] }[] }>(
        t.url, 'GET', `/v1/reports/tools?${qs}`, { token: a.reader });
      assert.equal(res.status, 200, res.text);
      const calls = sentA.filter((e) => e.type === 'tool.call' && inFilter(e, f));
      const mine = calls.map((c) => {
        const res_ = sentA.find((x) => x.type === 'tool.result' && x.trace_id === c.trace_id && x.span_id === c.span_id && x.name === c.name);
        return { c, error: c.status === 'error' || res_?.status === 'error', duration: c.duration_ms ?? res_?.duration_ms ?? null };
      });
      assert.deepEqual(res.body.tools.map((x) => x.tool), [...new Set(calls.map((c) => c.name!))].sort());
      for (const row of res.body.tools) {
        const of = mine.filter((m) => m.c.name === row.tool);
        assert.equal(row.calls, of.length, row.tool);
        assert.equal(row.errors, of.filter((m) => m.error).length, row.tool);
        const ds = of.map((m) => m.duration).filter((d): d is number => d !== null).sort((x, y) => x - y);
        for (const [p, got] of [[0.5, row.p50_ms], [0.95, row.p95_ms], [0.99, row.p99_ms]] as const) {
          const want = percentileCont(ds, p);
          assert.ok(want === null ? got === null : got !== null && Math.abs(got - want) < 1e-6, `${row.tool} p${p * 100}: ${got} vs ${want}`);
        }
        assert.equal(row.slowest[0]?.duration_ms, ds[ds.length - 1], `${row.tool} slowest`);
        for (const s of row.slowest) assert.ok(of.some((m) => m.c.seq === s.seq && m.duration === s.duration_ms && m.c.trace_id === s.trace_id));
      }
    });
  }
  test('tool_call_days and tool_call_repeats hold exactly what the events as sent give', async () => {
    // the reports wait for the projection: after this, both rollups are complete
    assert.equal((await call(t.url, 'GET', '/v1/reports/tools', { token: a.reader })).status, 200);
    assert.equal((await call(t.url, 'GET', '/v1/reports/tools', { token: b.reader })).status, 200);
    for (const [name, sent] of [['rollup-a', sentA], ['rollup-b', sentB]] as const) {
      const days = new Map<string, { calls: number; errors: number; timed: number }>();
      const repeats = new Map<string, Sent[]>();
      for (const c of sent.filter((e) => e.type === 'tool.call')) {
        const results = sent.filter((x) => x.type === 'tool.result' && x.trace_id === c.trace_id && x.span_id === c.span_id && x.name === c.name);
        const duration = c.duration_ms ?? results.find((x) => x.duration_ms !== null)?.duration_ms ?? null;
        const error = c.status === 'error' || results.some((x) => x.status === 'error');
        const k = `${c.name}|${new Date(c.time).toISOString().slice(0, 10)}|${c.agent}`;
        const d = days.get(k) ?? { calls: 0, errors: 0, timed: 0 };
        days.set(k, { calls: d.calls + 1, errors: d.errors + Number(error), timed: d.timed + Number(duration !== null) });
        const g = `${c.trace_id}|${c.name}|${jcs(c.attributes?.args ?? null)}`;
        repeats.set(g, [...(repeats.get(g) ?? []), c]);
      }
      // every group has its row, also with one call (the report asks for calls >= min_repeats)
      const wantRepeats = [...repeats.entries()].map(([k, g]) => {
        const times = g.map((c) => Date.parse(c.time));
        const seqs = g.map((c) => c.seq);
        return `${k.split('|').slice(0, 2).join('|')}|${g.length}|${Math.min(...seqs)}|${Math.max(...seqs)}|${new Date(Math.min(...times)).toISOString()}|${new Date(Math.max(...times)).toISOString()}|${[...new Set(g.map((c) => c.agent))].sort().join(',')}`;
      });
      const [gotDays, gotRepeats] = await asSuperuser(t.db, async (db) => [
        (await db.query(`SELECT tool, to_char(day, 'YYYY-MM-DD') AS day, agent, calls, errors, timed FROM tool_call_days WHERE tenant_id = $1`, [name])).rows as { tool: string; day: string; agent: string; calls: number; errors: number; timed: number }[],
        (await db.query(`SELECT trace_id, tool, calls, first_seq, last_seq, first_time, last_time, agents FROM tool_call_repeats WHERE tenant_id = $1`, [name])).rows as { trace_id: string; tool: string; calls: number; first_seq: string; last_seq: string; first_time: Date; last_time: Date; agents: string[] }[],
      ]);
      if (name === 'rollup-a') {
        // the call completed by a later page, after midnight, counts on its own day, failed and timed
        assert.deepEqual(gotDays.find((d) => d.tool === 'lookup_invoice' && d.day === '2026-11-09' && d.agent === 'triage-agent'), { tool: 'lookup_invoice', day: '2026-11-09', agent: 'triage-agent', calls: 1, errors: 1, timed: 1 });
      }
      assert.deepEqual(new Map(gotDays.map((d) => [`${d.tool}|${d.day}|${d.agent}`, { calls: d.calls, errors: d.errors, timed: d.timed }])), days, name);
      assert.deepEqual(
        gotRepeats.map((x) => `${x.trace_id}|${x.tool}|${x.calls}|${x.first_seq}|${x.last_seq}|${x.first_time.toISOString()}|${x.last_time.toISOString()}|${x.agents.join(',')}`).sort(),
        wantRepeats.sort(),
        name,
      );
    }
  });
});
