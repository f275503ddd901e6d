import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { entryJcs, type EvidenceBundle } from '../../src/core/bundle';
import { verifyBundle } from '../../src/core/bundle-verifier';
import { ExportRepository } from '../../src/export/export.repository';
import { ExportService } from '../../src/export/export.service';
import { NODE_RANGES_SQL } from '../../src/ledger/ledger.repository';
import type { TraceEvent } from '../../src/core/event';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { client, event, producerKey, registerKey } from '../support/factories';
import { call } from '../support/http';

/**
 * The export's page machinery over real HTTP and PostgreSQL, with more
 * entries than one page (1000): proofs built per page from one range read
 * of stored nodes, entries written as JSON text made by PostgreSQL, body
 * digests hashed by PostgreSQL. Every line must be the entry's RFC 8785
 * form, every proof the one the proof endpoint serves for that leaf, every
 * erased body null, and the bundle must verify.
 */

const A = 'pages';
/** Strings JSON escapes differently from one writer to the next. */
const NASTY = ['quote " and \\ backslash', 'controls \u0001\u0007\b\f\n\r\t\u001f end', 'del \u007f é ü ß ∑ 中文', 'line sep \u2028 para sep \u2029', 'astral 😀 𝄞', '</script><!--', ''];
const TOTAL = 2300;

describe('evidence export across pages', () => {
  let t: TestApp;
  let exporter: string;
  let reader: string;
  let jwks: { keys: JWK[] };
  const erased = [1000, 1003, 2001];

  before(async () => {
    t = await startTestApp();
    const admin = await t.token(A, 'admin');
    const writer = await t.token(A, 'events:write');
    exporter = await t.token(A, 'export:create', { sub: 'pages-auditor' });
    reader = await t.token(A, 'audit:read');
    const key = await producerKey('EdDSA');
    await registerKey(t.url, admin, key, 'pages-runtime');
    const c = client(t.url, writer, key);
    const at = (i: number) => new Date(Date.UTC(2026, 10, 25, 10, 0, 0) + i).toISOString();
    for (let sent = 0; sent < TOTAL; ) {
      const n = Math.min(700, TOTAL - sent);
      const evs: TraceEvent[] = Array.from({ length: n }, (_, j) => {
        const i = sent + j;
        return event({
          agent: i % 3 === 0 ? 'sparse-agent' : 'dense-agent',
          time: at(i),
          name: NASTY[i % NASTY.length] || 'empty',
          attributes: { note: NASTY[(i + 3) % NASTY.length], i },
        });
      });
      await c.send(evs);
      sent += n;
    }
    // lawful erasure, as the one audited path will do it: the body row goes, the record stays
    await asSuperuser(t.db, async (db) => {
      await db.query(`SET session_replication_role = replica`);
      await db.query(`DELETE FROM ledger_bodies WHERE tenant_id = $1 AND seq = ANY($2::bigint[])`, [A, erased]);
    });
    jwks = (await call<{ keys: JWK[] }>(t.url, 'GET', '/.well-known/jwks.json')).body;
  });
  after(async () => t.close());

  const exportBundle = async (filter: Record<string, unknown>) => {
    const res = await call<EvidenceBundle>(t.url, 'POST', '/v1/exports', { token: exporter, json: filter });
    assert.equal(res.status, 200, res.text);
    return res;
  };

  const proofOf = async (seq: number, size: number) =>
    (await call<{ path: string[] }>(t.url, 'GET', `/v1/ledger/proofs/inclusion?seq=${seq}&tree_size=${size}`, { token: reader })).body.path;

  for (const [name, filter] of [
    ['every event (a time range: pages of contiguous seqs)', { from: '2026-11-25T10:00:00.000Z', to: '2026-11-25T10:00:05.000Z' }],
    ['one entry in three (an agent: pages with gaps)', { agent: 'sparse-agent' }],
  ] as const) {
    test(`${name}: each line is the entry's JCS, proofs are the served ones, erased bodies are null, the bundle verifies`, async () => {
      const { text, body: b } = await exportBundle(filter);
      const size = b.manifest.checkpoint_size;
      const expectedSeqs = 'agent' in filter ? Array.from({ length: TOTAL }, (_, i) => i).filter((i) => i % 3 === 0).map((i) => i + 2) : Array.from({ length: TOTAL }, (_, i) => i + 2);
      assert.deepEqual(b.entries.map((e) => e.seq), expectedSeqs, 'seq 1 is the key registration, event i is seq i + 2');
      assert.ok(b.entries.length > 1000 / 3, 'more than one page');

      const lines = new Set(text.split('\n').map((l) => l.replace(/,$/, '')));
      for (const e of b.entries) assert.ok(lines.has(entryJcs(e)), `entry ${e.seq} is written as its JCS text`);
      for (const e of b.entries) assert.equal(e.body === null, erased.includes(e.seq), `entry ${e.seq}: body erased or not`);
      // bodies are JCS text: controls arrive escaped (\u0001), U+2028, astral and DEL raw; to_json escapes them all again
      for (const s of ['\u2028', '😀', '\\u0001', '\\\\', '\u007f', '"']) assert.ok(b.entries.some((e) => e.body?.includes(s)), `a body holds ${JSON.stringify(s)}`);

      // proofs at the page boundaries and the ends, against the proof endpoint's
      const picks = b.entries.filter((_, i) => [0, 1, 998, 999, 1000, 1001, 1999, 2000, 2001, b.entries.length - 1].includes(i) || erased.includes(_.seq));
      for (const e of picks) assert.deepEqual(e.inclusion_proof, await proofOf(e.seq, size), `proof of ${e.seq}`);

      const r = await verifyBundle(b, jwks.keys[0]);
      assert.deepEqual(r.failures, []);
      assert.deepEqual(r.erased.map((x) => x.entry).sort((x, y) => x - y), erased.filter((s) => b.entries.some((e) => e.seq === s)));
    });
  }

  test('batches listed by a second pass over the entries (an export naming many batches) are the ones the first pass keeps', async () => {
    const filter = { from: '2026-11-25T10:00:00.000Z', to: '2026-11-25T10:00:05.000Z' };
    const kept = (await exportBundle(filter)).body;
    const service = t.app.get(ExportService);
    const limit = service.batchIdsKept;
    service.batchIdsKept = 2;
    try {
      const listed = (await exportBundle(filter)).body;
      assert.ok(kept.batches.length > 2, 'more batches than kept');
      assert.deepEqual(listed.batches, kept.batches);
      assert.deepEqual((await verifyBundle(listed, jwks.keys[0])).failures, []);
    } finally {
      service.batchIdsKept = limit;
    }
  });

  test('the node range read walks the primary keys (EXPLAIN on this fresh database), never a scan of the tenant', async () => {
    const plan = await asSuperuser(t.db, async (db) =>
      (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${NODE_RANGES_SQL}`, [A, [999, 2000], [999, 2001], [1, 2, 3], [400, 0, 0], [520, 200, 130]])).rows
        .map((r) => r['QUERY PLAN'])
        .join('\n'),
    );
    assert.match(plan, /Index (Only )?Scan using merkle_nodes_pkey/, plan);
    assert.match(plan, /Index (Only )?Scan using ledger_entries_pkey/, plan);
    assert.doesNotMatch(plan, /Seq Scan on (merkle_nodes|ledger_entries)|Hash Join/, plan);
  });

  test('the bounds of a time range aggregate the matching entries, never a backward walk of the ledger from its end', async () => {
    const repo = t.app.get(ExportRepository);
    // with statistics, as a ledger has once autovacuum ran: the planner then estimates the backward walk as cheap
    await asSuperuser(t.db, (db) => db.query('ANALYZE ledger_entries'));
    const explain = (q: { sql: string; params: unknown[] }) =>
      asSuperuser(t.db, async (db) => (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${q.sql}`, q.params)).rows.map((r) => r['QUERY PLAN']).join('\n'));
    for (const filter of [{ from: '2026-11-25T10:00:00.000Z', to: '2026-11-25T10:00:01.000Z' }, { agent: 'sparse-agent', to: '2026-11-25T10:00:01.000Z' }]) {
      const plan = await explain(repo.boundsQuery(A, filter, 1_000_000));
      assert.doesNotMatch(plan, /Backward|InitPlan/, plan);
      const q = repo.boundsQuery(A, filter, 1_000_000);
      const [row] = (await asSuperuser(t.db, (db) => db.query<{ first: string; last: string }>(q.sql, q.params))).rows;
      assert.deepEqual([Number(row.first), Number(row.last)], [2, 1001], 'events 0..999 (seqs 2..1001), the first and last in both');
    }
  });
});
