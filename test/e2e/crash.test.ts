import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from 'pg';
import { newTraceId, type Receipt } from '../../src/client/ledger-client';
import type { TraceEvent } from '../../src/core/event';
import { rootFromLeaves } from '../../src/core/merkle';
import { batchId } from '../../src/core/record';
import { mintToken } from '../../src/auth/token';
import { TEST_JWT_SECRET } from '../support/app';
import { asSuperuser, createTestDatabase, type TestDatabase } from '../support/db';
import { event, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { completeMerkleNodes, readStoredLedger, type StoredRow } from '../support/stored';
import { killAllServiceProcesses, ledgerSigningKeyJson, startServiceProcess, type ServiceProcess } from '../support/process';
import { rng } from '../support/random';

/**
 * DESIGN.md §5: "a 201 is a promise that it is in the ledger, across crashes".
 * The real service runs as a child process; it is SIGKILLed while batches are
 * in flight, restarted on the same database, and the producer resends what
 * got no 201. Twice.
 */

const TENANT = 'acme';
const BATCHES_PER_ROUND = 50;
const IN_FLIGHT = 12;

interface Batch {
  events: TraceEvent[];
  body: { events: unknown[]; signature: string };
  /** The receipts of the 201, if one came. */
  receipts?: Receipt[];
}


const token = (scope: string) => mintToken({ secret: new TextEncoder().encode(TEST_JWT_SECRET), tenant: TENANT, scope });

async function postBatch(url: string, auth: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

/** How the kill is timed. */
interface KillPlan {
  /** Kill once this many 201s have arrived (after `arm` and `ready`). */
  afterAcks: number;
  /** Prepares the moment of the kill (e.g. holds a lock); returns its cleanup, run after the kill. */
  arm?: () => Promise<() => Promise<void>>;
  /** Resolves when the service is at the moment to kill it. */
  ready?: () => Promise<void>;
}

/**
 * Keeps IN_FLIGHT batches in flight and SIGKILLs the service as the plan
 * says. Batches never sent, or sent without a 201 before the process died,
 * keep `receipts` undefined.
 */
async function fireAndKill(svc: ServiceProcess, auth: string, batches: Batch[], plan: KillPlan): Promise<void> {
  let next = 0;
  let acks = 0;
  let killed = false;
  let reached!: () => void;
  const enoughAcks = new Promise<void>((res) => (reached = res));
  const worker = async () => {
    while (!killed && next < batches.length) {
      const b = batches[next++];
      try {
        const { status, text } = await postBatch(svc.url, auth, b.body);
        if (status !== 201) {
          if (killed) continue;
          throw new Error(`unexpected ${status} before the kill: ${text}`);
        }
        b.receipts = (JSON.parse(text) as { receipts: Receipt[] }).receipts;
        if (++acks === plan.afterAcks) reached();
      } catch (err) {
        if (!killed) throw err;
      }
    }
  };
  const controller = async () => {
    await enoughAcks;
    const cleanup = plan.arm ? await plan.arm() : async () => undefined;
    try {
      await plan.ready?.();
      killed = true;
      svc.child.kill('SIGKILL');
      const exit = await svc.exited;
      assert.equal(exit.signal, 'SIGKILL');
    } finally {
      await cleanup();
    }
  };
  await Promise.all([controller(), ...Array.from({ length: IN_FLIGHT }, worker)]);
  assert.ok(killed, 'the service was never killed');
}

/** Polls until a session of the service matches `where` (on pg_stat_activity). */
async function untilSession(db: TestDatabase, where: string): Promise<void> {
  await asSuperuser(db, async (c) => {
    for (let i = 0; ; i++) {
      const { rows } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND usename = 'agent_ledger_app' AND ${where}`,
        [db.name],
      );
      if (rows[0].n > 0) return;
      if (i > 400) throw new Error(`no session of the service reached: ${where}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  });
}

/** Waits until the killed process's database sessions are gone (each committed or rolled back). */
async function waitForSessionsToEnd(db: TestDatabase): Promise<void> {
  await asSuperuser(db, async (c) => {
    for (let i = 0; ; i++) {
      const { rows } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND usename = 'agent_ledger_app'`,
        [db.name],
      );
      if (rows[0].n === 0) return;
      if (i > 200) throw new Error(`${rows[0].n} sessions of the killed service are still open`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
}

const stored = (db: TestDatabase) => readStoredLedger(db, TENANT);

/** The stored ledger is whole: seqs 1..N, bodies, Merkle nodes; and every 201 is in it as receipted. */
function checkWhole(s: { rows: StoredRow[]; nodes: string[] }, acked: Batch[]): Map<string, StoredRow> {
  const N = s.rows.length;
  assert.deepEqual(
    s.rows.map((r) => r.seq),
    Array.from({ length: N }, (_, i) => i + 1),
    'seqs are not exactly 1..N',
  );
  assert.ok(s.rows.every((r) => r.has_body), 'an entry lost its body');
  assert.deepEqual(s.nodes, completeMerkleNodes(s.rows.map((r) => Buffer.from(r.leaf, 'hex'))), 'Merkle nodes do not match the leaves');
  const byId = new Map(s.rows.map((r) => [r.event_id, r]));
  for (const b of acked) {
    b.receipts!.forEach((r, i) => {
      assert.equal(r.id, b.events[i].id);
      const row = byId.get(r.id.toLowerCase());
      assert.ok(row, `event ${r.id} got a 201 (seq ${r.seq}) but is not in the ledger`);
      assert.deepEqual({ seq: row.seq, leaf_hash: row.leaf, chain_hash: row.chain }, { seq: r.seq, leaf_hash: r.leaf_hash, chain_hash: r.chain_hash });
    });
  }
  return byId;
}

describe('crash: SIGKILL with batches in flight, restart, resend', () => {
  let db: TestDatabase;
  let signingKey: string;
  let svc: ServiceProcess;
  let producer: TestProducer;
  let writer: string;
  let reader: string;
  const all: Batch[] = [];

  /** A failed round may leave the service dead: later rounds start it again. */
  const running = async () => {
    if (svc.child.exitCode !== null || svc.child.signalCode !== null) svc = await startServiceProcess(db, { signingKey });
  };

  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${svc.url}${path}`, { headers: { authorization: `Bearer ${reader}` } });
    assert.equal(res.status, 200, path);
    return (await res.json()) as T;
  };

  before(async () => {
    db = await createTestDatabase();
    signingKey = await ledgerSigningKeyJson();
    svc = await startServiceProcess(db, { signingKey });
    producer = await producerKey();
    await registerKey(svc.url, await token('admin'), producer, 'crash-bot');
    writer = await token('events:write');
    reader = await token('audit:read');
  });

  after(async () => {
    await killAllServiceProcesses();
    await db?.drop();
  });

  /**
   * Three kills: mid-transaction (entries inserted, the bodies insert held
   * by a superuser lock); during COMMIT (a deferred trigger stalls the commit,
   * which completes after the client is gone: committed, never acknowledged);
   * and at an arbitrary moment under load.
   */
  const plans: [string, (db: TestDatabase) => KillPlan, (committedUnacked: number) => void][] = [
    [
      'mid-transaction',
      (db) => ({
        afterAcks: 5,
        arm: async () => {
          const c = new Client({ connectionString: db.ownerUrl });
          await c.connect();
          await c.query('BEGIN');
          await c.query('LOCK TABLE ledger_bodies IN EXCLUSIVE MODE');
          return async () => {
            await c.query('ROLLBACK');
            await c.end();
          };
        },
        ready: () => untilSession(db, `wait_event_type = 'Lock' AND query LIKE 'COPY ledger_bodies%'`),
      }),
      () => undefined,
    ],
    [
      'during COMMIT',
      (db) => ({
        afterAcks: 5,
        arm: async () => {
          await asSuperuser(db, async (c) => {
            await c.query(`
              CREATE FUNCTION test_stall_commit() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN
                IF current_setting('test.stalled', true) IS DISTINCT FROM 'yes' THEN
                  PERFORM set_config('test.stalled', 'yes', true);
                  PERFORM pg_sleep(0.5);
                END IF;
                RETURN NULL;
              END $$`);
            await c.query(`
              CREATE CONSTRAINT TRIGGER test_stall_commit AFTER INSERT ON ledger_batches
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_stall_commit()`);
          });
          return () =>
            asSuperuser(db, async (c) => {
              await c.query(`DROP TRIGGER test_stall_commit ON ledger_batches`);
              await c.query(`DROP FUNCTION test_stall_commit()`);
            });
        },
        ready: () => untilSession(db, `state = 'active' AND query = 'COMMIT' AND wait_event = 'PgSleep'`),
      }),
      (n) => assert.ok(n > 0, 'the stalled COMMIT did not complete after the kill'),
    ],
    ['under load', () => ({ afterAcks: 12 }), () => undefined],
  ];

  for (const [round, [moment, plan, expectCommitted]] of plans.entries()) {
    test(`kill ${round + 1}, ${moment}: every 201 survives, the rest can be resent`, async (t) => {
      const rand = rng((round + 1) * 7919);
      const batches: Batch[] = [];
      for (let i = 0; i < BATCHES_PER_ROUND; i++) {
        const trace_id = newTraceId();
        const events = Array.from({ length: 5 + Math.floor(rand() * 60) }, () => event({ trace_id, agent: `agent-r${round}` }));
        batches.push({ events, body: await signedBatch(events, producer) });
      }
      all.push(...batches);
      await running();
      const sizeBefore = (await stored(db)).rows.length;

      await fireAndKill(svc, writer, batches, plan(db));
      await waitForSessionsToEnd(db);

      const acked = batches.filter((b) => b.receipts);
      const unacked = batches.filter((b) => !b.receipts);
      assert.ok(unacked.length > 0, 'every batch got its 201 before the kill: nothing was in flight');

      // on disk, before any restart: whole, every 201 as receipted, unacknowledged batches all or nothing
      const afterKill = await stored(db);
      const byId = checkWhole(afterKill, all.filter((b) => b.receipts));
      const committedUnacked = new Set<Batch>();
      for (const b of unacked) {
        const present = b.events.filter((e) => byId.has(e.id.toLowerCase())).length;
        assert.ok(present === 0 || present === b.events.length, `a batch is half-written: ${present}/${b.events.length}`);
        if (present) committedUnacked.add(b);
      }
      const fresh = acked.length + committedUnacked.size;
      assert.equal(
        afterKill.rows.length - sizeBefore,
        [...acked, ...committedUnacked].reduce((s, b) => s + b.events.length, 0),
        `the ledger grew by something other than the ${fresh} committed batches`,
      );

      expectCommitted(committedUnacked.size);
      t.diagnostic(
        `${acked.length} batches got a 201, ${committedUnacked.size} committed without one, ${unacked.length - committedUnacked.size} not in the ledger`,
      );
      svc = await startServiceProcess(db, { signingKey });
      const N = afterKill.rows.length;
      assert.deepEqual(await get('/v1/ledger/verify'), { ok: true, verified: N, from_seq: 1, to_seq: N });

      // the producer resends what got no 201: committed ones return their original receipts, the rest append
      let next = 0;
      const resend = async () => {
        for (let i = next++; i < unacked.length; i = next++) {
          const b = unacked[i];
          const { status, text } = await postBatch(svc.url, writer, b.body);
          assert.equal(status, 201, text);
          b.receipts = (JSON.parse(text) as { receipts: Receipt[] }).receipts;
          b.receipts.forEach((r, j) => {
            assert.equal(r.id, b.events[j].id);
            const before = byId.get(r.id.toLowerCase());
            if (committedUnacked.has(b)) {
              assert.ok(before, `event ${r.id} of a committed batch vanished`);
              assert.deepEqual([r.seq, r.leaf_hash, r.chain_hash], [before.seq, before.leaf, before.chain], 'a resend got a new receipt');
            } else {
              assert.equal(before, undefined);
              assert.ok(r.seq > N, `a resent event got seq ${r.seq}, inside the old ledger of ${N}`);
            }
          });
        }
      };
      await Promise.all(Array.from({ length: 4 }, resend));

      // resending batches that did get a 201 is idempotent across the restart too
      for (const b of acked.slice(0, 3)) {
        const { status, text } = await postBatch(svc.url, writer, b.body);
        assert.equal(status, 201, text);
        assert.deepEqual((JSON.parse(text) as { receipts: Receipt[] }).receipts, b.receipts);
      }

      const final = await stored(db);
      checkWhole(final, all);
      const sentIds = all.flatMap((b) => b.events.map((e) => e.id.toLowerCase()));
      const producerRows = final.rows.filter((r) => !r.type.startsWith('ledger.'));
      assert.equal(producerRows.length, sentIds.length, 'an event is missing or stored twice');
      assert.deepEqual(new Set(producerRows.map((r) => r.event_id)), new Set(sentIds));
      const M = final.rows.length;
      assert.deepEqual(await get('/v1/ledger/verify'), { ok: true, verified: M, from_seq: 1, to_seq: M });
      assert.deepEqual(await get('/v1/ledger/head'), {
        tree_size: M,
        chain_hash: final.rows[M - 1].chain,
        root_hash: rootFromLeaves(final.rows.map((r) => Buffer.from(r.leaf, 'hex'))).toString('hex'),
      });
    });
  }

  test('a COMMIT that fails acknowledges nothing: the batch is not in the ledger and can be resent', async () => {
    const events = Array.from({ length: 7 }, () => event({ agent: 'agent-commit-fails' }));
    const body = await signedBatch(events, producer);
    const id = batchId(body.signature);
    await running();
    assert.match(id, /^[A-Za-z0-9_-]+$/);
    const before = await stored(db);
    await asSuperuser(db, async (c) => {
      await c.query(`
        CREATE FUNCTION test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.batch = '${id}' THEN RAISE EXCEPTION 'test: this commit fails'; END IF;
          RETURN NULL;
        END $$`);
      await c.query(`
        CREATE CONSTRAINT TRIGGER test_fail_commit AFTER INSERT ON ledger_batches
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_commit()`);
    });
    try {
      const refused = await postBatch(svc.url, writer, body);
      assert.notEqual(refused.status, 201, 'a batch whose COMMIT failed was acknowledged');
      assert.ok(refused.status >= 500, `${refused.status} ${refused.text}`);
      const after = await stored(db);
      assert.equal(after.rows.length, before.rows.length);
      checkWhole(after, all);
      const M = after.rows.length;
      assert.deepEqual(await get('/v1/ledger/verify'), { ok: true, verified: M, from_seq: 1, to_seq: M });
    } finally {
      await asSuperuser(db, async (c) => {
        await c.query(`DROP TRIGGER test_fail_commit ON ledger_batches`);
        await c.query(`DROP FUNCTION test_fail_commit()`);
      });
    }
    const { status, text } = await postBatch(svc.url, writer, body);
    assert.equal(status, 201, text);
    const receipts = (JSON.parse(text) as { receipts: Receipt[] }).receipts;
    const N = before.rows.length;
    assert.deepEqual(
      receipts.map((r) => r.seq),
      events.map((_, i) => N + i + 1),
    );
    all.push({ events, body, receipts });
    const final = await stored(db);
    checkWhole(final, all);
    assert.deepEqual(await get('/v1/ledger/verify'), { ok: true, verified: N + 7, from_seq: 1, to_seq: N + 7 });
  });
});
