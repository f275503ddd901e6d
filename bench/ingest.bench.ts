import { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { mintToken } from '../src/auth/token';
import { producerKey, registerKey, type TestProducer } from '../test/support/factories';
import { BENCH_SECRET, benchServiceEnv, cpuSeconds, type BenchDb, median, percentile, postBatch, realisticBodies, sampleWaits, startBenchDb, startService, table, topStatements } from './support';

/**
 * npm run bench:ingest — signed batches of 500 over HTTP from 4 concurrent
 * clients into the embedded PostgreSQL, against a raw COPY of the same rows
 * into identically indexed scratch tables in the same run; single-event
 * latency at 50 requests/s before the rounds and after them. Batches are
 * signed before the clock starts, so the client's signing does not compete
 * with the server for the 2 cores.
 */

const BATCH = 500;
const CLIENTS = 4;
const BATCHES_PER_CLIENT = Number(process.env.BENCH_BATCHES_PER_CLIENT ?? 15);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LATENCY_RPS = 50;
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 10);

/**
 * Raw COPY of the same rows: chunk i of every table in one transaction (the
 * twin of one group commit), `per` rows a chunk, over `conns` connections.
 */
async function rawCopy(ownerUrl: string, tables: { name: string; lines: string[] }[], per: number, conns: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: conns }, async () => {
      const c = new Client({ connectionString: ownerUrl });
      await c.connect();
      return c;
    }),
  );
  const chunks = Math.ceil(tables[0].lines.length / per);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    clients.map(async (c) => {
      while (next < chunks) {
        const i = next++;
        await c.query('BEGIN');
        for (const t of tables) {
          const chunk = t.lines.slice(i * per, (i + 1) * per);
          await pipeline(Readable.from([chunk.join('')]), c.query(copyFrom(`COPY ${t.name} FROM STDIN`)));
        }
        await c.query('COMMIT');
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(clients.map((c) => c.end()));
  return seconds;
}

/**
 * Waits until the service and PostgreSQL use less than a tenth of a core
 * over a second (the background workers have caught up with the ledger), at
 * most `maxS` seconds; returns the seconds waited.
 */
async function settle(servicePid: number | undefined, maxS = 120): Promise<number> {
  const t0 = performance.now();
  const busy = () => {
    const c = cpuSeconds(servicePid);
    return c.service + c.postgres;
  };
  let before = busy();
  while (performance.now() - t0 < maxS * 1000) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = busy();
    if (now - before < 0.1) break;
    before = now;
  }
  return (performance.now() - t0) / 1000;
}

/** Seconds until the query projector's and the policy evaluator's cursors reach the tenant's head (polled every 20 ms). */
async function followersCaughtUp(db: BenchDb, tenant: string): Promise<number> {
  const t0 = performance.now();
  const env = benchServiceEnv();
  const c = new Client({ connectionString: db.ownerUrl });
  await c.connect();
  try {
    for (;;) {
      const { rows } = await c.query<{ behind: boolean }>(
        `SELECT COALESCE((SELECT max(seq) FROM ledger_entries WHERE tenant_id = $1), 0) >
                LEAST(CASE WHEN $2 THEN COALESCE((SELECT seq FROM query_cursors WHERE tenant_id = $1), 0) END,
                      CASE WHEN $3 THEN COALESCE((SELECT seq FROM policy_cursors WHERE tenant_id = $1), 0) END) AS behind`,
        [tenant, env.QUERY_PROJECTOR !== 'false', env.POLICY_EVALUATOR !== 'false'],
      );
      if (!rows[0].behind || performance.now() - t0 > 300_000) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    return (performance.now() - t0) / 1000;
  } finally {
    await c.end();
  }
}

interface LatencyRun {
  /** Sorted, ms. */
  latencies: number[];
  /** The 50 sent one after another before them (outside the percentiles), sorted, ms. */
  warmup: number[];
  /** Shares of the 100 ms samples with an autovacuum worker running, and with a checkpoint writing. */
  vacuuming: number;
  checkpointing: number;
  samples: number;
}

/**
 * Single-event batches at LATENCY_RPS for LATENCY_SECONDS, each its own run, into a tenant of their own:
 * latency as a producer sees it. Before them, 50 sent one after another (the tenant's first commits and the
 * code's first runs) are timed apart, outside the percentiles. Every 100 ms it samples what else PostgreSQL
 * did meanwhile (the tail's usual suspects): an autovacuum worker running, a checkpoint writing (its spread
 * writes can hold up the WAL flush of a commit: see BENCHMARKS.md).
 */
async function latencyRun(db: BenchDb, url: string, key: TestProducer, secret: Uint8Array, tenant: string): Promise<LatencyRun> {
  await registerKey(url, await mintToken({ secret, tenant, scope: 'admin' }), key);
  const writer = await mintToken({ secret, tenant, scope: 'events:write' });
  const warm = await realisticBodies(50, key, 1);
  const warmup: number[] = [];
  for (const body of warm) {
    const t = performance.now();
    await postBatch(url, writer, body);
    warmup.push(performance.now() - t);
  }
  warmup.sort((a, b) => a - b);
  const singles = await realisticBodies(LATENCY_RPS * LATENCY_SECONDS, key, 1);
  const watcher = new Client({ connectionString: db.ownerUrl });
  await watcher.connect();
  let samples = 0;
  let vacuuming = 0;
  let checkpointing = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const { rows } = await watcher.query<{ vacuum: boolean; checkpoint: boolean }>(
        `SELECT bool_or(backend_type = 'autovacuum worker') AS vacuum,
                bool_or(backend_type = 'checkpointer' AND wait_event IS DISTINCT FROM 'CheckpointerMain') AS checkpoint
         FROM pg_stat_activity`,
      );
      samples++;
      if (rows[0].vacuum) vacuuming++;
      if (rows[0].checkpoint) checkpointing++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const latencies: number[] = [];
  const start = performance.now();
  await Promise.all(
    singles.map(async (body, i) => {
      const due = start + (i * 1000) / LATENCY_RPS;
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
      const t = performance.now();
      await postBatch(url, writer, body);
      latencies.push(performance.now() - t);
    }),
  );
  sampling = false;
  await sampler;
  await watcher.end();
  latencies.sort((a, b) => a - b);
  return { latencies, warmup, vacuuming: vacuuming / Math.max(1, samples), checkpointing: checkpointing / Math.max(1, samples), samples };
}

async function main(): Promise<void> {
  const db = await startBenchDb();
  const svc = await startService(db);
  const results: (string | number)[][] = [];
  try {
    const key = await producerKey();
    const secret = new TextEncoder().encode(BENCH_SECRET);
    const tenants = Array.from({ length: ROUNDS }, (_, r) => `bench${r}`);
    const ratios: number[] = [];
    const ingestRates: number[] = [];
    const copyRates: number[] = [];
    const copy1Rates: number[] = [];
    const ratios1: number[] = [];
    const cpuRows: string[] = [];
    const cpuAllRows: string[] = [];
    const walRows: string[] = [];
    const walBytes = async () => {
      const c = new Client({ connectionString: db.ownerUrl });
      await c.connect();
      try {
        return Number((await c.query<{ b: string }>(`SELECT wal_bytes AS b FROM pg_stat_wal`)).rows[0].b);
      } finally {
        await c.end();
      }
    };
    const settled: number[] = [];
    const sustainedRates: number[] = [];
    // single events on the fresh service first, then again after the rounds' bursts
    const fresh = await latencyRun(db, svc.url, key, secret, 'latency-fresh');
    for (const tenant of tenants) {
      const admin = await mintToken({ secret, tenant, scope: 'admin' });
      const writer = await mintToken({ secret, tenant, scope: 'events:write' });
      await registerKey(svc.url, admin, key);
      const warm = await realisticBodies(2, key, BATCH);
      for (const b of warm) await postBatch(svc.url, writer, b);
      const bodies = await realisticBodies(CLIENTS * BATCHES_PER_CLIENT, key, BATCH);
      const events = bodies.length * BATCH;
      await topStatements(db, 1); // resets the counters (BENCH_PG_STATEMENTS=1 only)
      const wal0 = await walBytes();
      const cpu0 = cpuSeconds(svc.child.pid);
      const waits = sampleWaits(db);
      const t0 = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          while (next < bodies.length) await postBatch(svc.url, writer, bodies[next++]);
        }),
      );
      const ingestS = (performance.now() - t0) / 1000;
      const waited = await waits.stop();
      if (waited.length) {
        console.log(`\nThe service's PostgreSQL backends during the ingest of round ${tenant} (backends per sample, state | statement):`);
        console.log(table(waited));
      }
      const cpu1 = cpuSeconds(svc.child.pid);
      const perEvent = (k: keyof typeof cpu0) => (((cpu1[k] - cpu0[k]) * 1e6) / events).toFixed(0);
      cpuRows.push(`${perEvent('service')} / ${perEvent('postgres')} / ${perEvent('bench')}`);

      // the whole burst: the round's events over the ingest and the time until the projector's and the
      // evaluator's cursors reached the head (work moved out of the ingest window is counted here)
      sustainedRates.push(events / (ingestS + (await followersCaughtUp(db, tenant))));
      // The storage limit, measured on a quiet machine: the same rows, raw COPY, identically indexed tables, no triggers.
      settled.push(await settle(svc.child.pid));
      walRows.push((((await walBytes()) - wal0) / events / 1024).toFixed(2));
      // the whole cost of the round, the workers' catch-up included: steadier than a rate on this noisy machine
      const cpu2 = cpuSeconds(svc.child.pid);
      const allPerEvent = (k: keyof typeof cpu0) => (((cpu2[k] - cpu0[k]) * 1e6) / events).toFixed(0);
      cpuAllRows.push(`${allPerEvent('service')} / ${allPerEvent('postgres')}`);
      const statements = await topStatements(db, events);
      if (statements.length) {
        console.log(`\nPostgreSQL statements of round ${tenant}, ingest and the workers' catch-up (µs per event, calls, statement):`);
        console.log(table(statements));
      }
      const owner = new Client({ connectionString: db.ownerUrl });
      await owner.connect();
      await owner.query(`DROP TABLE IF EXISTS raw_entries, raw_bodies`);
      await owner.query(`CREATE TABLE raw_entries (LIKE ledger_entries INCLUDING ALL)`);
      await owner.query(`CREATE TABLE raw_bodies (LIKE ledger_bodies INCLUDING ALL)`);
      // COPY text lines built by the server itself (COPY ... TO STDOUT) are exact: reuse them.
      const dump = async (tbl: string) => {
        const lines: string[] = [];
        const stream = owner.query(copyTo(`COPY (SELECT * FROM ${tbl} WHERE tenant_id = ${owner.escapeLiteral(tenant)} ORDER BY seq) TO STDOUT`));
        let buf = '';
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          buf += chunk.toString('utf8');
          const parts = buf.split('\n');
          buf = parts.pop()!;
          for (const p of parts) lines.push(p + '\n');
        }
        return lines;
      };
      const eLines = await dump('ledger_entries');
      const bLines = await dump('ledger_bodies');
      const tables = [
        { name: 'raw_entries', lines: eLines },
        { name: 'raw_bodies', lines: bLines },
      ];
      // once as 4 unordered writers (as many as the clients), once as one ordered writer (as the chain allows)
      const copyRate = eLines.length / (await rawCopy(db.ownerUrl, tables, BATCH, CLIENTS));
      await owner.query(`TRUNCATE raw_entries, raw_bodies`);
      const copy1Rate = eLines.length / (await rawCopy(db.ownerUrl, tables, BATCH, 1));
      await owner.end();
      const ingestRate = events / ingestS;
      ingestRates.push(ingestRate);
      copyRates.push(copyRate);
      copy1Rates.push(copy1Rate);
      ratios.push(ingestRate / copyRate);
      ratios1.push(ingestRate / copy1Rate);
    }

    // steady state: 50 requests/s, not the tail of the last round's backlog in the background workers
    settled.push(await settle(svc.child.pid));
    const after = await latencyRun(db, svc.url, key, secret, 'latency');

    results.push(['measure', 'median', 'all rounds']);
    results.push([
      'signed ingest, events/s (500/batch, 4 clients)',
      median(ingestRates).toFixed(0),
      ingestRates.map((x) => x.toFixed(0)).join(' '),
    ]);
    results.push([
      "ingest and the followers' catch-up, events/s",
      median(sustainedRates).toFixed(0),
      sustainedRates.map((x) => x.toFixed(0)).join(' '),
    ]);
    const pct = (xs: number[]) => [`${(median(xs) * 100).toFixed(0)} %`, xs.map((x) => `${(x * 100).toFixed(0)}%`).join(' ')];
    results.push(['CPU µs/event during ingest: service / PostgreSQL / bench client', '', cpuRows.join(' · ')]);
    results.push(['CPU µs/event, ingest and the workers\' catch-up: service / PostgreSQL', '', cpuAllRows.join(' · ')]);
    results.push(['WAL written per event, ingest and the workers\' catch-up, KiB', '', walRows.join(' · ')]);
    results.push(['raw COPY, 4 connections, rows/s', median(copyRates).toFixed(0), copyRates.map((x) => x.toFixed(0)).join(' ')]);
    results.push(['raw COPY, 1 connection, rows/s', median(copy1Rates).toFixed(0), copy1Rates.map((x) => x.toFixed(0)).join(' ')]);
    results.push(['ingest / raw COPY (4 connections)', ...pct(ratios)]);
    results.push(['ingest / raw COPY (1 connection)', ...pct(ratios1)]);
    results.push(["ingest and the followers' catch-up / raw COPY (4 connections)", ...pct(sustainedRates.map((r, i) => r / copyRates[i]))]);
    results.push(['background catch-up before each COPY baseline / the latency run, s', '', settled.map((x) => x.toFixed(1)).join(' ')]);
    for (const [when, run] of [
      ['fresh service', fresh],
      ['after the rounds', after],
    ] as const) {
      const l = run.latencies;
      results.push([`single-event p50 ms (${LATENCY_RPS} req/s), ${when}`, percentile(l, 50).toFixed(2), `${l.length} requests`]);
      results.push([`single-event p99 ms (${LATENCY_RPS} req/s), ${when}`, percentile(l, 99).toFixed(2), `max ${l[l.length - 1].toFixed(2)}`]);
      results.push([
        `  meanwhile: autovacuum running / a checkpoint writing`,
        '',
        `${(run.vacuuming * 100).toFixed(0)} % / ${(run.checkpointing * 100).toFixed(0)} % of ${run.samples} samples`,
      ]);
      results.push([
        `  before it, the tenant's first 50 (one after another, not in the percentiles): p50 / max ms`,
        '',
        `${percentile(run.warmup, 50).toFixed(2)} / ${run.warmup[run.warmup.length - 1].toFixed(2)}`,
      ]);
    }
    process.stdout.write(`\nbench:ingest (${ROUNDS} rounds of ${CLIENTS * BATCHES_PER_CLIENT * BATCH} events)\n${table(results)}\n`);
  } finally {
    await svc.stop();
    await db.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
