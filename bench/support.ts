import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { exportJWK, generateKeyPair } from 'jose';
import { newSpanId, newTraceId } from '../src/client/ledger-client';
import { signBatch } from '../src/core/batch';
import type { TraceEvent } from '../src/core/event';
import { migrate, withCredentials } from '../src/database/data-source';
import { startEmbeddedPostgres } from '../src/database/embedded';
import type { TestProducer } from '../test/support/factories';
import { freePort } from '../test/support/net';
export { freePort };

/** Shared benchmark plumbing: a throwaway embedded cluster and the real service as a child process. */

export const ROOT = resolve(__dirname, '..', '..');
const APP_PASSWORD = 'bench-app-password';
export const BENCH_SECRET = 'bench-secret-0123456789-abcdefghijklmnop';


export interface BenchDb {
  ownerUrl: string;
  appUrl: string;
  stop(): Promise<void>;
}

export async function startBenchDb(): Promise<BenchDb> {
  const dataDir = join(ROOT, '.bench-data', `run-${process.pid}`);
  const db = await startEmbeddedPostgres({
    dataDir,
    port: await freePort(),
    password: randomBytes(12).toString('hex'),
    persistent: false,
    // BENCH_PG_STATEMENTS=1: pg_stat_statements, for `topStatements` (where PostgreSQL's time goes)
    flags: [
      ...(process.env.BENCH_PG_STATEMENTS ? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'] : []),
      // BENCH_PG_SETTINGS="checkpoint_flush_after=0 max_wal_size=4GB": server settings, for comparisons
      ...(process.env.BENCH_PG_SETTINGS ?? '').split(/\s+/).filter(Boolean).flatMap((kv) => ['-c', kv]),
    ],
  });
  await migrate(db.ownerUrl, APP_PASSWORD);
  if (process.env.BENCH_PG_STATEMENTS) {
    const c = new Client({ connectionString: db.ownerUrl });
    await c.connect();
    await c.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await c.end();
  }
  return {
    ownerUrl: db.ownerUrl,
    appUrl: withCredentials(db.ownerUrl, 'agent_ledger_app', APP_PASSWORD),
    stop: async () => {
      await db.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ServiceProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** BENCH_SERVICE_ENV="QUERY_PROJECTOR=false POLICY_EVALUATOR=false": the service's switches, for comparisons. */
export function benchServiceEnv(): Record<string, string> {
  return Object.fromEntries((process.env.BENCH_SERVICE_ENV ?? '').split(/\s+/).filter(Boolean).map((kv) => kv.split(/=(.*)/s, 2)));
}

/** `node dist/src/main.js` against the bench database, as an operator would run it. */
export async function startService(db: BenchDb, extraEnv: Record<string, string> = {}): Promise<ServiceProcess> {
  const port = await freePort();
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  // the node flags of `npm start` (as an operator runs the service), then BENCH_NODE_ARGS (e.g. a CPU profile)
  const startArgs = /^node((?: --[^ ]+)*) /.exec(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start)?.[1];
  const nodeArgs = [...(startArgs ?? '').split(' ').filter(Boolean), ...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [])];
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, 'dist', 'src', 'main.js')], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: db.appUrl,
      MIGRATIONS_RUN: 'false',
      AUTH_JWT_SECRET: BENCH_SECRET,
      LEDGER_SIGNING_KEY: JSON.stringify(await exportJWK(privateKey)),
      LOG_LEVEL: 'warn',
      ...extraEnv,
      ...benchServiceEnv(),
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/health/ready`)).ok) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    stop: () =>
      new Promise((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export function table(rows: (string | number)[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ')).join('\n');
}

const REALISTIC_TOOLS = ['search_kb', 'lookup_customer', 'lookup_order', 'refund_payment', 'send_email', 'create_ticket'];

/**
 * The ingest and evidence benchmarks' event i of a run: a tool call or result
 * under `root`, with attributes of a realistic size (~0.5 KB). `agent` and
 * `time` are the two things the benchmarks vary.
 */
export function realisticEvent(i: number, trace: string, root: string, agent: string, time: string): TraceEvent {
  return {
    id: randomUUID(),
    trace_id: trace,
    span_id: newSpanId(),
    parent_span_id: root,
    session_id: `conv-${trace.slice(0, 8)}`,
    type: i % 2 ? 'tool.result' : 'tool.call',
    name: REALISTIC_TOOLS[i % REALISTIC_TOOLS.length],
    agent,
    time,
    duration_ms: 5 + (i % 300),
    status: i % 17 ? 'ok' : 'error',
    attributes: {
      args: { order_id: `A-${1000 + (i % 9000)}`, customer_id: `C-${i % 5000}`, amount: (i % 400) + 0.5, currency: 'EUR' },
      model: 'gpt-5-mini',
      usage: { input_tokens: 200 + (i % 900), output_tokens: 40 + (i % 200) },
      note: 'customer asked about a late delivery and a partial refund for the damaged item',
    },
  };
}

/**
 * `n` signed batches of `size` realisticEvent each (batch b holds events b·size…, one trace), as request
 * bodies: the ingest benchmarks sign before their clock starts.
 */
export async function realisticBodies(n: number, key: TestProducer, size: number): Promise<string[]> {
  const out: string[] = [];
  for (let b = 0; b < n; b++) {
    const trace = newTraceId();
    const root = newSpanId();
    const evs = Array.from({ length: size }, (_, k) => {
      const i = b * size + k;
      return realisticEvent(i, trace, root, `agent-${i % 20}`, new Date(Date.UTC(2026, 10, 25, 10, 0, 0, i % 1000)).toISOString());
    });
    out.push(JSON.stringify({ events: evs, signature: await signBatch(evs, key.privateKey, key.kid, key.alg) }));
  }
  return out;
}

/** POST /v1/events of a signed body; throws unless 201. */
export async function postBatch(url: string, token: string, body: string): Promise<void> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body,
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`ingest answered ${res.status}`);
}

/**
 * With BENCH_PG_STATEMENTS=1: the statements that took most of PostgreSQL's
 * time since the last reset (pg_stat_statements), as table rows of µs per
 * `perUnits` (e.g. per ingested event); then resets the counters.
 */
export async function topStatements(db: BenchDb, perUnits: number, limit = 15): Promise<string[][]> {
  if (!process.env.BENCH_PG_STATEMENTS) return [];
  const c = new Client({ connectionString: db.ownerUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ query: string; calls: string; total: number }>(
      `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls, total_exec_time AS total
       FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1`,
      [limit],
    );
    await c.query('SELECT pg_stat_statements_reset()');
    return rows.map((r) => [((r.total * 1000) / perUnits).toFixed(1), r.calls, r.query.slice(0, 110)]);
  } finally {
    await c.end();
  }
}

/**
 * CPU seconds (user + system) so far of this process, the service, the
 * PostgreSQL processes and this process's other descendants, running or
 * ended (a client such as curl) (Linux /proc).
 */
export function cpuSeconds(servicePid: number | undefined): { bench: number; service: number; postgres: number; other: number } {
  const out = { bench: 0, service: 0, postgres: 0, other: 0 };
  const procs = new Map<number, { ppid: number; comm: string; cpu: number; ended: number }>();
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        const comm = stat.slice(stat.indexOf('(') + 1, close);
        const f = stat.slice(close + 2).split(' ');
        procs.set(Number(d), { ppid: Number(f[1]), comm, cpu: (Number(f[11]) + Number(f[12])) / 100, ended: (Number(f[13]) + Number(f[14])) / 100 });
      } catch {
        /* the process ended */
      }
    }
  } catch {
    return out;
  }
  const descends = (pid: number, root: number): boolean => {
    for (let p = pid, i = 0; p > 1 && i < 10; i++, p = procs.get(p)?.ppid ?? 0) if (p === root) return true;
    return false;
  };
  for (const [pid, p] of procs) {
    if (pid === process.pid) {
      out.bench += p.cpu;
      out.other += p.ended; // children that ended and were waited for
    } else if (pid === servicePid) out.service += p.cpu;
    else if (p.comm === 'postgres' && descends(pid, process.pid)) out.postgres += p.cpu;
    else if (descends(pid, process.pid)) out.other += p.cpu;
  }
  return out;
}

/**
 * With BENCH_PG_WAITS=1: samples pg_stat_activity every 5 ms for the
 * runtime role's backends until `stop()`, which returns table rows of the
 * share of samples in each state (on CPU, or the wait event) and statement:
 * where the ingest chain waits. Nothing without the variable.
 */
export function sampleWaits(db: BenchDb): { stop(): Promise<string[][]> } {
  if (!process.env.BENCH_PG_WAITS) return { stop: async () => [] };
  const c = new Client({ connectionString: db.ownerUrl });
  const counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    await c.connect();
    while (running) {
      const { rows } = await c.query<{ what: string }>(
        `SELECT CASE WHEN state = 'active' AND wait_event IS NULL THEN 'on CPU'
                     ELSE coalesce(wait_event_type || ':' || wait_event, state) END
                || ' | ' || CASE WHEN state = 'active' OR state LIKE 'idle in%' THEN left(regexp_replace(query, '\\s+', ' ', 'g'), 60) ELSE '' END AS what
         FROM pg_stat_activity WHERE usename = 'agent_ledger_app' AND pid <> pg_backend_pid()`,
      );
      samples++;
      for (const r of rows) counts.set(r.what, (counts.get(r.what) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 5));
    }
    await c.end();
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return [...counts]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 20)
        .map(([what, n]) => [(n / samples).toFixed(2), what]);
    },
  };
}

