import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import canonicalize from 'canonicalize';
import type { TraceEvent } from '../../src/core/event';
import { startTestApp, type TestApp } from '../support/app';
import { event, events, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { allEntries, assertProblem, call, head, type Entry } from '../support/http';

/** Independent of src/: the ledger format of DESIGN.md §3, recomputed here. */
const sha256 = (...parts: (Buffer | string)[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const leafHash = (record: string) => sha256(Buffer.from([0x00]), Buffer.from(record, 'utf8'));
const b64u = (b: Buffer) => b.toString('base64url');

/** RFC 9162 §2.1.1 Merkle Tree Hash. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256('');
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(Buffer.from([0x01]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

const RECORD_KEYS = [
  'agent',
  'batch',
  'digest',
  'id',
  'kid',
  'name',
  'parent_span_id',
  'received_at',
  'seq',
  'session_id',
  'span_id',
  'tenant',
  'time',
  'trace_id',
  'type',
  'v',
];

const TENANT = 'acme.eu-1';

interface Page {
  entries: Entry[];
  next_from_seq: number | null;
}

describe('GET /v1/ledger/entries and the ledger format', () => {
  let t: TestApp;
  let key: TestProducer;
  let reader: string;
  let writer: string;
  let sent: { events: TraceEvent[]; signature: string }[];

  before(async () => {
    t = await startTestApp();
    key = await producerKey();
    await registerKey(t.url, await t.token(TENANT, 'admin'), key);
    reader = await t.token(TENANT, 'audit:read');
    writer = await t.token(TENANT, 'events:write');
    const sparse = event({ time: '2026-11-25T12:00:00.123456+02:00' });
    delete (sparse as Partial<TraceEvent>).session_id;
    delete (sparse as Partial<TraceEvent>).name;
    delete (sparse as Partial<TraceEvent>).parent_span_id;
    sent = [
      (await signedBatch([event(), sparse, event({ parent_span_id: 'aaaaaaaaaaaaaaaa' })], key)) as { events: TraceEvent[]; signature: string },
      (await signedBatch(events(2), key)) as { events: TraceEvent[]; signature: string },
    ];
    for (const body of sent) {
      const res = await call(t.url, 'POST', '/v1/events', { token: writer, json: body });
      assert.equal(res.status, 201, res.text);
    }
  });
  after(() => t.close());

  const page = (query: string) => call<Page>(t.url, 'GET', `/v1/ledger/entries${query}`, { token: reader });

  describe('pagination', () => {
    test('limit and next_from_seq walk the ledger in seq order, without gaps or repeats', async () => {
      const seen: number[][] = [];
      const nexts: (number | null)[] = [];
      let from: number | null = 1;
      while (from !== null) {
        const res: Awaited<ReturnType<typeof page>> = await page(`?from_seq=${from}&limit=2`);
        assert.equal(res.status, 200, res.text);
        seen.push(res.body.entries.map((e) => e.seq));
        nexts.push(res.body.next_from_seq);
        from = res.body.next_from_seq;
      }
      assert.deepEqual(seen, [
        [1, 2],
        [3, 4],
        [5, 6],
      ]);
      assert.deepEqual(nexts, [3, 5, null]);
    });

    test('without parameters: from seq 1, every entry of a small ledger, next_from_seq null', async () => {
      const res = await page('');
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(
        res.body.entries.map((e) => e.seq),
        [1, 2, 3, 4, 5, 6],
      );
      assert.equal(res.body.next_from_seq, null);
    });

    test('from_seq in the middle, and past the end', async () => {
      const mid = await page('?from_seq=4&limit=2');
      assert.deepEqual([mid.body.entries.map((e) => e.seq), mid.body.next_from_seq], [[4, 5], 6]);
      const last = await page('?from_seq=6');
      assert.deepEqual([last.body.entries.map((e) => e.seq), last.body.next_from_seq], [[6], null]);
      const beyond = await page('?from_seq=7');
      assert.equal(beyond.status, 200);
      assert.deepEqual(beyond.body, { entries: [], next_from_seq: null });
    });

    test('limit 1000 is allowed', async () => {
      const res = await page('?limit=1000');
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.entries.length, 6);
    });

    for (const [query, field] of [
      ['?limit=1001', 'query.limit'],
      ['?limit=0', 'query.limit'],
      ['?limit=-1', 'query.limit'],
      ['?limit=ten', 'query.limit'],
      ['?limit=2.5', 'query.limit'],
      ['?from_seq=0', 'query.from_seq'],
      ['?from_seq=abc', 'query.from_seq'],
      ['?cursor=abc', 'query.cursor'],
      ['?from_seq=1&lmit=5', 'query.lmit'],
    ] as const) {
      test(`${query}: 400 naming ${field}`, async () => {
        assertProblem(await page(query), 400, 'validation_failed', [field]);
      });
    }
  });

  describe('records and hashes, recomputed independently', () => {
    let entries: Entry[];
    before(async () => {
      entries = await allEntries(t.url, reader);
      assert.equal(entries.length, 6);
    });

    test('each record is the exact RFC 8785 text of a v1 record with every field', async () => {
      for (const e of entries) {
        const rec = JSON.parse(e.record) as Record<string, unknown>;
        assert.equal(e.record, canonicalize(rec), `seq ${e.seq}: not canonical`);
        assert.deepEqual(Object.keys(rec).sort(), RECORD_KEYS);
        assert.equal(rec.v, 1);
        assert.equal(rec.tenant, TENANT);
        assert.equal(rec.seq, e.seq);
        assert.match(rec.received_at as string, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      }
    });

    test('leaf_hash = SHA-256(0x00 || record)', async () => {
      for (const e of entries) assert.equal(e.leaf_hash, leafHash(e.record).toString('hex'), `seq ${e.seq}`);
    });

    test('chain hashes chain from SHA-256("agent-ledger:v1:" + tenant), and the head is the last', async () => {
      let chain = sha256(`agent-ledger:v1:${TENANT}`);
      for (const e of entries) {
        chain = sha256(chain, Buffer.from(e.leaf_hash, 'hex'));
        assert.equal(e.chain_hash, chain.toString('hex'), `seq ${e.seq}`);
      }
      const h = await head(t.url, reader);
      assert.deepEqual([h.tree_size, h.chain_hash], [entries.length, chain.toString('hex')]);
    });

    test('the head root_hash is the RFC 9162 Merkle tree hash of the leaf hashes', async () => {
      const h = await head(t.url, reader);
      assert.equal(h.root_hash, mth(entries.map((e) => Buffer.from(e.leaf_hash, 'hex'))).toString('hex'));
    });

    test("an empty tenant's head is size 0, the genesis chain hash and the empty-tree root", async () => {
      const h = await head(t.url, await t.token('nobody-yet', 'audit:read'));
      assert.deepEqual(h, {
        tree_size: 0,
        chain_hash: sha256('agent-ledger:v1:nobody-yet').toString('hex'),
        root_hash: sha256('').toString('hex'),
      });
    });

    test("producer records carry the event's fields, its digest, the batch id and the producer kid", async () => {
      const bySeq = new Map(entries.map((e) => [e.seq, JSON.parse(e.record) as Record<string, unknown>]));
      let seq = 2; // seq 1 is the key registration
      for (const body of sent) {
        const batch = b64u(sha256(body.signature));
        for (const ev of body.events) {
          const rec = bySeq.get(seq++)!;
          assert.deepEqual(
            {
              id: rec.id,
              trace_id: rec.trace_id,
              span_id: rec.span_id,
              parent_span_id: rec.parent_span_id,
              session_id: rec.session_id,
              type: rec.type,
              name: rec.name,
              agent: rec.agent,
              time: rec.time,
              kid: rec.kid,
              batch: rec.batch,
              digest: rec.digest,
            },
            {
              id: ev.id,
              trace_id: ev.trace_id,
              span_id: ev.span_id,
              parent_span_id: ev.parent_span_id ?? null,
              session_id: ev.session_id ?? null,
              type: ev.type,
              name: ev.name ?? null,
              agent: ev.agent,
              time: ev.time,
              kid: key.kid,
              batch,
              digest: b64u(sha256(canonicalize(ev)!)),
            },
          );
        }
      }
    });

    test("absent optional fields are null, and time is the event's own string", async () => {
      const sparse = sent[0].events[1];
      const rec = entries.map((e) => JSON.parse(e.record) as Record<string, unknown>).find((r) => r.id === sparse.id)!;
      assert.deepEqual([rec.session_id, rec.name, rec.parent_span_id], [null, null, null]);
      assert.equal(rec.time, '2026-11-25T12:00:00.123456+02:00');
    });

    test('the key registration entry is the service\'s own, with kid "ledger"', async () => {
      const rec = JSON.parse(entries[0].record) as Record<string, unknown>;
      assert.deepEqual([rec.type, rec.kid, rec.name], ['ledger.key_registered', 'ledger', key.kid]);
    });
  });

  describe('metrics', () => {
    const ingested = async () => {
      const res = await call(t.url, 'GET', '/metrics');
      assert.equal(res.status, 200);
      const m = /^agent_ledger_ingested_events_total(?:\{\})? (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(res.text);
      assert.ok(m, 'agent_ledger_ingested_events_total is exposed');
      return Number(m[1]);
    };

    test('agent_ledger_ingested_events_total grows by the events appended, not by refusals', async () => {
      const before = await ingested();
      const body = await signedBatch(events(3), key);
      assert.equal((await call(t.url, 'POST', '/v1/events', { token: writer, json: body })).status, 201);
      assert.equal(await ingested(), before + 3);

      const refused = await call(t.url, 'POST', '/v1/events', { token: writer, json: { ...body, signature: 'garbage' } });
      assert.equal(refused.status, 400);
      assert.equal(await ingested(), before + 3);
    });

    test('agent_ledger_ingested_events_total does not count a resent batch, which appends nothing', async () => {
      const body = await signedBatch(events(2), key);
      assert.equal((await call(t.url, 'POST', '/v1/events', { token: writer, json: body })).status, 201);
      const before = await ingested();
      const size = (await head(t.url, reader)).tree_size;
      assert.equal((await call(t.url, 'POST', '/v1/events', { token: writer, json: body })).status, 201);
      assert.equal((await head(t.url, reader)).tree_size, size);
      assert.equal(await ingested(), before);
    });
  });
});
