import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { mintToken } from '../src/auth/token';
import { signBatch } from '../src/core/batch';
import type { TraceEvent } from '../src/core/event';
import { aggregateStatsSql, eventsSql, ranksStatsSql, repeatedCallsSql, tracesSql, type EventFilter, type TraceFilter } from '../src/query/query.repository';
import { producerKey, registerKey } from '../test/support/factories';
import { rng } from '../test/support/query-data';
import { migrate, withCredentials } from '../src/database/data-source';
import { startEmbeddedPostgres } from '../src/database/embedded';
import { BENCH_SECRET, freePort, median, percentile, ROOT, startBenchDb, startService, table, type BenchDb } from './support';

/**
 * npm run bench:query — loads BENCH_EVENTS (default 1,000,000) events in
 * BENCH_EVENTS/100 runs (20 agents, 30 tools, attributes of 0.3-1.5 KB) as
 * signed 500-event batches over HTTP into the real service (its own process,
 * the ingest benchmark's path), waits for the query projection to catch up,
 * then measures p50/p95 over HTTP of each documented query and report, the
 * trace tree also as one raw SQL statement, and writes the EXPLAIN plans of
 * the list queries to docs/query-plans.md. The policy evaluator is off (it
 * would compete for the 2 cores during the load; violations are not the
 * subject here).
 *
 * BENCH_DATA_DIR=<dir> keeps the cluster in <dir> and reuses it: a run finds
 * the events already loaded and goes straight to the queries (pending
 * migrations are applied first, so a new index or rollup is measured on the
 * same data). BENCH_PHASE=load stops after the load, so the slow load and
 * the query measurements can run at different times.
 */

/** The query module's read models (emptied for the rebuild, vacuumed before the queries). */
const READ_MODELS = ['query_events', 'trace_summaries', 'tool_calls', 'tool_call_days', 'tool_call_repeats'];
const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const PER_TRACE = 100;
const TRACES = Math.max(1, Math.round(EVENTS / PER_TRACE));
const BATCH = 500;
const CLIENTS = 4;
const RUNS = Number(process.env.BENCH_QUERY_RUNS ?? 40);
const TENANT = 'bench';
const DAY = 86_400_000;
const START = Date.UTC(2026, 9, 1);
const SPAN_DAYS = 30;
const DATA_DIR = process.env.BENCH_DATA_DIR;
const PHASE = process.env.BENCH_PHASE ?? 'all';
const APP_PASSWORD = 'bench-app-password';

/** The throwaway cluster, or with BENCH_DATA_DIR one that is kept (a fixed local password: the cluster listens on 127.0.0.1 only). */
async function benchDb(): Promise<BenchDb> {
  if (!DATA_DIR) return startBenchDb();
  const db = await startEmbeddedPostgres({ dataDir: DATA_DIR, port: await freePort(), password: 'bench-owner-password', persistent: true });
  await migrate(db.ownerUrl, APP_PASSWORD);
  return { ownerUrl: db.ownerUrl, appUrl: withCredentials(db.ownerUrl, 'agent_ledger_app', APP_PASSWORD), stop: () => db.stop() };
}

const AGENTS = Array.from({ length: 20 }, (_, i) => `agent-${String(i).padStart(2, '0')}`);
const TOOLS = Array.from({ length: 30 }, (_, i) => `tool_${String(i).padStart(2, '0')}`);
const hex = (r: () => number, n: number) => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('');
const LOREM = 'the customer reports that the parcel arrived damaged and asks for a partial refund of the order total; ';

/** One run of about PER_TRACE events: nested spans, tool calls with results, model calls, some loops. */
function run(i: number): TraceEvent[] {
  const r = rng(1000 + i);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const trace_id = `c${hex(r, 31)}`;
  const agent = AGENTS[i % AGENTS.length];
  const session_id = `conv-${Math.floor(i / 3)}`;
  let clock = START + Math.floor((i / TRACES) * SPAN_DAYS * DAY);
  const out: TraceEvent[] = [];
  const ev = (e: Partial<TraceEvent> & Pick<TraceEvent, 'span_id' | 'type'>): TraceEvent => {
    clock += 50 + Math.floor(r() * 2000);
    const x: TraceEvent = {
      id: randomUUID(), trace_id, parent_span_id: null, session_id, name: null, agent,
      time: new Date(clock).toISOString(), duration_ms: null, status: 'ok', attributes: {}, ...e,
    };
    out.push(x);
    return x;
  };
  const root = hex(r, 16);
  ev({ span_id: root, type: 'run.started', name: agent, attributes: { input: LOREM.repeat(2 + Math.floor(r() * 4)), user: `U-${i % 997}` } });
  const parents = [root];
  while (out.length < PER_TRACE - 2) {
    const parent = parents[Math.min(parents.length - 1, Math.floor(r() * 6))];
    const k = r();
    if (k < 0.25) {
      ev({ span_id: hex(r, 16), parent_span_id: parent, type: 'model.call', name: 'chat', duration_ms: 200 + Math.floor(r() * 3000),
        attributes: { model: pick(['gpt-5', 'gpt-5-mini', 'claude-sonnet']), prompt: LOREM.repeat(1 + Math.floor(r() * 6)), usage: { input_tokens: Math.floor(r() * 4000), output_tokens: Math.floor(r() * 800) } } });
    } else if (k < 0.9) {
      const tool = TOOLS[Math.floor(Math.pow(r(), 1.5) * TOOLS.length)];
      const args = { order_id: `A-${Math.floor(r() * 200_000)}`, customer_id: `C-${Math.floor(r() * 50_000)}`, amount: Math.floor(r() * 50_000) / 100, currency: 'EUR', reason: LOREM.slice(0, 40 + Math.floor(r() * 60)) };
      const repeat = r() < 0.02 ? 4 : 1;
      for (let n = 0; n < repeat; n++) {
        const span = hex(r, 16);
        const error = r() < 0.06;
        ev({ span_id: span, parent_span_id: parent, type: 'tool.call', name: tool, status: null, attributes: { args } });
        ev({ span_id: span, parent_span_id: parent, type: 'tool.result', name: tool, status: error ? 'error' : 'ok', duration_ms: Math.floor(5 + Math.pow(r(), 3) * 5000),
          attributes: error ? { error: 'upstream timeout' } : { result: { ok: true, summary: LOREM.slice(0, 80 + Math.floor(r() * 200)) } } });
      }
    } else if (k < 0.95) {
      const span = hex(r, 16);
      ev({ span_id: span, parent_span_id: parent, type: 'handoff', name: 'delegate', attributes: { target_agent: pick(AGENTS), reason: LOREM.slice(0, 60) } });
      parents.push(span);
    } else {
      ev({ span_id: hex(r, 16), parent_span_id: parent, type: pick(['validation', 'approval.requested', 'approval.granted', 'retry', 'evaluation'] as const), name: pick(TOOLS), attributes: { note: LOREM.slice(0, 100) } });
    }
  }
  const end = r();
  if (end < 0.8) ev({ span_id: root, type: 'run.completed', name: agent, duration_ms: clock - Date.parse(out[0].time) });
  else if (end < 0.95) ev({ span_id: root, type: 'run.failed', name: agent, status: 'error', attributes: { error: 'gave up' } });
  return out;
}

async function post(url: string, token: string, body: string): Promise<void> {
  for (;;) {
    const res = await fetch(`${url}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
    await res.arrayBuffer();
    if (res.status === 201) return;
    if (res.status !== 503) throw new Error(`ingest answered ${res.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function timeIt(n: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  await fn(0);
  const xs: number[] = [];
  for (let i = 1; i <= n; i++) {
    const t = performance.now();
    await fn(i);
    xs.push(performance.now() - t);
  }
  return xs.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const db = await benchDb();
  const svc = await startService(db, { POLICY_EVALUATOR: 'false', DATABASE_POOL_SIZE: '12', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'fatal' });
  const owner = new Client({ connectionString: db.ownerUrl });
  await owner.connect();
  const secret = new TextEncoder().encode(BENCH_SECRET);
  const rows: (string | number)[][] = [['query', 'p50 ms', 'p95 ms', 'runs', 'result']];
  const notes: string[] = [];
  try {
    const reader = await mintToken({ secret, tenant: TENANT, scope: 'audit:read' });
    const cursor = async () => Number((await owner.query(`SELECT COALESCE((SELECT seq FROM query_cursors WHERE tenant_id = $1), 0) AS s`, [TENANT])).rows[0].s);
    const ledgerHead = async () => Number((await owner.query(`SELECT COALESCE(max(seq), 0) AS s FROM ledger_entries WHERE tenant_id = $1`, [TENANT])).rows[0].s);
    const runsPerBatch = BATCH / PER_TRACE;
    const batches = Math.ceil(TRACES / runsPerBatch);
    // query parameters: the first run of every 97th batch (deterministic: the same with a reused cluster)
    const sample: { trace: string; order: string; session: string }[] = [];
    for (let b = 0; b < batches; b += 97) {
      const evs = run(b * runsPerBatch);
      const call = evs.find((e) => e.type === 'tool.call')!;
      sample.push({ trace: evs[0].trace_id, order: (call.attributes!.args as { order_id: string }).order_id, session: evs[0].session_id! });
    }

    let head = await ledgerHead();
    if (head > 0) {
      // a kept cluster (BENCH_DATA_DIR): the same generator, loaded by an earlier run
      if (head < TRACES * (PER_TRACE - 10) || head > TRACES * (PER_TRACE + 10)) throw new Error(`${DATA_DIR} holds ${head} entries, not a load of ${EVENTS} events`);
      notes.push(`reused the cluster in ${DATA_DIR} (${head.toLocaleString('en')} entries loaded by an earlier run; load and rebuild not timed in this run)`);
      while ((await cursor()) < head) await new Promise((r) => setTimeout(r, 250));
    } else {
      // ---- load ------------------------------------------------------------------
      const key = await producerKey();
      await registerKey(svc.url, await mintToken({ secret, tenant: TENANT, scope: 'admin' }), key);
      const writer = await mintToken({ secret, tenant: TENANT, scope: 'events:write' });
      let next = 0;
      const t0 = performance.now();
      let lastLog = t0;
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          while (next < batches) {
            const b = next++;
            const evs: TraceEvent[] = [];
            for (let i = b * runsPerBatch; i < Math.min(TRACES, (b + 1) * runsPerBatch); i++) evs.push(...run(i));
            await post(svc.url, writer, JSON.stringify({ events: evs, signature: await signBatch(evs, key.privateKey, key.kid, key.alg) }));
            if (performance.now() - lastLog > 15_000) {
              lastLog = performance.now();
              process.stdout.write(`  loaded ${b * BATCH} events in ${((lastLog - t0) / 1000).toFixed(0)} s, projected ${await cursor()}\n`);
            }
          }
        }),
      );
      const loadS = (performance.now() - t0) / 1000;
      head = await ledgerHead();
      const atLoadEnd = await cursor();
      while ((await cursor()) < head) await new Promise((r) => setTimeout(r, 250));
      const caughtS = (performance.now() - t0) / 1000;
      notes.push(`loaded ${head.toLocaleString('en')} entries (${TRACES.toLocaleString('en')} runs) by signed HTTP ingest, 500-event batches, ${CLIENTS} clients: ${loadS.toFixed(0)} s, ${(head / loadS).toFixed(0)} events/s with the projector running`);
      notes.push(`projection: ${atLoadEnd.toLocaleString('en')} entries projected when the load ended, caught up ${(caughtS - loadS).toFixed(1)} s later (${(head / caughtS).toFixed(0)} entries/s over the whole load)`);

      // A rebuild from scratch: the projector alone, the same entries.
      await owner.query(`BEGIN`);
      await owner.query(`TRUNCATE ${READ_MODELS.join(', ')}`);
      await owner.query(`UPDATE query_cursors SET seq = 0 WHERE tenant_id = $1`, [TENANT]);
      await owner.query(`COMMIT`);
      const r0 = performance.now();
      // the service's 2 s poll finds the tenant behind
      while ((await cursor()) < head) await new Promise((r) => setTimeout(r, 250));
      const rebuildS = (performance.now() - r0) / 1000;
      notes.push(`projection rebuild from an empty read model (projector alone, woken by its 2 s poll): ${rebuildS.toFixed(0)} s, ${(head / rebuildS).toFixed(0)} entries/s`);
    }
    if (PHASE === 'load') {
      process.stdout.write(`\nbench:query, load phase\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
      return;
    }
    await owner.query(`VACUUM ANALYZE ${READ_MODELS.join(', ')}`);
    const sizes = await owner.query(`SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) AS size FROM pg_class WHERE relname IN ('ledger_entries', 'ledger_bodies', 'query_events', 'trace_summaries', 'tool_calls') ORDER BY relname`);
    notes.push(`sizes with indexes: ${sizes.rows.map((r: { relname: string; size: string }) => `${r.relname} ${r.size}`).join(', ')}`);

    // ---- queries over HTTP ---------------------------------------------------------
    const get = async (path: string, accept = 'application/json') => {
      const res = await fetch(`${svc.url}${path}`, { headers: { authorization: `Bearer ${reader}`, accept } });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${text.slice(0, 300)}`);
      return text;
    };
    const r = rng(5);
    const some = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
    const day = (d: number) => new Date(START + d * DAY).toISOString();
    const measure = async (label: string, path: (i: number) => string, describe: (body: string) => string, n = RUNS) => {
      let last = '';
      const xs = await timeIt(n, async (i) => {
        last = await get(path(i));
      });
      rows.push([label, percentile(xs, 50).toFixed(1), percentile(xs, 95).toFixed(1), n, describe(last)]);
    };
    const count = (key: string) => (body: string) => `${(JSON.parse(body) as Record<string, unknown[]>)[key].length} ${key}`;
    const events = count('events');
    const traces = count('traces');
    await measure('events, no filter, newest 100', () => '/v1/events?order=desc&limit=100', events);
    await measure('events, trace_id', () => `/v1/events?trace_id=${some(sample).trace}`, events);
    await measure('events, session_id', () => `/v1/events?session_id=${some(sample).session}`, events);
    await measure('events, agent, newest 100', () => `/v1/events?agent=${some(AGENTS)}&order=desc`, events);
    await measure('events, type=approval.granted', () => `/v1/events?type=approval.granted&order=desc`, events);
    await measure('events, name + status=error', () => `/v1/events?name=${some(TOOLS)}&status=error&order=desc`, events);
    await measure('events, attr.args.order_id', () => `/v1/events?attr.args.order_id=${some(sample).order}`, events);
    await measure('events, agent + type + 1 day', (i) => `/v1/events?agent=${some(AGENTS)}&type=tool.call&from=${day(i % 29)}&to=${day((i % 29) + 1)}`, events);
    await measure('events, 1 hour, oldest first', (i) => `/v1/events?from=${day(i % 29)}&to=${new Date(START + (i % 29) * DAY + 3_600_000).toISOString()}`, events);
    // a deep page: the 50th page of an agent's events, by cursor
    let deep = '';
    let pages = 0;
    for (let c: string | null = null; pages < 50; pages++) {
      c = (JSON.parse(await get(`/v1/events?agent=agent-03${c ? `&cursor=${c}` : ''}`)) as { next_cursor: string | null }).next_cursor;
      if (!c) break;
      deep = c;
    }
    await measure(`events, agent, page ${pages + 1} by cursor`, () => `/v1/events?agent=agent-03&cursor=${deep}`, events);
    await measure('traces, newest 100', () => '/v1/traces', traces);
    await measure('traces, agent', () => `/v1/traces?agent=${some(AGENTS)}`, traces);
    await measure('traces, status=failed', () => '/v1/traces?status=failed', traces);
    await measure('traces, tool + 3 days', (i) => `/v1/traces?tool=${some(TOOLS)}&from=${day(i % 27)}&to=${day((i % 27) + 3)}`, traces);
    await measure('traces, has_violations=false, agent', () => `/v1/traces?has_violations=false&agent=${some(AGENTS)}`, traces);
    await measure('trace tree (HTTP)', () => `/v1/traces/${some(sample).trace}`, (b) => `${(JSON.parse(b) as { event_count: number }).event_count} events, depth ${(JSON.parse(b) as { max_depth: number }).max_depth}`);
    await measure('trace timeline (HTTP)', () => `/v1/traces/${some(sample).trace}?format=timeline`, (b) => `${(JSON.parse(b) as { items: unknown[] }).items.length} items`);
    const rawTree = await timeIt(RUNS, async () => {
      await owner.query(RAW_TREE_SQL, [TENANT, some(sample).trace]);
    });
    rows.push(['trace tree, one raw SQL statement', percentile(rawTree, 50).toFixed(1), percentile(rawTree, 95).toFixed(1), RUNS, 'recursive CTE, same rows']);
    const reportRuns = Math.max(10, Math.floor(RUNS / 2));
    const toolsDesc = (b: string) => `${(JSON.parse(b) as { tools: unknown[] }).tools.length} tools`;
    await measure('report tools, all time', () => '/v1/reports/tools', toolsDesc, reportRuns);
    await measure('report tools, agent + 7 days', (i) => `/v1/reports/tools?agent=${some(AGENTS)}&from=${day(i % 23)}&to=${day((i % 23) + 7)}`, toolsDesc, reportRuns);
    await measure('report loops, all time', () => '/v1/reports/loops?max_model_calls=30', (b) => {
      const x = JSON.parse(b) as { repeated_calls: unknown[]; model_call_heavy: unknown[] };
      return `${x.repeated_calls.length} loops, ${x.model_call_heavy.length} heavy runs`;
    }, reportRuns);
    await measure('report loops, 7 days', (i) => `/v1/reports/loops?from=${day(i % 23)}&to=${day((i % 23) + 7)}`, (b) => `${(JSON.parse(b) as { repeated_calls: unknown[] }).repeated_calls.length} loops`, reportRuns);
    await measure('report agents, all time', () => '/v1/reports/agents', (b) => `${(JSON.parse(b) as { agents: unknown[] }).agents.length} agents`, reportRuns);
    await measure('report agents, 7 days', (i) => `/v1/reports/agents?from=${day(i % 23)}&to=${day((i % 23) + 7)}`, (b) => `${(JSON.parse(b) as { agents: unknown[] }).agents.length} agents`, reportRuns);

    // streaming: one agent's events as CSV, memory of the service process before and after
    const s0 = performance.now();
    const csv = await get('/v1/events?agent=agent-05', 'text/csv');
    const lines = csv.split('\r\n').length - 2;
    notes.push(`CSV stream of one agent's events: ${lines.toLocaleString('en')} rows, ${(csv.length / 1e6).toFixed(0)} MB in ${((performance.now() - s0) / 1000).toFixed(1)} s`);

    // ---- plans ---------------------------------------------------------------------
    const plans: [string, string, unknown[]][] = [];
    const ev = (label: string, f: Partial<EventFilter>) => {
      const { sql, params } = eventsSql(TENANT, { attr: [], ...f }, 'desc', undefined, 101);
      plans.push([label, sql, params]);
    };
    const tr = (label: string, f: TraceFilter) => {
      const { sql, params } = tracesSql(TENANT, f, 'desc', undefined, 101);
      plans.push([label, sql, params]);
    };
    ev('events, no filter', {});
    ev('events, trace_id', { trace_id: sample[0].trace });
    ev('events, agent', { agent: 'agent-07' });
    ev('events, type (rare)', { type: 'approval.granted' });
    ev('events, name + status', { name: 'tool_03', status: 'error' });
    ev('events, attribute', { attr: [{ param: 'attr.args.order_id', path: ['args', 'order_id'], value: sample[0].order }] });
    ev('events, agent + type + 1 day', { agent: 'agent-07', type: 'tool.call', from: day(10), to: day(11) });
    tr('traces, no filter', {});
    tr('traces, agent', { agent: 'agent-07' });
    tr('traces, tool + 3 days', { tool: 'tool_03', from: day(10), to: day(13) });
    const rp = (label: string, q: { sql: string; params: unknown[] }) => plans.push([label, q.sql, q.params]);
    rp('report tools, all time: counts from tool_call_days, percentiles by rank', ranksStatsSql(TENANT));
    rp('report tools, agent + 7 days: one aggregate over the calls in range', aggregateStatsSql(TENANT, { agent: 'agent-07', from: day(10), to: day(17) }));
    rp('report loops, all time: tool_call_repeats', repeatedCallsSql(TENANT, {}, 3, 100));
    rp('report loops, 7 days: tool_call_repeats, groups cut by the range recounted', repeatedCallsSql(TENANT, { from: day(10), to: day(17) }, 3, 100));
    let doc = `# Query plans at ${head.toLocaleString('en')} entries\n\nWritten by \`npm run bench:query\` (${new Date().toISOString().slice(0, 10)}): \`EXPLAIN (ANALYZE, BUFFERS)\` of the first page (limit 100 + 1) of each list query and of the tools and loops reports' statements, exactly the SQL the API runs (\`eventsSql\`, \`tracesSql\`, \`ranksStatsSql\`, \`aggregateStatsSql\`, \`repeatedCallsSql\` in src/query/query.repository.ts), on the benchmark's data.\n`;
    for (const [label, sql, params] of plans) {
      const plan = await owner.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
      doc += `\n## ${label}\n\n\`\`\`\n${plan.rows.map((x: { 'QUERY PLAN': string }) => x['QUERY PLAN']).join('\n')}\n\`\`\`\n`;
    }
    const treePlan = await owner.query(`EXPLAIN (ANALYZE, BUFFERS) ${RAW_TREE_SQL}`, [TENANT, sample[0].trace]);
    doc += `\n## trace tree, one raw SQL statement (the benchmark's baseline)\n\n\`\`\`\n${treePlan.rows.map((x: { 'QUERY PLAN': string }) => x['QUERY PLAN']).join('\n')}\n\`\`\`\n`;
    mkdirSync(join(ROOT, 'docs'), { recursive: true });
    writeFileSync(join(ROOT, 'docs', 'query-plans.md'), doc);

    process.stdout.write(`\nbench:query\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${table(rows)}\n\nplans: docs/query-plans.md; median p95 of lists and tree: ${median(rows.slice(1, 19).map((x) => Number(x[2]))).toFixed(1)} ms\n`);
  } finally {
    await owner.end();
    await svc.stop();
    await db.stop();
  }
}

/** The trace tree as one statement: the trace's entries with bodies and each span's depth. */
const RAW_TREE_SQL = `
  WITH RECURSIVE ev AS (
    SELECT e.seq, e.span_id, e.parent_span_id, e.type, e.name, e.agent, e.event_time, e.duration_ms, e.status, b.body
    FROM ledger_entries e JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
    WHERE e.tenant_id = $1 AND e.trace_id = $2
  ),
  spans AS (SELECT span_id, min(parent_span_id) AS parent FROM ev GROUP BY span_id),
  tree AS (
    SELECT span_id, 0 AS depth FROM spans WHERE parent IS NULL OR parent NOT IN (SELECT span_id FROM spans)
    UNION ALL
    SELECT s.span_id, t.depth + 1 FROM spans s JOIN tree t ON s.parent = t.span_id
  )
  SELECT ev.*, tree.depth FROM ev JOIN tree USING (span_id) ORDER BY ev.seq`;

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
