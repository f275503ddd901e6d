import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { Client } from 'pg';
import { mintToken } from '../src/auth/token';
import { newSpanId, newTraceId } from '../src/client/ledger-client';
import { signBatch } from '../src/core/batch';
import type { EvidenceBundle } from '../src/core/bundle';
import { verifyBundleFile } from '../src/core/bundle-file';
import { verifyBundle } from '../src/core/bundle-verifier';
import { producerKey, registerKey } from '../test/support/factories';
import { BENCH_SECRET, cpuSeconds, median, percentile, realisticEvent, startBenchDb, startService, table, type BenchDb } from './support';
import { growSyntheticLedger } from './synthetic-ledger';
import { frontierRefs, inclusionProofRefs, nodeKey, rootFromRefs, verifyConsistency, verifyInclusion } from '../src/core/merkle';

/**
 * npm run bench:evidence — evidence export, offline verification, proofs at scale.
 *
 * A ledger of BENCH_EVIDENCE_ENTRIES (default 100k) realistic events is built
 * through the service's own append path (signed batches of 1000 over HTTP,
 * 4 clients). Then POST /v1/exports streams bundles of 10k and of all
 * entries to disk (entries/s; the service's RSS sampled every 20 ms during
 * each export, against its RSS before: flat memory means the two exports
 * peak alike). Finally the big bundle is verified offline with the pure
 * verifier, in memory (verifyBundle on the parsed bundle) and streamed from
 * the file (verifyBundleFile, and the `agent-ledger verify` process with its
 * peak RSS), against, in the same run, a raw SHA-256 loop over the same
 * bytes: each entry's record and body (the two hashes no verifier can skip),
 * and the whole file. The export's own baseline is a raw keyset read of the
 * same rows (record and body) from PostgreSQL in the same run. Exports start
 * once the background workers have caught up with the ingest burst.
 *
 * Then proofsAtScale: inclusion and consistency proof latency over HTTP at
 * BENCH_PROOF_SIZES (default 1M and 10M entries) on a synthetic tenant grown
 * by a SQL fast path (synthetic-ledger.ts), against the raw node lookups.
 * BENCH_EVIDENCE_PARTS=export or =proofs runs one part.
 */

const ENTRIES = Number(process.env.BENCH_EVIDENCE_ENTRIES ?? 100_000);
/** Which parts run: `export` (export and offline verification), `proofs` (proofs at scale). */
const PARTS = new Set((process.env.BENCH_EVIDENCE_PARTS ?? 'export,proofs').split(','));
const PROOF_SIZES = (process.env.BENCH_PROOF_SIZES ?? '1000000,10000000').split(',').map(Number).filter((n) => n > 0);
const PROOF_REQUESTS = Number(process.env.BENCH_PROOF_REQUESTS ?? 2000);
const SMALL = Math.min(10_000, ENTRIES);
const BATCH = 1000;
const CLIENTS = 4;
const T0 = Date.UTC(2026, 10, 25, 10, 0, 0);
const timeOf = (i: number) => new Date(T0 + i).toISOString();


function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const mib = (kib: number) => (kib / 1024).toFixed(0);

async function main(): Promise<void> {
  const db = await startBenchDb();
  try {
    if (PARTS.has('export')) await exportAndVerify(db);
    if (PARTS.has('proofs')) await proofsAtScale(db);
  } finally {
    await db.stop();
  }
}

/** Exports of a ledger built through the service, and the offline verification of the big one. */
async function exportAndVerify(db: BenchDb): Promise<void> {
  const svc = await startService(db, { LOG_LEVEL: 'fatal' });
  const dir = mkdtempSync(join(tmpdir(), 'bench-evidence-'));
  const rows: (string | number)[][] = [['measure', 'value', 'detail']];
  try {
    const secret = new TextEncoder().encode(BENCH_SECRET);
    const tenant = 'evidence';
    const key = await producerKey();
    await registerKey(svc.url, await mintToken({ secret, tenant, scope: 'admin' }), key);
    const writer = await mintToken({ secret, tenant, scope: 'events:write' });
    const exporter = await mintToken({ secret, tenant, scope: 'export:create', sub: 'bench' });

    // 1. The ledger, through the service's own append path.
    const bodies: string[] = [];
    for (let b = 0; b * BATCH < ENTRIES; b++) {
      const trace = newTraceId();
      const root = newSpanId();
      const n = Math.min(BATCH, ENTRIES - b * BATCH);
      const evs = Array.from({ length: n }, (_, i) => realisticEvent(b * BATCH + i, trace, root, 'bench-agent', timeOf(b * BATCH + i)));
      bodies.push(JSON.stringify({ events: evs, signature: await signBatch(evs, key.privateKey, key.kid, key.alg) }));
    }
    const tIngest = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < bodies.length) {
          const res = await fetch(`${svc.url}/v1/events`, {
            method: 'POST',
            headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json' },
            body: bodies[next++],
          });
          await res.arrayBuffer();
          if (res.status !== 201) throw new Error(`ingest answered ${res.status}`);
        }
      }),
    );
    const ingestS = (performance.now() - tIngest) / 1000;
    rows.push(['ledger built (signed ingest over HTTP)', `${ENTRIES} entries`, `${(ENTRIES / ingestS).toFixed(0)} events/s`]);

    // The service's background workers (query projector, policy evaluator) follow the ledger; an export
    // is measured on a service that has caught up, as an export made after the fact would find it.
    const owner = new Client({ connectionString: db.ownerUrl });
    await owner.connect();
    const tCatchUp = performance.now();
    for (let settled = 0; settled < 2 && performance.now() - tCatchUp < 600_000; ) {
      await new Promise((r) => setTimeout(r, 250));
      const { rows: [c] } = await owner.query<{ head: string; projected: string | null; evaluated: string | null }>(
        `SELECT (SELECT max(seq) FROM ledger_entries WHERE tenant_id = $1) AS head,
                (SELECT seq FROM query_cursors WHERE tenant_id = $1) AS projected,
                (SELECT seq FROM policy_cursors WHERE tenant_id = $1) AS evaluated`,
        [tenant],
      );
      settled = c.projected === c.head && (c.evaluated === null || c.evaluated === c.head) ? settled + 1 : 0;
    }
    rows.push(['background workers caught up (projector, evaluator)', `${((performance.now() - tCatchUp) / 1000).toFixed(1)} s`, 'after the last 201']);
    // The tables the export reads, vacuumed and analyzed now, as autovacuum leaves them some time after a bulk load:
    // else its vacuum of the 100k fresh rows may start in the middle of an export (seen: PostgreSQL's CPU per
    // exported entry 17 µs in one run, 48 in the next).
    const tVacuum = performance.now();
    await owner.query(`VACUUM (ANALYZE) ledger_entries, ledger_bodies, merkle_nodes, ledger_batches`);
    rows.push(['VACUUM (ANALYZE) of the ledger tables', `${((performance.now() - tVacuum) / 1000).toFixed(1)} s`, 'before the exports']);
    await owner.end();

    // 2. Exports, streamed to disk, with the service's RSS sampled meanwhile.
    const exportOnce = async (count: number, file: string) => {
      const pid = svc.child.pid!;
      const before = rssKiB(pid);
      let peak = before;
      const samples: number[] = [];
      const sampler = setInterval(() => {
        samples.push(rssKiB(pid));
        peak = Math.max(peak, samples[samples.length - 1]);
      }, 20);
      const cpu0 = cpuSeconds(pid);
      const t = performance.now();
      // curl writes the stream to disk natively: the client is not what is measured
      const status = await new Promise<string>((resolve, reject) => {
        const curl = spawn('curl', ['-sS', '-o', file, '-w', '%{http_code}', '-X', 'POST', '-H', `authorization: Bearer ${exporter}`,
          '-H', 'content-type: application/json', '--data', JSON.stringify({ from: timeOf(0), to: timeOf(count) }), `${svc.url}/v1/exports`]);
        let out = '';
        curl.stdout.on('data', (d: Buffer) => (out += d.toString()));
        curl.on('error', reject);
        curl.on('exit', () => resolve(out));
      });
      if (status !== '200') throw new Error(`export answered ${status}: ${readFileSync(file, 'utf8').slice(0, 300)}`);
      const seconds = (performance.now() - t) / 1000;
      const cpu1 = cpuSeconds(pid);
      clearInterval(sampler);
      peak = Math.max(peak, rssKiB(pid));
      const cpu = (k: 'service' | 'postgres' | 'other') => (((cpu1[k] - cpu0[k]) * 1e6) / count).toFixed(0);
      // flat memory: the peak is reached early and not passed later (RSS over each quarter of the export)
      const quarters = [0, 1, 2, 3].map((q) => Math.max(before, ...samples.slice(Math.floor((q * samples.length) / 4), Math.floor(((q + 1) * samples.length) / 4))));
      return { seconds, before, peak, quarters, bytes: statSync(file).size, cpu: `${cpu('service')} / ${cpu('postgres')} / ${cpu('other')}` };
    };
    const smallFile = join(dir, 'small.json');
    const bigFile = join(dir, 'big.json');
    await exportOnce(Math.min(1000, ENTRIES), join(dir, 'warm.json'));
    const small = await exportOnce(SMALL, smallFile);
    const big = await exportOnce(ENTRIES, bigFile);
    // The same rows read raw from PostgreSQL in the same run: pages of record and body by the primary key
    // in seq order, no filter, no proofs, no HTTP.
    const pg = new Client({ connectionString: db.appUrl });
    await pg.connect();
    const tRead = performance.now();
    let read = 0;
    for (let after = 0; ; ) {
      const page = await pg.query<{ seq: string; record: string; body: string }>(
        `SELECT e.seq, e.record, b.body FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
         WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $2 + 1000 ORDER BY e.seq`,
        [tenant, after],
      );
      if (!page.rows.length) break;
      read += page.rows.length;
      after += 1000;
    }
    const readS = (performance.now() - tRead) / 1000;
    await pg.end();
    for (const [n, r] of [[SMALL, small], [ENTRIES, big]] as const) {
      rows.push([
        `export ${n} entries (POST /v1/exports, streamed)`,
        `${(n / r.seconds).toFixed(0)} entries/s`,
        `${r.seconds.toFixed(2)} s, ${(r.bytes / 2 ** 20).toFixed(0)} MiB, service RSS ${mib(r.before)} -> peak ${mib(r.peak)} MiB (+${mib(r.peak - r.before)})`,
      ]);
    }

    rows.push([`service RSS peak per quarter of the ${ENTRIES} export`, `${mib(Math.max(...big.quarters))} MiB`, big.quarters.map((k) => `${mib(k)}`).join(' / ') + ' MiB']);
    rows.push([`CPU µs/entry of the ${ENTRIES} export: service / PostgreSQL / curl`, big.cpu, `${(big.seconds * 1e6 / ENTRIES).toFixed(0)} µs/entry of wall time, 2 cores`]);
    rows.push(['raw keyset read of the same rows (record, body)', `${(read / readS).toFixed(0)} entries/s`, `${readS.toFixed(2)} s; export / raw read ${((ENTRIES / big.seconds / (read / readS)) * 100).toFixed(0)} %`]);

    if (big.bytes >= 0x1fffffe8) {
      // Past what one JS string holds: the in-memory verifier (JSON.parse of the file) cannot take it; the
      // streaming CLI can (BENCHMARKS.md: a 1M-entry bundle with `agent-ledger verify`), outside this bench.
      rows.push(['offline verify', '-', `skipped: ${(big.bytes / 2 ** 20).toFixed(0)} MiB is past V8's string limit (the in-memory part's JSON.parse)`]);
      process.stdout.write(`\nbench:evidence, export (${ENTRIES} entries)\n${table(rows)}\n`);
      return;
    }

    // 3. Offline verification of the big bundle, against raw SHA-256 over the same bytes: in memory
    //    (verifyBundle on the parsed bundle), streamed from the file (verifyBundleFile, what the CLI runs:
    //    reading and parsing included), and the CLI itself as a process, with its RSS sampled.
    const jwks = (await (await fetch(`${svc.url}/.well-known/jwks.json`)).json()) as { keys: JWK[] };
    const jwksFile = join(dir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify(jwks));
    const bytes = readFileSync(bigFile);
    if (process.env.BENCH_KEEP_BUNDLE) {
      // for profiling the verifier: the bundle and the ledger's key, kept after the run
      writeFileSync(process.env.BENCH_KEEP_BUNDLE, bytes);
      writeFileSync(`${process.env.BENCH_KEEP_BUNDLE}.jwks.json`, JSON.stringify(jwks));
    }
    const tParse = performance.now();
    const bundle = JSON.parse(bytes.toString('utf8')) as EvidenceBundle;
    const parseS = (performance.now() - tParse) / 1000;
    // Each verification and the raw loop, three times each, interleaved; medians (the machine is noisy).
    const verifyTimes: number[] = [];
    const fileTimes: number[] = [];
    const rawTimes: number[] = [];
    let sink = 0;
    let passes = 0;
    for (let round = 0; round < 3; round++) {
      const tVerify = performance.now();
      const result = await verifyBundle(bundle, jwks.keys[0]);
      verifyTimes.push((performance.now() - tVerify) / 1000);
      if (!result.ok) throw new Error(`the exported bundle does not verify: ${JSON.stringify(result.failures.slice(0, 3))}`);
      const tFileVerify = performance.now();
      const fromFile = await verifyBundleFile(bigFile, jwks.keys[0]);
      fileTimes.push((performance.now() - tFileVerify) / 1000);
      passes = fromFile.passes;
      if (!fromFile.ok || fromFile.summary.entries !== result.summary.entries) throw new Error(`the streamed verification disagrees: ${JSON.stringify(fromFile.failures.slice(0, 3))}`);
      const tRaw = performance.now();
      for (const e of bundle.entries) {
        sink ^= createHash('sha256').update(e.record).digest()[0];
        if (e.body !== null) sink ^= createHash('sha256').update(e.body).digest()[0];
      }
      rawTimes.push((performance.now() - tRaw) / 1000);
    }
    const verifyS = median(verifyTimes);
    const fileS = median(fileTimes);
    const rawS = median(rawTimes);
    // `agent-ledger verify` as a user runs it (process start included), its RSS sampled every 20 ms.
    const cli = await new Promise<{ seconds: number; peakKiB: number; code: number | null; out: string }>((resolve, reject) => {
      const t = performance.now();
      const child = spawn(process.execPath, [join(__dirname, '..', 'src', 'cli', 'agent-ledger.js'), 'verify', bigFile, '--key', jwksFile]);
      let peakKiB = 0;
      let out = '';
      const sample = () => {
        try {
          const kib = rssKiB(child.pid!);
          if (kib > peakKiB) peakKiB = kib; // NaN (no VmRSS yet, or a zombie) is skipped
        } catch {
          // the process has just ended
        }
      };
      const sampler = setInterval(sample, 20);
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) => {
        clearInterval(sampler);
        resolve({ seconds: (performance.now() - t) / 1000, peakKiB, code, out });
      });
    });
    if (cli.code !== 0) throw new Error(`agent-ledger verify exited ${cli.code}: ${cli.out.slice(-500)}`);
    const tFile = performance.now();
    const fileHash = createHash('sha256');
    for (let i = 0; i < bytes.length; i += 1 << 16) fileHash.update(bytes.subarray(i, i + (1 << 16)));
    fileHash.digest();
    const wholeFileS = (performance.now() - tFile) / 1000;
    const n = bundle.entries.length;
    const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
    rows.push(['offline verify in memory (verifyBundle, parsed bundle)', `${(n / verifyS).toFixed(0)} entries/s`, `${verifyS.toFixed(2)} s for ${n} entries (median of ${runs(verifyTimes)})`]);
    rows.push(['  the same incl. JSON.parse of the whole file', `${(n / (verifyS + parseS)).toFixed(0)} entries/s`, `parse ${parseS.toFixed(2)} s (what the CLI did before it streamed)`]);
    rows.push(['offline verify streamed (verifyBundleFile: read, parse, check)', `${(n / fileS).toFixed(0)} entries/s`, `${fileS.toFixed(2)} s (median of ${runs(fileTimes)}), ${passes} pass${passes === 1 ? '' : 'es'} over the file`]);
    rows.push(['agent-ledger verify (CLI process)', `${(n / cli.seconds).toFixed(0)} entries/s`, `${cli.seconds.toFixed(2)} s incl. process start, peak RSS ${mib(cli.peakKiB)} MiB`]);
    rows.push(['raw SHA-256 of each record and body (same bytes)', `${(n / rawS).toFixed(0)} entries/s`, `${rawS.toFixed(3)} s, median of 3 (sink ${sink})`]);
    rows.push(['verify / raw per-entry hashing', `${((rawS / verifyS) * 100).toFixed(0)} % in memory`, `streamed ${((rawS / fileS) * 100).toFixed(0)} %, CLI ${((rawS / cli.seconds) * 100).toFixed(0)} %`]);
    rows.push(['raw SHA-256 of the whole file', `${(n / wholeFileS).toFixed(0)} entries/s`, `${(bytes.length / 2 ** 20 / wholeFileS).toFixed(0)} MiB/s`]);
    process.stdout.write(`\nbench:evidence, export (${ENTRIES} entries, checkpoint size ${bundle.manifest.checkpoint_size})\n${table(rows)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await svc.stop();
  }
}

/**
 * Inclusion and consistency proofs over HTTP at each size of
 * BENCH_PROOF_SIZES (default 1M and 10M entries), on a synthetic tenant grown
 * by the fast path of synthetic-ledger.ts, against the same node lookups as
 * raw SQL in the same run. Every inclusion proof served is checked against
 * the head's root, and a sample of the consistency proofs against the old
 * root computed from the stored nodes.
 */
async function proofsAtScale(db: BenchDb): Promise<void> {
  const sizes = PROOF_SIZES;
  if (!sizes.length) return;
  const tenant = 'synthetic';
  const owner = new Client({ connectionString: db.ownerUrl });
  await owner.connect();
  const app = new Client({ connectionString: db.appUrl });
  await app.connect();
  // The fast path writes ledger_entries by primary key only: its secondary indexes (event id, trace, session,
  // agent, times; none on the proof path) are dropped in this scratch database so that 10M rows take minutes.
  for (const ix of ['ledger_entries_event_id', 'ledger_entries_trace', 'ledger_entries_session', 'ledger_entries_time', 'ledger_entries_received', 'ledger_entries_agent']) {
    await owner.query(`DROP INDEX IF EXISTS ${ix}`);
  }
  // The query projector skips what its cursor says it has; the policy evaluator is off for this service.
  await owner.query(`INSERT INTO query_cursors (tenant_id, seq) VALUES ($1, $2)`, [tenant, sizes[sizes.length - 1]]);
  const svc = await startService(db, { LOG_LEVEL: 'fatal', POLICY_EVALUATOR: 'false' });
  const rows: (string | number)[][] = [['measure', 'p50 ms', 'p99 ms', 'detail']];
  try {
    const token = await mintToken({ secret: new TextEncoder().encode(BENCH_SECRET), tenant, scope: 'audit:read' });
    const get = async <T>(path: string): Promise<{ ms: number; body: T }> => {
      const t = performance.now();
      const res = await fetch(`${svc.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as T;
      const ms = performance.now() - t;
      if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(body)}`);
      return { ms, body };
    };
    const rand = (n: number) => 1 + Math.floor(Math.random() * n);
    let size = 0;
    for (const target of sizes) {
      const tBuild = performance.now();
      await growSyntheticLedger(owner, tenant, size, target);
      size = target;
      await owner.query('ANALYZE ledger_entries, merkle_nodes');
      const buildS = (performance.now() - tBuild) / 1000;
      const head = (await get<{ tree_size: number; root_hash: string }>('/v1/ledger/head')).body;
      if (head.tree_size !== size) throw new Error(`the head says ${head.tree_size} entries, the fast path wrote ${size}`);
      const root = Buffer.from(head.root_hash, 'hex');
      const label = size >= 1e6 ? `${+(size / 1e6).toFixed(1)}M` : `${+(size / 1e3).toFixed(1)}k`;

      // Inclusion proofs of random entries in the tree of this size.
      for (let i = 0; i < 200; i++) await get(`/v1/ledger/proofs/inclusion?seq=${rand(size)}&tree_size=${size}`);
      const incl: number[] = [];
      let checked = 0;
      for (let i = 0; i < PROOF_REQUESTS; i++) {
        const seq = rand(size);
        const { ms, body } = await get<{ leaf_index: number; leaf_hash: string; path: string[] }>(`/v1/ledger/proofs/inclusion?seq=${seq}&tree_size=${size}`);
        incl.push(ms);
        const path = body.path.map((h) => Buffer.from(h, 'hex'));
        if (!verifyInclusion(Buffer.from(body.leaf_hash, 'hex'), seq - 1, size, path, root)) throw new Error(`the inclusion proof of ${seq} does not verify`);
        checked++;
      }
      // The same node lookups as raw SQL (the leaf and its proof nodes, by primary key), no HTTP, no assembly.
      const raw: number[] = [];
      for (let i = 0; i < PROOF_REQUESTS; i++) {
        const index = rand(size) - 1;
        const refs = [{ level: 0, index }, ...inclusionProofRefs(index, size)];
        const leaves = refs.filter((r) => r.level === 0).map((r) => r.index + 1);
        const inner = refs.filter((r) => r.level > 0);
        const t = performance.now();
        await app.query(`SELECT seq, leaf_hash FROM ledger_entries WHERE tenant_id = $1 AND seq = ANY($2::bigint[])`, [tenant, leaves]);
        await app.query(
          `SELECT want.level, want.idx, n.hash FROM unnest($2::smallint[], $3::bigint[]) AS want(level, idx)
           CROSS JOIN LATERAL (SELECT m.hash FROM merkle_nodes m WHERE m.tenant_id = $1 AND m.level = want.level AND m.idx = want.idx LIMIT 1) n`,
          [tenant, inner.map((r) => r.level), inner.map((r) => r.index)],
        );
        raw.push(performance.now() - t);
      }
      // Consistency proofs from a random older size to this one; a sample checked against the old root from the stored nodes.
      const cons: number[] = [];
      for (let i = 0; i < PROOF_REQUESTS / 4; i++) {
        const from = rand(size - 1);
        const { ms, body } = await get<{ path: string[] }>(`/v1/ledger/proofs/consistency?from_size=${from}&to_size=${size}`);
        cons.push(ms);
        if (i % 25 === 0) {
          const refs = frontierRefs(from);
          const nodes = new Map<string, Buffer>();
          for (const r of refs) {
            const q = r.level === 0
              ? await app.query<{ h: Buffer }>(`SELECT leaf_hash AS h FROM ledger_entries WHERE tenant_id = $1 AND seq = $2`, [tenant, r.index + 1])
              : await app.query<{ h: Buffer }>(`SELECT hash AS h FROM merkle_nodes WHERE tenant_id = $1 AND level = $2 AND idx = $3`, [tenant, r.level, r.index]);
            nodes.set(nodeKey(r), q.rows[0].h);
          }
          const oldRoot = rootFromRefs(from, (r) => nodes.get(nodeKey(r))!);
          if (!verifyConsistency(from, size, body.path.map((h) => Buffer.from(h, 'hex')), oldRoot, root)) {
            throw new Error(`the consistency proof ${from} -> ${size} does not verify`);
          }
        }
      }
      const p = (xs: number[], q: number) => percentile([...xs].sort((a, b) => a - b), q).toFixed(2);
      rows.push([`fast path to ${label} entries`, '-', '-', `${buildS.toFixed(0)} s (leaves and every complete node, SHA-256 in SQL)`]);
      rows.push([`inclusion proof at ${label} (HTTP)`, p(incl, 50), p(incl, 99), `${incl.length} requests, every proof checked (${checked}) against the head's root`]);
      rows.push([`  raw SQL of its node lookups at ${label}`, p(raw, 50), p(raw, 99), 'the same two primary-key statements, no HTTP']);
      rows.push([`consistency proof to ${label} (HTTP)`, p(cons, 50), p(cons, 99), `${cons.length} requests from random older sizes, 1 in 25 checked`]);
    }
    process.stdout.write(`\nbench:evidence, proofs (tenant grown by the fast path; sequential requests)\n${table(rows)}\n`);
  } finally {
    await svc.stop();
    await app.end();
    await owner.end();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
