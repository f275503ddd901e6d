import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { Client } from 'pg';
import { createApp } from '../src/app';
import { mintToken } from '../src/auth/token';
import { LedgerClient, newSpanId, newTraceId } from '../src/client/ledger-client';
import { loadEnv } from '../src/config/config';
import type { TraceEvent } from '../src/core/event';
import { loadPolicySet, PolicyEngine, type LedgerEventForPolicy, type PolicySet } from '../src/core/policy';
import { EvaluatorService } from '../src/policy/evaluator.service';
import { PolicyRepository } from '../src/policy/policy.repository';
import { PolicyService } from '../src/policy/policy.service';
import { loadLedgerKey } from '../src/runtime/ledger-key';
import { producerKey } from '../test/support/factories';
import { BENCH_SECRET, ROOT, startBenchDb, table } from './support';

/**
 * npm run bench:policy — policy evaluation throughput over a ledger of
 * realistic support-agent runs (BENCH_EVENTS, default 50 000, 20 events per
 * run, 5 runs per conversation), in three ways:
 *   - raw read: the evaluator's own page query (entries + bodies, JSON parsed), nothing else;
 *   - engine: the pure PolicyEngine over the events in memory;
 *   - evaluator: the service end to end (read pages, replay, evaluate, write
 *     violations + ledger entries + cursor per page), timed from the reload
 *     that puts the set in force until the cursor reaches the head;
 * with the sample set (policies/support-agent.yaml) and with 100 generated rules.
 */

const EVENTS = Number(process.env.BENCH_EVENTS ?? 50_000);
const RUN = 20;
const TENANT = 'bench';
const TOOLS = ['search_kb', 'lookup_customer', 'lookup_order', 'send_email', 'create_ticket', 'update_address'];

/** One support run: mostly tool calls and results; every 50th run refunds without approval (a violation). */
function runEvents(r: number): TraceEvent[] {
  const trace = newTraceId();
  const root = newSpanId();
  const session = `conv-${Math.floor(r / 5)}`;
  const base = Date.UTC(2026, 10, 25, 10, 0, 0) + r * 1000;
  const out: TraceEvent[] = [];
  const ev = (type: string, name: string | null, attributes: Record<string, unknown>): void => {
    out.push({
      id: randomUUID(), trace_id: trace, span_id: newSpanId(), parent_span_id: root, session_id: session,
      type, name, agent: 'support-agent', time: new Date(base + out.length * 10).toISOString(),
      duration_ms: 20, status: 'ok', attributes,
    } as TraceEvent);
  };
  ev('run.started', 'support-agent', { input: 'where is my order?' });
  const order = `A-${1000 + (r % 9000)}`;
  if (r % 50 === 0) ev('tool.call', 'refund_payment', { args: { order_id: order, amount: 250 } });
  else {
    ev('approval.granted', 'refund_payment', { tool: 'refund_payment', args: { order_id: order }, approver: 'maria' });
    ev('tool.call', 'refund_payment', { args: { order_id: order, amount: 250 } });
  }
  if (r % 7 === 0) ev('retry', 'lookup_order', { attempt: 2 });
  while (out.length < RUN - 2) {
    const tool = TOOLS[out.length % TOOLS.length];
    ev('tool.call', tool, { args: { order_id: order, customer_id: `C-${r % 5000}` } });
    ev('tool.result', tool, { result: { ok: true, note: 'customer asked about a late delivery' } });
  }
  ev('handoff', 'escalate', { target_agent: 'billing-agent' });
  ev('run.completed', 'support-agent', {});
  return out.slice(0, RUN);
}

/** 100 rules over the same events: every kind, both scopes, CEL on most, few of them firing. */
function hundredRules(): string {
  const rules: string[] = [];
  for (let i = 0; i < 100; i++) {
    const tool = TOOLS[i % TOOLS.length];
    switch (i % 4) {
      case 0:
        rules.push(`  - id: forbid-${i}\n    severity: low\n    kind: forbidden\n    match: { type: tool.call, name: ${tool}, when: "has(event.attributes.args) && event.attributes.args.customer_id == 'C-${100000 + i}'" }`);
        break;
      case 1:
        rules.push(`  - id: needs-${i}\n    severity: medium\n    kind: preceded_by\n    scope: ${i % 8 === 1 ? 'session' : 'trace'}\n    match: { type: tool.call, name: ${tool} }\n    prior: { type: run.started, within: 1h }`);
        break;
      case 2:
        rules.push(`  - id: not-after-${i}\n    severity: high\n    kind: not_preceded_by\n    match: { type: tool.call, name: ${tool} }\n    prior: { type: action.blocked, when: "prior.attributes.tool == event.name" }`);
        break;
      default:
        rules.push(`  - id: count-${i}\n    severity: low\n    kind: max_count\n    scope: ${i % 8 === 3 ? 'session' : 'trace'}\n    match: { type: tool.result, name: ${tool} }\n    max: ${50 + i}`);
    }
  }
  return `rules:\n${rules.join('\n')}\n`;
}

async function main(): Promise<void> {
  const db = await startBenchDb();
  const dir = mkdtempSync(join(tmpdir(), 'bench-policies-'));
  const sample = readFileSync(join(ROOT, 'policies', 'support-agent.yaml'), 'utf8');
  const generated = hundredRules();
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const env = loadEnv({
    NODE_ENV: 'production', AUTH_JWT_SECRET: BENCH_SECRET, LOG_LEVEL: 'warn', POLICIES_DIR: dir,
    POLICY_EVALUATOR: 'true', POLICY_POLL_MS: '3600000',
  });
  const app = await createApp({
    env,
    databaseUrl: db.appUrl,
    auth: { hsSecret: new TextEncoder().encode(BENCH_SECRET), clockToleranceS: 5 },
    ledgerKey: await loadLedgerKey(await exportJWK(privateKey)),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const owner = new Client({ connectionString: db.ownerUrl });
  await owner.connect();
  try {
    // the ledger: signed batches of 1000 through the API, no set in force yet
    const token = await mintToken({ secret: new TextEncoder().encode(BENCH_SECRET), tenant: TENANT, scope: 'events:write admin audit:read' });
    const key = await producerKey();
    const c = new LedgerClient({ baseUrl: url, token, key });
    await c.request('POST', '/v1/keys', { producer: 'bench', jwk: { ...key.publicJwk, kid: key.kid } });
    const all: TraceEvent[] = [];
    for (let r = 0; all.length < EVENTS; r++) all.push(...runEvents(r));
    all.length = EVENTS;
    process.stderr.write(`ingesting ${EVENTS} events…\n`);
    for (let i = 0; i < all.length; i += 1000) await c.send(all.slice(i, i + 1000));
    const head = Number((await owner.query(`SELECT max(seq) AS n FROM ledger_entries WHERE tenant_id = $1`, [TENANT])).rows[0].n);

    if (process.env.BENCH_EXPLAIN) {
      const plan = await owner.query(
        `EXPLAIN ANALYZE SELECT e.seq, b.body FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
         WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4`,
        [TENANT, 20000, Number.MAX_SAFE_INTEGER, 1000],
      );
      process.stderr.write(plan.rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n') + '\n');
    }
    if (process.env.BENCH_ANALYZE) await owner.query('ANALYZE');
    // raw read: the evaluator's page query, bodies parsed
    const repo = app.get(PolicyRepository);
    const readAll = async () => {
      const events: LedgerEventForPolicy[] = [];
      let after = 0;
      for (;;) {
        const page = await repo.page(TENANT, after, Number.MAX_SAFE_INTEGER, env.POLICY_PAGE_SIZE, null);
        if (!page.length) return events;
        for (const p of page) if (p.event) events.push(p.event);
        after = page[page.length - 1].seq;
      }
    };
    let t0 = performance.now();
    const stored = await readAll();
    const readS = (performance.now() - t0) / 1000;

    const engineOnly = (set: PolicySet) => {
      const engine = new PolicyEngine(set);
      let n = 0;
      const start = performance.now();
      for (const e of stored) n += engine.evaluate(e).length;
      return { seconds: (performance.now() - start) / 1000, violations: n };
    };

    const evaluator = app.get(EvaluatorService);
    const policies = app.get(PolicyService);
    const endToEnd = async (text: string) => {
      await owner.query(`DELETE FROM violations; DELETE FROM policy_cursors`);
      writeFileSync(join(dir, 'set.yaml'), text);
      const start = performance.now();
      await policies.reload();
      for (;;) {
        await evaluator.idle();
        const cur = await owner.query(`SELECT seq FROM policy_cursors WHERE tenant_id = $1`, [TENANT]);
        const size = await owner.query(`SELECT max(seq) AS n FROM ledger_entries WHERE tenant_id = $1`, [TENANT]);
        if (cur.rows[0] && Number(cur.rows[0].seq) === Number(size.rows[0].n)) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      const seconds = (performance.now() - start) / 1000;
      const v = Number((await owner.query(`SELECT count(*) AS n FROM violations`)).rows[0].n);
      return { seconds, violations: v };
    };

    const sampleSet = loadPolicySet([{ file: 'support-agent.yaml', text: sample }]);
    const bigSet = loadPolicySet([{ file: 'generated.yaml', text: generated }]);
    const rate = (s: number) => Math.round(stored.length / s).toLocaleString('en-US');
    const rows: (string | number)[][] = [['what', 'rules', 'events', 'seconds', 'events/s', 'violations', 'vs raw read']];
    rows.push(['raw read (page query + JSON.parse)', '-', stored.length, readS.toFixed(2), rate(readS), '-', '100 %']);
    for (const [name, set, text] of [['sample set', sampleSet, sample], ['100 generated rules', bigSet, generated]] as const) {
      const eng = engineOnly(set);
      rows.push([`engine only, ${name}`, set.rules.length, stored.length, eng.seconds.toFixed(2), rate(eng.seconds), eng.violations, '-']);
      const e2e = await endToEnd(text);
      rows.push([
        `evaluator end to end, ${name}`, set.rules.length, stored.length, e2e.seconds.toFixed(2), rate(e2e.seconds), e2e.violations,
        `${Math.round((readS / e2e.seconds) * 100)} %`,
      ]);
    }
    process.stdout.write(`\npolicy evaluation over ${stored.length} producer events (${head} ledger entries), page size ${env.POLICY_PAGE_SIZE}\n\n${table(rows)}\n`);
  } finally {
    await owner.end();
    await app.close();
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  },
);
