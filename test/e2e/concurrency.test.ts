import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newTraceId, type Receipt } from '../../src/client/ledger-client';
import type { TraceEvent } from '../../src/core/event';
import { rootFromLeaves } from '../../src/core/merkle';
import { startTestApp, type TestApp } from '../support/app';
import { event, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { startAppOn, type ExtraApp } from '../support/process';
import { completeMerkleNodes, readStoredLedger, type StoredRow } from '../support/stored';
import { rng } from '../support/random';

/**
 * Many producers at once over real HTTP, through the group-commit sequencer
 * (one writer per tenant) and, across two app instances on one database,
 * through the per-tenant advisory lock. Whatever the interleaving: each
 * tenant's seqs are exactly 1..N, every receipt is what was stored, every
 * event is stored once, the Merkle nodes are the RFC 9162 ones, verify is ok.
 */

const MAX_GROUP = 40;

const TYPES = ['model.call', 'tool.call', 'tool.result', 'validation', 'retry'] as const;

function batchOf(n: number, agent: string): TraceEvent[] {
  const trace_id = newTraceId();
  return Array.from({ length: n }, (_, i) => event({ trace_id, agent, type: TYPES[i % TYPES.length] }));
}

interface Sent {
  events: TraceEvent[];
  receipts: Receipt[];
}

interface Producer {
  url: string;
  token: string;
  key: TestProducer;
  batches: TraceEvent[][];
}

async function post(url: string, token: string, body: unknown): Promise<Receipt[]> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  return (JSON.parse(text) as { receipts: Receipt[] }).receipts;
}

/** Awaits every promise, then throws the first failure: no request is left running behind a failed test. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/**
 * Sends a producer's batches with `inflight` requests at a time. Every
 * `dupEvery`-th batch is also posted a second time concurrently (to `dupUrl`
 * when given, i.e. the other instance): both must get the same receipts.
 * `stop.now` ends every producer early once one has failed.
 */
async function produce(p: Producer, inflight: number, dupEvery: number, stop: { now: boolean }, dupUrl = p.url): Promise<Sent[]> {
  const out: Sent[] = new Array<Sent>(p.batches.length);
  let next = 0;
  const worker = async () => {
    try {
      for (let i = next++; i < p.batches.length && !stop.now; i = next++) {
        const body = await signedBatch(p.batches[i], p.key);
        if (i % dupEvery === dupEvery - 1) {
          const [a, b] = await settleAll([post(p.url, p.token, body), post(dupUrl, p.token, body)]);
          assert.deepEqual(b, a, 'the same batch sent twice at once got different receipts');
          out[i] = { events: p.batches[i], receipts: a };
        } else {
          out[i] = { events: p.batches[i], receipts: await post(p.url, p.token, body) };
        }
      }
    } catch (err) {
      stop.now = true;
      throw err;
    }
  };
  await settleAll(Array.from({ length: inflight }, worker));
  return out;
}

type Row = StoredRow;

/** Everything the ledger holds for a tenant must agree with what the producers were told. */
async function checkTenant(
  t: TestApp,
  urls: string[],
  tenant: string,
  sent: Sent[],
  serviceEntries: number,
): Promise<{ rows: Row[] }> {
  const { rows, nodes } = await readStoredLedger(t.db, tenant);

  const events = sent.flatMap((s) => s.events);
  const N = serviceEntries + events.length;
  assert.equal(rows.length, N, `${tenant}: ${rows.length} entries stored for ${N} appended`);
  assert.deepEqual(
    rows.map((r) => r.seq),
    Array.from({ length: N }, (_, i) => i + 1),
    `${tenant}: seqs are not exactly 1..N`,
  );
  assert.ok(rows.every((r) => r.has_body), `${tenant}: an entry has no body`);

  // every event once, every receipt as stored, a batch's events consecutive and in order
  const bySeq = new Map(rows.map((r) => [r.seq, r]));
  const producerIds = rows.filter((r) => !r.type.startsWith('ledger.')).map((r) => r.event_id);
  assert.equal(producerIds.length, events.length);
  assert.deepEqual(new Set(producerIds), new Set(events.map((e) => e.id.toLowerCase())));
  for (const s of sent) {
    assert.equal(s.receipts.length, s.events.length);
    s.receipts.forEach((r, i) => {
      assert.equal(r.id, s.events[i].id);
      const row = bySeq.get(r.seq);
      assert.ok(row, `${tenant}: receipt seq ${r.seq} is not stored`);
      assert.deepEqual([row.event_id, row.leaf, row.chain], [r.id.toLowerCase(), r.leaf_hash, r.chain_hash], `${tenant} seq ${r.seq}`);
      if (i > 0) assert.equal(r.seq, s.receipts[i - 1].seq + 1, `${tenant}: a batch was interleaved with another`);
      assert.equal(row.batch, s.receipts.length ? bySeq.get(s.receipts[0].seq)!.batch : '');
    });
  }

  // the stored Merkle nodes are exactly the complete RFC 9162 subtrees over the leaves
  const leaves: Buffer[] = rows.map((r) => Buffer.from(r.leaf, 'hex'));
  const expected = completeMerkleNodes(leaves);
  assert.deepEqual(nodes, expected, `${tenant}: stored Merkle nodes differ from the tree over the leaf hashes`);

  const reader = await t.token(tenant, 'audit:read');
  for (const url of urls) {
    const get = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${reader}` } });
      assert.equal(res.status, 200);
      return (await res.json()) as T;
    };
    assert.deepEqual(await get('/v1/ledger/head'), {
      tree_size: N,
      chain_hash: rows[N - 1].chain,
      root_hash: rootFromLeaves(leaves).toString('hex'),
    });
    assert.deepEqual(await get('/v1/ledger/verify'), { ok: true, verified: N, from_seq: 1, to_seq: N });
  }
  return { rows };
}

describe('concurrent ingest', () => {
  let t: TestApp;
  let second: ExtraApp | undefined;

  before(async () => {
    t = await startTestApp({ INGEST_MAX_GROUP_EVENTS: String(MAX_GROUP) });
  });
  after(async () => {
    await second?.close();
    await t?.close();
  });

  test('8 producers × 25 batches of 1-20 events on two tenants: gap-free, receipts as stored, group commits bounded', async () => {
    const rand = rng(20261125);
    const tenants = ['acme', 'globex'];
    const producers: (Producer & { tenant: string })[] = [];
    for (let c = 0; c < 8; c++) {
      const tenant = tenants[c % 2];
      const key = await producerKey(c % 4 === 3 ? 'ES256' : 'EdDSA');
      await registerKey(t.url, await t.token(tenant, 'admin'), key, `producer-${c}`);
      producers.push({
        tenant,
        url: t.url,
        token: await t.token(tenant, 'events:write'),
        key,
        batches: Array.from({ length: 25 }, () => batchOf(1 + Math.floor(rand() * 20), `agent-${c}`)),
      });
    }
    const stop = { now: false };
    const sent = await settleAll(producers.map((p) => produce(p, 2, 9, stop)));

    for (const tenant of tenants) {
      const mine = sent.filter((_, i) => producers[i].tenant === tenant).flat();
      const { rows } = await checkTenant(t, [t.url], tenant, mine, 4);
      // group commit really happened, and no group exceeded the configured size
      const perTx = new Map<string, { events: number; batches: Set<string> }>();
      for (const r of rows.filter((r) => !r.type.startsWith('ledger.'))) {
        const g = perTx.get(r.tx) ?? { events: 0, batches: new Set<string>() };
        g.events++;
        g.batches.add(r.batch);
        perTx.set(r.tx, g);
      }
      const groups = [...perTx.values()];
      assert.ok(groups.some((g) => g.batches.size > 1), `${tenant}: no transaction ever carried more than one batch`);
      assert.ok(Math.max(...groups.map((g) => g.events)) <= MAX_GROUP, `${tenant}: a group exceeded ${MAX_GROUP} events`);
    }
  });

  test('two service instances on one database ingesting into the same tenant: one gap-free chain', async () => {
    second = await startAppOn(t.db, t.config);
    const tenant = 'initech';
    const rand = rng(7);
    const producers: Producer[] = [];
    for (let c = 0; c < 6; c++) {
      const key = await producerKey(c === 5 ? 'ES256' : 'EdDSA');
      // registrations go through both instances too
      const url = c % 2 ? second.url : t.url;
      await registerKey(url, await t.token(tenant, 'admin'), key, `producer-${c}`);
      producers.push({
        url,
        token: await t.token(tenant, 'events:write'),
        key,
        batches: Array.from({ length: 15 }, () => batchOf(1 + Math.floor(rand() * 20), `agent-${c}`)),
      });
    }
    // every 5th batch is posted to both instances at the same moment
    const stop = { now: false };
    const sent = await settleAll(producers.map((p) => produce(p, 3, 5, stop, p.url === t.url ? second!.url : t.url)));
    const { rows } = await checkTenant(t, [t.url, second.url], tenant, sent.flat(), 6);

    // the two instances really interleaved along the chain (so the lock was contended)
    const owner = new Map<string, string>();
    producers.forEach((p, i) =>
      sent[i].forEach((s, j) => {
        if (j % 5 !== 4) owner.set(rows[s.receipts[0].seq - 1].tx, p.url);
      }),
    );
    let switches = 0;
    let last = '';
    for (const r of rows) {
      const o = owner.get(r.tx);
      if (o && last && o !== last) switches++;
      if (o) last = o;
    }
    assert.ok(switches >= 4, `the instances took turns only ${switches} times`);

    // and they keep appending to one chain afterwards, alternately
    const p = producers[0];
    const more: Sent[] = [];
    for (let i = 0; i < 4; i++) {
      const url = i % 2 ? second.url : t.url;
      const evs = batchOf(3, 'agent-after');
      more.push({ events: evs, receipts: await post(url, p.token, await signedBatch(evs, p.key)) });
      assert.deepEqual(
        more[i].receipts.map((r) => r.seq),
        [rows.length + 3 * i + 1, rows.length + 3 * i + 2, rows.length + 3 * i + 3],
      );
    }
    await checkTenant(t, [t.url, second.url], tenant, [...sent.flat(), ...more], 6);
  });
});
