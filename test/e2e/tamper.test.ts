import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from 'pg';
import { newSpanId, newTraceId, type Receipt } from '../../src/client/ledger-client';
import type { TraceEvent } from '../../src/core/event';
import { jcs } from '../../src/core/jcs';
import { hashChildren } from '../../src/core/merkle';
import { leafHash, nextChainHash } from '../../src/core/record';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { client, event, producerKey, registerKey, type TestProducer } from '../support/factories';

/**
 * Tampering for real: the Postgres superuser rewrites ledger rows with the
 * append-only triggers bypassed (session_replication_role = replica), and
 * GET /v1/ledger/verify must name the first bad seq with a reason. Every case
 * restores the original bytes (checked by fingerprint) and verify is ok again;
 * the other tenant's ledger stays ok throughout.
 */

const A = 'acme';
const B = 'globex';
const TABLES = ['ledger_entries', 'ledger_bodies', 'ledger_batches', 'merkle_nodes'] as const;

interface Verify {
  ok: boolean;
  verified: number;
  from_seq: number;
  to_seq: number;
  first_bad_seq?: number;
  reason?: string;
}

/** One run of `size` events: a root span and its children, with every optional field used. */
function run(size: number, agent: string): TraceEvent[] {
  const trace = newTraceId();
  const root = newSpanId();
  return Array.from({ length: size }, (_, i) =>
    event({
      trace_id: trace,
      span_id: i === 0 ? root : newSpanId(),
      parent_span_id: i === 0 ? null : root,
      session_id: i % 3 === 2 ? null : `conv-${trace.slice(0, 8)}`,
      type: i === 0 ? 'run.started' : i % 2 ? 'tool.call' : 'model.call',
      name: i === 0 ? null : i % 2 ? 'refund_payment' : 'gpt-5',
      agent,
      status: i % 4 === 3 ? 'error' : 'ok',
      duration_ms: 100 + i,
      attributes: { args: { order_id: `A-${i}`, amount: 250 + i } },
    }),
  );
}

describe('tampering with the stored ledger is detected by verify', () => {
  let t: TestApp;
  let p1: TestProducer;
  let p2: TestProducer;
  const readers: Record<string, string> = {};
  let sizeA = 0;
  let sizeB = 0;
  /** The producer event most cases tamper with: inside a batch, not its first entry. */
  let K = 0;
  /** First seq of K's batch. */
  let kBatchFirst = 0;
  let original = '';

  const fingerprint = (tenant: string) =>
    asSuperuser(t.db, async (c) => {
      const parts: string[] = [];
      for (const table of TABLES) {
        const { rows } = await c.query(
          `SELECT count(*)::int AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS h
           FROM ${table} x WHERE tenant_id = $1`,
          [tenant],
        );
        parts.push(`${table}:${rows[0].n}:${rows[0].h}`);
      }
      return parts.join(' ');
    });

  async function verifyRaw(tenant: string, query = ''): Promise<{ status: number; body: Verify }> {
    const res = await fetch(`${t.url}/v1/ledger/verify${query}`, { headers: { authorization: `Bearer ${readers[tenant]}` } });
    return { status: res.status, body: (await res.json()) as Verify };
  }

  async function verify(tenant: string, query = ''): Promise<Verify> {
    const { status, body } = await verifyRaw(tenant, query);
    assert.equal(status, 200, JSON.stringify(body));
    return body;
  }

  async function expectBad(seq: number, reason: RegExp, query = ''): Promise<Verify> {
    const v = await verify(A, query);
    assert.equal(v.ok, false, `verify missed the tamper: ${JSON.stringify(v)}`);
    assert.equal(v.first_bad_seq, seq, JSON.stringify(v));
    assert.match(v.reason ?? '', reason);
    return v;
  }

  /** Runs `mutate` as the superuser with triggers off, then `check`; always restores tenant A's bytes. */
  async function tampered(mutate: (c: Client) => Promise<void>, check: () => Promise<void>): Promise<void> {
    await asSuperuser(t.db, async (c) => {
      await c.query(`SET session_replication_role = replica`);
      await mutate(c);
    });
    try {
      assert.notEqual(await fingerprint(A), original, 'the tamper changed nothing');
      await check();
      const other = await verify(B);
      assert.deepEqual([other.ok, other.verified], [true, sizeB], JSON.stringify(other));
    } finally {
      await asSuperuser(t.db, async (c) => {
        await c.query(`SET session_replication_role = replica`);
        await c.query('BEGIN');
        for (const table of TABLES) {
          await c.query(`DELETE FROM ${table} WHERE tenant_id = $1`, [A]);
          await c.query(`INSERT INTO ${table} SELECT * FROM snap_${table}`);
        }
        await c.query('COMMIT');
      });
    }
    assert.equal(await fingerprint(A), original, 'the restore did not bring back the original bytes');
    assert.deepEqual(await verify(A), { ok: true, verified: sizeA, from_seq: 1, to_seq: sizeA });
  }

  async function one(c: Client, sql: string, params: unknown[]): Promise<void> {
    const r = await c.query(sql, params);
    assert.equal(r.rowCount, 1, `expected one row changed by: ${sql}`);
  }

  /**
   * A careful forger: edits one field of the record at `seq`, sets the
   * matching query column, and recomputes the leaf hash, every later chain
   * hash and the Merkle nodes, so that all stored hashes agree. Only the
   * signed content (batch JWS → digest → body) can still give it away.
   */
  async function forgeRecord(c: Client, seq: number, field: string, value: unknown, column = field): Promise<void> {
    const { rows } = await c.query<{ seq: string; record: string; chain_hash: Buffer }>(
      `SELECT seq, record, chain_hash FROM ledger_entries WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq`,
      [A, seq - 1],
    );
    let chain: Buffer = rows[0].chain_hash;
    const leaves: Buffer[] = [];
    for (const row of rows.slice(1)) {
      let text = row.record;
      if (Number(row.seq) === seq) {
        const rec = JSON.parse(text) as Record<string, unknown>;
        assert.notDeepEqual(rec[field], value, `the forged ${field} must differ`);
        rec[field] = value;
        text = jcs(rec);
      }
      const leaf = leafHash(text);
      chain = nextChainHash(chain, leaf);
      leaves.push(leaf);
      await one(c, `UPDATE ledger_entries SET record = $3, leaf_hash = $4, chain_hash = $5 WHERE tenant_id = $1 AND seq = $2`, [
        A,
        row.seq,
        text,
        leaf,
        chain,
      ]);
    }
    await one(c, `UPDATE ledger_entries SET ${column} = $3 WHERE tenant_id = $1 AND seq = $2`, [A, seq, value]);
    // Merkle nodes over the (now forged) leaf hashes, so head and proofs agree too.
    const all = (await c.query<{ leaf_hash: Buffer }>(`SELECT leaf_hash FROM ledger_entries WHERE tenant_id = $1 ORDER BY seq`, [A]))
      .rows.map((r) => r.leaf_hash);
    let level = all;
    for (let l = 1; level.length >= 2; l++) {
      const next: Buffer[] = [];
      for (let i = 0; i + 1 < level.length; i += 2) next.push(hashChildren(level[i], level[i + 1]));
      for (let i = 0; i < next.length; i++) {
        await c.query(`UPDATE merkle_nodes SET hash = $4 WHERE tenant_id = $1 AND level = $2 AND idx = $3 AND hash <> $4`, [
          A,
          l,
          i,
          next[i],
        ]);
      }
      level = next;
    }
  }

  before(async () => {
    t = await startTestApp();
    p1 = await producerKey();
    p2 = await producerKey('ES256');
    const adminA = await t.token(A, 'admin');
    await registerKey(t.url, adminA, p1, 'support-bot');
    await registerKey(t.url, adminA, p2, 'billing-bot');
    const pB = await producerKey();
    await registerKey(t.url, await t.token(B, 'admin'), pB, 'globex-bot');
    readers[A] = await t.token(A, 'audit:read');
    readers[B] = await t.token(B, 'audit:read');

    const writerA = await t.token(A, 'events:write');
    const writerB = await t.token(B, 'events:write');
    const sizes = [5, 7, 4, 9, 6, 8];
    const receipts: Receipt[][] = [];
    for (const [i, n] of sizes.entries()) {
      const key = i === 4 ? p2 : p1;
      receipts.push(await client(t.url, writerA, key).send(run(n, i === 4 ? 'billing-agent' : 'support-agent')));
      // the other tenant's ledger grows between them
      if (i % 2 === 0) await client(t.url, writerB, pB).send(run(4 + i, 'support-agent'));
    }
    sizeA = 2 + sizes.reduce((s, n) => s + n, 0);
    sizeB = 1 + 4 + 6 + 8;
    K = receipts[3][1].seq;
    kBatchFirst = receipts[3][0].seq;
    assert.deepEqual([K, kBatchFirst], [2 + 5 + 7 + 4 + 2, 2 + 5 + 7 + 4 + 1]);

    await asSuperuser(t.db, async (c) => {
      for (const table of TABLES) await c.query(`CREATE TABLE snap_${table} AS SELECT * FROM ${table} WHERE tenant_id = $1`, [A]);
    });
    original = await fingerprint(A);
    assert.deepEqual(await verify(A), { ok: true, verified: sizeA, from_seq: 1, to_seq: sizeA });
    assert.deepEqual(await verify(B), { ok: true, verified: sizeB, from_seq: 1, to_seq: sizeB });
  });

  after(() => t?.close());

  test('one character of a record (the agent name in the record text)', () =>
    tampered(
      (c) =>
        one(c, `UPDATE ledger_entries SET record = replace(record, '"agent":"support-agent"', '"agent":"support-agenT"') WHERE tenant_id = $1 AND seq = $2`, [A, K]),
      async () => {
        await expectBad(K, /leaf hash|record/i);
      },
    ));

  test('a record rewritten in a non-canonical form (same content, one extra space)', () =>
    tampered(
      (c) => one(c, `UPDATE ledger_entries SET record = replace(record, '"v":1}', '"v": 1}') WHERE tenant_id = $1 AND seq = $2`, [A, K]),
      async () => {
        await expectBad(K, /canonical/i);
      },
    ));

  test('one attribute value inside a body', () =>
    tampered(
      (c) =>
        one(c, `UPDATE ledger_bodies SET body = replace(body, '"amount":251', '"amount":9251') WHERE tenant_id = $1 AND seq = $2 AND body LIKE '%"amount":251%'`, [A, K]),
      async () => {
        await expectBad(K, /body/i);
      },
    ));

  test('a body replaced by a different, validly canonical body of the same event', () =>
    tampered(
      async (c) => {
        const { rows } = await c.query<{ body: string }>(`SELECT body FROM ledger_bodies WHERE tenant_id = $1 AND seq = $2`, [A, K]);
        const ev = JSON.parse(rows[0].body) as TraceEvent;
        ev.attributes = { args: { order_id: 'A-1', amount: 25 }, approved_by: 'manager@example.com' };
        await one(c, `UPDATE ledger_bodies SET body = $3 WHERE tenant_id = $1 AND seq = $2`, [A, K, jcs(ev)]);
      },
      async () => {
        await expectBad(K, /body|digest/i);
      },
    ));

  test("a body replaced by another event's body from the same signed batch", () =>
    tampered(
      (c) =>
        one(c, `UPDATE ledger_bodies SET body = (SELECT body FROM ledger_bodies WHERE tenant_id = $1 AND seq = $2 + 1) WHERE tenant_id = $1 AND seq = $2`, [A, K]),
      async () => {
        await expectBad(K, /body|digest/i);
      },
    ));

  test('a stored leaf_hash', () =>
    tampered(
      (c) => one(c, `UPDATE ledger_entries SET leaf_hash = set_byte(leaf_hash, 31, get_byte(leaf_hash, 31) # 1) WHERE tenant_id = $1 AND seq = $2`, [A, K]),
      async () => {
        await expectBad(K, /leaf/i);
      },
    ));

  test('a stored chain_hash', () =>
    tampered(
      (c) => one(c, `UPDATE ledger_entries SET chain_hash = set_byte(chain_hash, 0, get_byte(chain_hash, 0) # 128) WHERE tenant_id = $1 AND seq = $2`, [A, K]),
      async () => {
        await expectBad(K, /chain/i);
      },
    ));

  test('the chain_hash of the newest entry', () =>
    tampered(
      (c) => one(c, `UPDATE ledger_entries SET chain_hash = sha256(chain_hash) WHERE tenant_id = $1 AND seq = $2`, [A, sizeA]),
      async () => {
        await expectBad(sizeA, /chain/i);
      },
    ));

  describe('a query column only, the record untouched', () => {
    const columns: [string, string][] = [
      ['agent', `'billing-agent'`],
      ['trace_id', `md5('forged')`],
      ['span_id', `left(md5('forged'), 16)`],
      ['parent_span_id', `left(md5('forged'), 16)`],
      ['session_id', `'conv-forged'`],
      ['type', `'tool.result'`],
      ['name', `'lookup_order'`],
      ['kid', `'ledger'`],
      ['batch', `'forged-batch'`],
      ['digest', `'forged-digest'`],
      ['event_id', `gen_random_uuid()`],
      // copies of the signed body's fields that the queries filter and report on
      ['status', `'error'`],
      ['duration_ms', `duration_ms + 1`],
      ['event_time', `event_time + interval '1 second'`],
      ['received_at', `received_at - interval '1 day'`],
    ];
    for (const [column, value] of columns) {
      test(column, () =>
        tampered(
          (c) => one(c, `UPDATE ledger_entries SET ${column} = ${value} WHERE tenant_id = $1 AND seq = $2`, [A, K]),
          async () => {
            await expectBad(K, new RegExp(`${column}|column`, 'i'));
          },
        ),
      );
    }
  });

  test('one row deleted (entry and body)', () =>
    tampered(
      async (c) => {
        await one(c, `DELETE FROM ledger_entries WHERE tenant_id = $1 AND seq = $2`, [A, K]);
        await one(c, `DELETE FROM ledger_bodies WHERE tenant_id = $1 AND seq = $2`, [A, K]);
      },
      async () => {
        await expectBad(K, /missing/i);
      },
    ));

  test('the newest row deleted (entry and body): the signed batch still lists it', () =>
    tampered(
      async (c) => {
        await one(c, `DELETE FROM ledger_entries WHERE tenant_id = $1 AND seq = $2`, [A, sizeA]);
        await one(c, `DELETE FROM ledger_bodies WHERE tenant_id = $1 AND seq = $2`, [A, sizeA]);
      },
      async () => {
        await expectBad(sizeA, /missing|batch|digest/i);
      },
    ));

  test('a body deleted with no erasure recorded in the ledger', () =>
    tampered(
      (c) => one(c, `DELETE FROM ledger_bodies WHERE tenant_id = $1 AND seq = $2`, [A, K]),
      async () => {
        await expectBad(K, /body|erase/i);
      },
    ));

  test("two rows' seqs swapped (entries and bodies)", () =>
    tampered(
      async (c) => {
        for (const table of ['ledger_entries', 'ledger_bodies']) {
          await one(c, `UPDATE ${table} SET seq = 999999 WHERE tenant_id = $1 AND seq = $2`, [A, K]);
          await one(c, `UPDATE ${table} SET seq = $2 WHERE tenant_id = $1 AND seq = $3`, [A, K, K + 3]);
          await one(c, `UPDATE ${table} SET seq = $2 WHERE tenant_id = $1 AND seq = 999999`, [A, K + 3]);
        }
      },
      async () => {
        await expectBad(K, /seq|order/i);
      },
    ));

  test("a batch's JWS row deleted (ledger_batches)", () =>
    tampered(
      async (c) => {
        const { rows } = await c.query<{ first_seq: string }>(
          `DELETE FROM ledger_batches WHERE tenant_id = $1 AND batch = (SELECT batch FROM ledger_entries WHERE tenant_id = $1 AND seq = $2) RETURNING first_seq`,
          [A, K],
        );
        assert.deepEqual(rows.map((r) => Number(r.first_seq)), [kBatchFirst]);
      },
      async () => {
        await expectBad(kBatchFirst, /batch|signature/i);
      },
    ));

  test("a batch's JWS replaced by a validly signed JWS over other digests", () =>
    tampered(
      async (c) => {
        // the producer's own signature over the next batch, stored under this batch's id
        await one(
          c,
          `UPDATE ledger_batches SET jws = (SELECT jws FROM ledger_batches WHERE tenant_id = $1 AND first_seq = $3)
           WHERE tenant_id = $1 AND first_seq = $2`,
          [A, kBatchFirst, kBatchFirst + 9],
        );
      },
      async () => {
        await expectBad(kBatchFirst, /batch|signature|digest/i);
      },
    ));

  test('a Merkle node on the right edge of the tree (head and proofs come from it)', () =>
    tampered(
      async (c) => {
        // sizeA = 41 = 32 + 8 + 1: the level-3 node 4 covers leaves 32..39, i.e. seqs 33..40
        await one(c, `UPDATE merkle_nodes SET hash = sha256(hash) WHERE tenant_id = $1 AND level = 3 AND idx = 4`, [A]);
      },
      async () => {
        const v = await verify(A);
        assert.equal(v.ok, false, `verify missed a rewritten Merkle node: ${JSON.stringify(v)}`);
        assert.ok(v.first_bad_seq! >= 33 && v.first_bad_seq! <= 40, JSON.stringify(v));
      },
    ));

  describe('a careful forger rewrites one record field and recomputes every hash after it', () => {
    const forgeries: [string, () => unknown][] = [
      ['agent', () => 'billing-agent'],
      ['type', () => 'tool.result'],
      ['trace_id', () => newTraceId()],
      ['time', () => '2026-11-25T09:00:00.000Z'],
      ['name', () => 'lookup_order'],
      ['session_id', () => 'conv-forged'],
      ['parent_span_id', () => newSpanId()],
      ['kid', () => p2.kid],
    ];
    for (const [field, value] of forgeries) {
      test(field, () =>
        tampered(
          (c) => forgeRecord(c, K, field, value(), field === 'time' ? 'event_time' : field),
          async () => {
            await expectBad(K, new RegExp(`body|batch|signature|digest|key|${field}`, 'i'));
          },
        ),
      );
    }
  });

  test('from_seq/to_seq: a tamper outside the range is not reported, inside it is', () =>
    tampered(
      async (c) => {
        await one(c, `UPDATE ledger_entries SET record = replace(record, '"agent":"support-agent"', '"agent":"support-agenT"') WHERE tenant_id = $1 AND seq = 5`, [A]);
        await one(c, `UPDATE ledger_bodies SET body = replace(body, '"amount":25', '"amount":35') WHERE tenant_id = $1 AND seq = $2`, [A, sizeA - 1]);
      },
      async () => {
        assert.deepEqual(await verify(A, '?from_seq=10&to_seq=20'), { ok: true, verified: 11, from_seq: 10, to_seq: 20 });
        assert.deepEqual(await verify(A, '?to_seq=4'), { ok: true, verified: 4, from_seq: 1, to_seq: 4 });
        assert.deepEqual(await verify(A, `?from_seq=6&to_seq=${sizeA - 2}`), {
          ok: true,
          verified: sizeA - 7,
          from_seq: 6,
          to_seq: sizeA - 2,
        });
        await expectBad(5, /leaf hash|record/i, '?from_seq=5&to_seq=5');
        await expectBad(5, /leaf hash|record/i, '?from_seq=2&to_seq=30');
        await expectBad(5, /leaf hash|record/i);
        await expectBad(sizeA - 1, /body/i, `?from_seq=6`);
        await expectBad(sizeA - 1, /body/i, `?from_seq=${sizeA - 1}&to_seq=${sizeA + 100}`);
      },
    ));

  test('a range past the head is not reported as a tamper', async () => {
    const clamped = await verify(A, `?from_seq=${sizeA}&to_seq=${sizeA + 50}`);
    assert.deepEqual(clamped, { ok: true, verified: 1, from_seq: sizeA, to_seq: sizeA });
    for (const from of [sizeA + 1, sizeA + 10]) {
      const { status, body } = await verifyRaw(A, `?from_seq=${from}`);
      if (status === 200) assert.deepEqual([body.ok, body.verified], [true, 0], `from_seq=${from}: ${JSON.stringify(body)}`);
      else assert.equal(status, 400, JSON.stringify(body));
    }
  });

  test('the runtime role may not UPDATE, DELETE or TRUNCATE ledger tables, nor switch the triggers off', async () => {
    const app = new Client({ connectionString: t.db.appUrl });
    await app.connect();
    try {
      const { rows } = await app.query<{ current_user: string }>(`SELECT current_user`);
      assert.equal(rows[0].current_user, 'agent_ledger_app');
      const refused = async (sql: string, why: RegExp) => {
        await app.query('BEGIN');
        try {
          await assert.rejects(app.query(sql, sql.includes('$1') ? [A] : []), (err: Error & { code?: string }) => {
            assert.equal(err.code, '42501', `${sql}: ${err.message}`);
            assert.match(err.message, why, sql);
            return true;
          });
        } finally {
          await app.query('ROLLBACK');
        }
      };
      for (const table of TABLES) {
        await refused(`UPDATE ${table} SET tenant_id = tenant_id WHERE tenant_id = $1`, /permission denied/);
        await refused(`DELETE FROM ${table} WHERE tenant_id = $1`, /permission denied/);
        await refused(`TRUNCATE ${table}`, /permission denied/);
        await refused(`ALTER TABLE ${table} DISABLE TRIGGER USER`, /must be owner|permission denied/);
      }
      await refused(`SET session_replication_role = replica`, /permission denied/);
      await refused(`CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`, /must be owner|permission denied/);
    } finally {
      await app.end();
    }
    assert.equal(await fingerprint(A), original);
  });

  test('the superuser without replica mode is refused by the triggers', async () => {
    await asSuperuser(t.db, async (c) => {
      const refused = async (sql: string, params: unknown[]) => {
        await c.query('BEGIN');
        try {
          await assert.rejects(c.query(sql, params), (err: Error) => {
            assert.match(err.message, /append-only/, sql);
            return true;
          });
        } finally {
          await c.query('ROLLBACK');
        }
      };
      for (const table of TABLES) {
        await refused(`UPDATE ${table} SET tenant_id = tenant_id WHERE tenant_id = $1`, [A]);
        await refused(`DELETE FROM ${table} WHERE tenant_id = $1`, [A]);
        await refused(`TRUNCATE ${table}`, []);
      }
    });
    assert.equal(await fingerprint(A), original);
  });

  test('after every tamper and restore, the ledger still appends and verifies', async () => {
    const before = await verify(B);
    const pB = await producerKey();
    await registerKey(t.url, await t.token(B, 'admin'), pB, 'late-bot');
    const receipts = await client(t.url, await t.token(B, 'events:write'), pB).send(run(3, 'support-agent'));
    assert.deepEqual(
      receipts.map((r) => r.seq),
      [before.verified + 2, before.verified + 3, before.verified + 4],
    );
    assert.deepEqual(await verify(B), { ok: true, verified: before.verified + 4, from_seq: 1, to_seq: before.verified + 4 });
    assert.deepEqual(await verify(A), { ok: true, verified: sizeA, from_seq: 1, to_seq: sizeA });
  });
});
