import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { mintToken } from '../src/auth/token';
import { dataSourceOptions } from '../src/database/data-source';
import { ProjectorRepository } from '../src/query/projector.repository';
import { PROJECTION_PAGE } from '../src/query/projector.service';
import { producerKey, registerKey } from '../test/support/factories';
import { BENCH_SECRET, cpuSeconds, median, postBatch, realisticBodies, startBenchDb, startService, table, topStatements } from './support';

/**
 * npm run bench:projection — what the query projection costs PostgreSQL per
 * event, measured alone on a quiet machine: the query projector is the
 * largest consumer of CPU during bench:ingest's bursts (BENCHMARKS.md), and
 * that bench is too noisy to tell a few µs apart. The ledger is written once
 * through the service (BENCH_EVENTS realistic events, the ones bench:ingest
 * sends, with both followers off); then the service's own projector code
 * (ProjectorRepository.projectPage, pages of PROJECTION_PAGE) projects it
 * again and again into emptied read models: with every index, and with each
 * secondary index of query_events dropped in turn (recreated after), the
 * variants alternated over BENCH_REPEATS passes.
 */

const EVENTS = Number(process.env.BENCH_EVENTS ?? 40_000);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const BATCH = 500;
const TENANT = 'projection';

const READ_MODELS = ['query_events', 'trace_summaries', 'tool_calls', 'tool_call_days', 'tool_call_repeats', 'query_cursors'];

async function writeLedger(url: string): Promise<void> {
  const key = await producerKey();
  const secret = new TextEncoder().encode(BENCH_SECRET);
  await registerKey(url, await mintToken({ secret, tenant: TENANT, scope: 'admin' }), key);
  const writer = await mintToken({ secret, tenant: TENANT, scope: 'events:write' });
  for (const body of await realisticBodies(EVENTS / BATCH, key, BATCH)) await postBatch(url, writer, body);
}

interface PassCost {
  /** µs of wall time per entry, round trips included. */
  wall: number;
  /** µs of CPU time per entry of every PostgreSQL process (its backends and background workers). */
  cpu: number;
}

/** Empties the read models, then projects the whole ledger. */
async function projectAll(owner: Client, repo: ProjectorRepository, beforeStart?: () => Promise<unknown>): Promise<PassCost> {
  await owner.query(`TRUNCATE ${READ_MODELS.join(', ')}`);
  await owner.query('CHECKPOINT');
  await beforeStart?.();
  const cpu0 = cpuSeconds(undefined).postgres;
  const t0 = process.hrtime.bigint();
  let total = 0;
  for (;;) {
    const { projected } = await repo.projectPage(TENANT, PROJECTION_PAGE);
    total += projected;
    if (projected < PROJECTION_PAGE) break;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e3 / total;
  const cpu = ((cpuSeconds(undefined).postgres - cpu0) * 1e6) / total;
  if (total !== EVENTS + 1) throw new Error(`projected ${total} entries, expected ${EVENTS + 1} (the events and the key's registration)`);
  return { wall, cpu };
}

async function main(): Promise<void> {
  if (!Number.isInteger(EVENTS / BATCH) || EVENTS <= 0) throw new Error(`BENCH_EVENTS must be a positive multiple of ${BATCH}`);
  if (!Number.isInteger(REPEATS) || REPEATS <= 0) throw new Error('BENCH_REPEATS must be a positive whole number');
  const db = await startBenchDb();
  const owner = new Client({ connectionString: db.ownerUrl });
  let ds: DataSource | undefined;
  try {
    const svc = await startService(db, { QUERY_PROJECTOR: 'false', POLICY_EVALUATOR: 'false' });
    try {
      await writeLedger(svc.url);
    } finally {
      await svc.stop();
    }
    await owner.connect();
    ds = new DataSource(dataSourceOptions(db.appUrl, 2));
    await ds.initialize();
    const repo = new ProjectorRepository(ds);
    await owner.query('VACUUM ANALYZE ledger_entries, ledger_bodies');

    const indexes: { name: string; def: string }[] = (
      await owner.query(
        `SELECT indexname AS name, indexdef AS def FROM pg_indexes
         WHERE tablename = 'query_events' AND indexname <> 'query_events_pkey' ORDER BY indexname`,
      )
    ).rows;
    const variants: { label: string; drop?: { name: string; def: string } }[] = [
      { label: 'every index' },
      ...indexes.map((i) => ({ label: `without ${i.name}`, drop: i })),
    ];
    const times = new Map<string, PassCost[]>(variants.map((v) => [v.label, []]));
    // one unmeasured pass: the code's and the tables' first run
    await projectAll(owner, repo);
    let statements: string[][] = [];
    for (let r = 0; r < REPEATS; r++) {
      for (const v of variants) {
        if (v.drop) await owner.query(`DROP INDEX ${v.drop.name}`);
        try {
          // with BENCH_PG_STATEMENTS=1: the statements of the last pass with every index (topStatements resets)
          const last = r === REPEATS - 1 && !v.drop;
          times.get(v.label)!.push(await projectAll(owner, repo, last ? () => topStatements(db, 1) : undefined));
          if (last) statements = await topStatements(db, EVENTS + 1);
        } finally {
          if (v.drop) await owner.query(v.drop.def);
        }
      }
    }
    // PostgreSQL's CPU time leaves out what the host takes from this VM (steal), which the wall time does not
    const cpuOf = (label: string) => times.get(label)!.map((p) => p.cpu);
    const all = median(cpuOf('every index'));
    const rows: (string | number)[][] = [
      ['projection of one entry', 'PostgreSQL CPU µs (median)', 'saved', 'wall µs (median)', 'PostgreSQL CPU µs, all passes'],
    ];
    for (const v of variants) {
      const cpu = cpuOf(v.label);
      rows.push([
        v.label,
        median(cpu).toFixed(1),
        v.drop ? (all - median(cpu)).toFixed(1) : '',
        median(times.get(v.label)!.map((p) => p.wall)).toFixed(1),
        cpu.map((x) => x.toFixed(1)).join(' '),
      ]);
    }
    process.stdout.write(`\nbench:projection (${EVENTS} events, pages of ${PROJECTION_PAGE}, ${REPEATS} passes of each variant)\n${table(rows)}\n`);
    if (statements.length) {
      console.log(`\nPostgreSQL statements of the last pass with every index (µs per entry, calls, statement):`);
      console.log(table(statements));
    }
  } finally {
    await ds?.destroy();
    await owner.end().catch(() => undefined);
    await db.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
