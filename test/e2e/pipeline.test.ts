import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from 'pg';
import { newTraceId } from '../../src/client/ledger-client';
import { rootFromLeaves } from '../../src/core/merkle';
import { batchId } from '../../src/core/record';
import { prepareEvents } from '../../src/ingest/ingest.service';
import type { GroupBuilder } from '../../src/ledger/group-builder';
import { LedgerRepository } from '../../src/ledger/ledger.repository';
import type { AppendBatch, Receipt } from '../../src/ledger/ledger.types';
import { Progress } from '../../src/ledger/sequencer';
import { startTestApp, type TestApp } from '../support/app';
import { events, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { completeMerkleNodes, readStoredLedger } from '../support/stored';

/**
 * The pipelined commit (LedgerRepository.commitPipelined), driven directly
 * on a real database: group B writes its rows on a second connection while
 * group A, before it, has not committed; B commits only after A, on the
 * state A left; when A fails, B commits the ordinary way on the real head;
 * when another process takes the tenant lock while B's rows claim its next
 * seqs, B backs off instead of waiting (no deadlock) and commits after it.
 * A is held open by an in-transaction hook the test releases.
 */

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** Polls the superuser view of the cluster until `sql` returns a row (no timing assertion: it waits as long as needed). */
async function until(c: Client, sql: string, params: unknown[]): Promise<void> {
  while ((await c.query(sql, params)).rowCount === 0) await new Promise((r) => setTimeout(r, 20));
}

/**
 * A backend of the app role whose transaction is open and whose last statement wrote B's rows: the COPY of
 * its Merkle nodes (a large group), or the one call (ledger_write_rows) that writes a small group's entries, bodies and nodes.
 */
const B_WROTE_ITS_ROWS = `SELECT 1 FROM pg_stat_activity
  WHERE datname = current_database() AND usename = 'agent_ledger_app' AND state = 'idle in transaction'
    AND (query LIKE 'COPY merkle_nodes%' OR query LIKE 'SELECT ledger_write_rows(%')`;

describe('pipelined group commit', () => {
  let t: TestApp;
  let repo: LedgerRepository;
  let su: Client;

  before(async () => {
    t = await startTestApp();
    repo = t.app.get(LedgerRepository);
    su = new Client({ connectionString: t.db.ownerUrl });
    await su.connect();
  });
  after(async () => {
    await su?.end();
    await t?.close();
  });

  async function setup(tenant: string): Promise<TestProducer> {
    const key = await producerKey();
    await registerKey(t.url, await t.token(tenant, 'admin'), key);
    return key;
  }

  async function batch(tenant: string, key: TestProducer, n: number, hold?: Promise<void>, fail = false): Promise<AppendBatch> {
    const evs = events(n, { trace_id: newTraceId() });
    const jws = (await signedBatch(evs, key)).signature;
    return {
      tenant,
      kid: key.kid,
      jws,
      batch: batchId(jws),
      events: prepareEvents(evs),
      checkRevokedKid: key.kid,
      inTransaction: hold
        ? async () => {
            await hold;
            if (fail) throw new Error('injected failure of group A');
          }
        : undefined,
    };
  }

  /** Seqs 1..N, receipts as stored, Merkle nodes complete, the service's verify ok. */
  async function checkLedger(tenant: string, receipts: Receipt[][]): Promise<string[]> {
    const { rows, nodes } = await readStoredLedger(t.db, tenant);
    assert.deepEqual(
      rows.map((r) => r.seq),
      rows.map((_, i) => i + 1),
    );
    for (const r of receipts.flat()) {
      const row = rows[r.seq - 1];
      assert.deepEqual([row.event_id, row.leaf, row.chain], [r.id.toLowerCase(), r.leaf_hash, r.chain_hash]);
    }
    const leaves = rows.map((r) => Buffer.from(r.leaf, 'hex'));
    assert.deepEqual(nodes, completeMerkleNodes(leaves));
    const reader = await t.token(tenant, 'audit:read');
    const get = async (path: string) => (await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${reader}` } })).json();
    assert.deepEqual(await get('/v1/ledger/verify'), { ok: true, verified: rows.length, from_seq: 1, to_seq: rows.length });
    assert.equal(((await get('/v1/ledger/head')) as { root_hash: string }).root_hash, rootFromLeaves(leaves).toString('hex'));
    return rows.map((r) => r.tx);
  }

  function builders(tenant: string, a: AppendBatch, b: AppendBatch): [GroupBuilder, GroupBuilder] {
    const ga = repo.builder(tenant)!;
    ga.add(a);
    const gb = repo.builder(tenant, ga)!;
    gb.add(b);
    return [ga, gb];
  }

  /** Group A, held open by its hook until `hold.open()`, and group B pipelined behind it, once B has written its rows. */
  async function pipelinedPair(tenant: string, na: number, nb: number, failA = false) {
    const key = await setup(tenant);
    const hold = gate();
    const a = await batch(tenant, key, na, hold.wait, failA);
    const b = await batch(tenant, key, nb);
    const [ga, gb] = builders(tenant, a, b);
    const pa = new Progress();
    const pb = new Progress();
    const ca = repo.commit(tenant, [a], ga, pa);
    const cb = repo.commit(tenant, [b], gb, pb, pa);
    await until(su, B_WROTE_ITS_ROWS, []);
    return { a, hold, pa, pb, ca, cb };
  }

  // small groups are written by one statement (ledger_write_rows), large ones (over 32 entries) by COPY: both ways
  for (const [na, nb] of [
    [7, 5],
    [40, 40],
  ]) {
    test(`B writes its rows while A is open, commits after A, chained onto it (${na} and ${nb} events)`, async () => {
      const tenant = `pipe-ok-${na}-${nb}`;
      const { hold, pa, pb, ca, cb } = await pipelinedPair(tenant, na, nb);
      // neither group is visible yet: only the key registration is committed
      assert.equal((await su.query(`SELECT count(*)::int AS n FROM ledger_entries WHERE tenant_id = $1`, [tenant])).rows[0].n, 1);
      hold.open();
      const [ra, rb] = await Promise.all([ca, cb]);
      assert.ok(await pa.asBuilt);
      assert.ok(await pb.asBuilt, 'B was not committed as built');

      const receiptsA = ra.outcomes.flatMap((o) => (o.ok ? o.receipts : []));
      const receiptsB = rb.outcomes.flatMap((o) => (o.ok ? o.receipts : []));
      assert.deepEqual(receiptsA.map((r) => r.seq), Array.from({ length: na }, (_, i) => 2 + i));
      assert.deepEqual(receiptsB.map((r) => r.seq), Array.from({ length: nb }, (_, i) => 2 + na + i));
      const tx = await checkLedger(tenant, [receiptsA, receiptsB]);
      assert.notEqual(tx[1], tx[1 + na], 'A and B were one transaction');
    });
  }

  test('A fails after B wrote its rows: B rolls back and commits on the real head, no gap', async () => {
    const tenant = 'pipe-fail';
    const pair = await pipelinedPair(tenant, 6, 4, true);
    const { a, hold, pb, cb } = pair;
    const ca = pair.ca.then(
      () => 'committed',
      (err: Error) => err.message,
    );
    hold.open();
    assert.equal(await ca, 'injected failure of group A');
    const rb = await cb;
    assert.equal(await pb.asBuilt, false, 'B committed as built on a state A never left');
    const receiptsB = rb.outcomes.flatMap((o) => (o.ok ? o.receipts : []));
    assert.deepEqual(receiptsB.map((r) => r.seq), [2, 3, 4, 5]);
    await checkLedger(tenant, [receiptsB]);
    const ids = (await su.query(`SELECT event_id::text FROM ledger_entries WHERE tenant_id = $1`, [tenant])).rows.map((r) => r.event_id);
    for (const p of a.events) assert.ok(!ids.includes(p.event.id.toLowerCase()), 'an event of the failed group A is stored');
  });

  test('another process takes the lock while B claims the next seqs: B backs off, no deadlock, one chain', async () => {
    const tenant = 'pipe-other';
    const { hold, ca, cb } = await pipelinedPair(tenant, 3, 3);

    // the other process: queued on the tenant lock behind A, then writing the seq after A's last (B's first)
    const other = new Client({ connectionString: t.db.ownerUrl });
    await other.connect();
    try {
      const otherPid = (await other.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid as number;
      await other.query('BEGIN');
      const locked = other.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`agent-ledger:${tenant}`]);
      await until(su, `SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted`, [otherPid]);
      hold.open();
      await ca;
      await locked;
      // A committed 2..4; B claimed 5.. and must give way rather than wait for this lock
      await other.query(`INSERT INTO ledger_bodies (tenant_id, seq, body) VALUES ($1, 5, '{}')`, [tenant]);
      await other.query('ROLLBACK');
    } finally {
      await other.end();
    }
    const rb = await cb;
    const receiptsB = rb.outcomes.flatMap((o) => (o.ok ? o.receipts : []));
    assert.deepEqual(receiptsB.map((r) => r.seq), [5, 6, 7]);
    const receiptsA = (await ca).outcomes.flatMap((o) => (o.ok ? o.receipts : []));
    await checkLedger(tenant, [receiptsA, receiptsB]);
  });

  // A small group built ahead and not pipelined commits in one statement (ledger_append); these are its fallbacks.

  /** Records what each one-statement attempt answered ('committed', 'stale', 'replay') while `work` runs. */
  async function attemptsDuring(work: () => Promise<void>): Promise<string[]> {
    const r = repo as unknown as { appendAtOnce(...a: unknown[]): Promise<string> };
    const original = r.appendAtOnce;
    const seen: string[] = [];
    r.appendAtOnce = async (...a: unknown[]) => {
      const out = await original.apply(repo, a);
      seen.push(out);
      return out;
    };
    try {
      await work();
    } finally {
      r.appendAtOnce = original;
    }
    return seen;
  }

  test('one-statement commit on a head that moved: nothing written by it, the ordinary path commits after the other group', async () => {
    const tenant = 'once-stale';
    const key = await setup(tenant);
    const a = await batch(tenant, key, 2);
    const b = await batch(tenant, key, 3);
    // both built on the same head (the key registration): B's becomes stale once A commits
    const ga = repo.builder(tenant)!;
    ga.add(a);
    const gb = repo.builder(tenant)!;
    gb.add(b);
    let ra!: Awaited<ReturnType<LedgerRepository['commit']>>;
    let rb!: typeof ra;
    const attempts = await attemptsDuring(async () => {
      ra = await repo.commit(tenant, [a], ga);
      rb = await repo.commit(tenant, [b], gb);
    });
    assert.deepEqual(attempts, ['committed', 'stale']);
    const receiptsA = ra.outcomes.flatMap((o) => (o.ok ? o.receipts : []));
    const receiptsB = rb.outcomes.flatMap((o) => (o.ok ? o.receipts : []));
    assert.deepEqual(receiptsA.map((r) => r.seq), [2, 3]);
    assert.deepEqual(receiptsB.map((r) => r.seq), [4, 5, 6]);
    assert.notDeepEqual(
      receiptsB.map((r) => r.chain_hash),
      gb.outcomes.flatMap((o) => (o.ok ? o.receipts.map((x) => x.chain_hash) : [])),
      'B was stored as built on the stale head',
    );
    await checkLedger(tenant, [receiptsA, receiptsB]);
  });

  test('one-statement commit with a kid another process revoked: refused, nothing written', async () => {
    const tenant = 'once-revoked';
    const key = await setup(tenant);
    const first = await batch(tenant, key, 1);
    const g1 = repo.builder(tenant)!;
    g1.add(first);
    await repo.commit(tenant, [first], g1);
    // revoked behind this process's back (as another instance would, in its own transaction)
    await su.query(`UPDATE producer_keys SET revoked_at = now() WHERE tenant_id = $1 AND kid = $2`, [tenant, key.kid]);
    const b = await batch(tenant, key, 2);
    const g = repo.builder(tenant)!;
    g.add(b);
    let r!: Awaited<ReturnType<LedgerRepository['commit']>>;
    assert.deepEqual(await attemptsDuring(async () => void (r = await repo.commit(tenant, [b], g))), ['stale']);
    assert.equal(r.outcomes.length, 1);
    const o = r.outcomes[0];
    assert.ok(!o.ok && /revoked/.test(o.error.message), `outcome: ${JSON.stringify(o)}`);
    const n = (await su.query(`SELECT count(*)::int AS n FROM ledger_entries WHERE tenant_id = $1`, [tenant])).rows[0].n;
    assert.equal(n, 2, 'only the registration and the first batch are stored');
  });
});

