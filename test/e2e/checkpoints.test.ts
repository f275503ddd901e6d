import assert from 'node:assert/strict';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Client } from 'pg';
import { formatVerifierKey, parseCheckpoint, parseVerifierKey, verifyCheckpoint, type Checkpoint } from '../../src/core/checkpoint';
import { fromHex } from '../../src/core/encoding';
import { jcs } from '../../src/core/jcs';
import { rootFromLeaves, verifyConsistency } from '../../src/core/merkle';
import { genesisChainHash, leafHash, nextChainHash } from '../../src/core/record';
import { CheckpointError } from '../../src/ledger/checkpoint.errors';
import { CheckpointService } from '../../src/ledger/checkpoint.service';
import { LedgerService } from '../../src/ledger/ledger.service';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { client, events, producerKey, registerKey, type TestProducer } from '../support/factories';
import { allEntries, assertProblem, call, head, type HttpResult } from '../support/http';
import { startAppOn, type ExtraApp } from '../support/process';
import { completeMerkleNodes } from '../support/stored';

/**
 * Signed checkpoints over real HTTP and a real PostgreSQL: cut within a
 * second while entries arrive, signed with the key served at
 * /.well-known/jwks.json, linked pairwise by consistency proofs, also with two
 * service instances on one database; and the other side: history rewritten
 * or truncated by the database superuser after a checkpoint was signed is
 * reported by verify, breaks the consistency proof from that checkpoint, and
 * makes the checkpointer refuse to sign.
 */

const A = 'acme';

interface Verify {
  ok: boolean;
  verified: number;
  first_bad_seq?: number;
  reason?: string;
}

interface ListedCheckpoint {
  size: number;
  root_hash: string;
  note: string;
  cosigned_by: string[];
  created_at: string;
}

interface CheckpointList {
  checkpoints: ListedCheckpoint[];
  next_from_size: number | null;
  verifier_key: string;
  checkpointer: { status: string; reason?: string; since?: string };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('signed checkpoints', () => {
  let t: TestApp;
  let ledgerKey: KeyObject;
  let origin: string;
  const keys: Record<string, TestProducer> = {};

  const reader = (tenant: string) => t.token(tenant, 'audit:read');

  async function send(tenant: string, n: number, url = t.url): Promise<number> {
    if (!keys[tenant]) {
      keys[tenant] = await producerKey();
      await registerKey(t.url, await t.token(tenant, 'admin'), keys[tenant]);
    }
    const receipts = await client(url, await t.token(tenant, 'events:write'), keys[tenant]).send(events(n));
    return receipts[receipts.length - 1].seq;
  }

  async function list(tenant: string): Promise<ListedCheckpoint[]> {
    const token = await reader(tenant);
    const out: ListedCheckpoint[] = [];
    for (let from: number | null = 1; from !== null; ) {
      const res: HttpResult<CheckpointList> = await call(t.url, 'GET', `/v1/ledger/checkpoints?from_size=${from}&limit=3`, { token });
      assert.equal(res.status, 200, res.text);
      out.push(...res.body.checkpoints);
      from = res.body.next_from_size;
    }
    return out;
  }

  async function verify(tenant: string): Promise<Verify> {
    const res = await call<Verify>(t.url, 'GET', '/v1/ledger/verify', { token: await reader(tenant) });
    assert.equal(res.status, 200, res.text);
    return res.body;
  }

  function open(note: string, tenant: string): Checkpoint {
    return verifyCheckpoint(note, t.config.env.LEDGER_ORIGIN, ledgerKey, { origin: `${origin}/${tenant}` });
  }

  before(async () => {
    t = await startTestApp({ LEDGER_ORIGIN: 'ledger.example.com/audit' });
    origin = t.config.env.LEDGER_ORIGIN;
    // the key a third party trusts: the JWK published at /.well-known/jwks.json
    const jwks = await call<{ keys: Record<string, string>[] }>(t.url, 'GET', '/.well-known/jwks.json');
    ledgerKey = createPublicKey({ key: jwks.body.keys[0], format: 'jwk' });
  });

  after(async () => {
    await t?.close();
  });

  test('no checkpoint before the first entry: 404 problem; the verifier key is public', async () => {
    assertProblem(await call(t.url, 'GET', '/v1/ledger/checkpoint', { token: await reader('empty') }), 404, 'no_checkpoint');
    assert.equal(await t.app.get(CheckpointService).cutNow('empty'), undefined);
    assert.equal(await t.app.get(CheckpointService).latest('empty'), undefined);
    const res = await call(t.url, 'GET', '/.well-known/agent-ledger-checkpoint-key');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const vkey = res.text.trim();
    assert.equal(vkey, formatVerifierKey(origin, ledgerKey));
    assert.equal(parseVerifierKey(vkey).name, origin);
    assertProblem(await call(t.url, 'GET', '/v1/ledger/checkpoint'), 401, 'unauthenticated');
    assertProblem(await call(t.url, 'GET', '/v1/ledger/checkpoints', { token: await t.token(A, 'events:write') }), 403, 'forbidden');
    assertProblem(await call(t.url, 'GET', '/v1/ledger/checkpoints?limit=0', { token: await reader(A) }), 400, 'validation_failed', ['query.limit']);
  });

  test('checkpoints appear within 1.5 s while entries arrive, signed, increasing, linked by consistency proofs', async () => {
    const token = await reader(A);
    const seen: { at: number; size: number; note: string }[] = [];
    let sending = true;
    const poller = (async () => {
      while (sending) {
        const res = await call(t.url, 'GET', '/v1/ledger/checkpoint', { token });
        if (res.status === 200) {
          const size = parseCheckpoint(res.text.slice(0, res.text.indexOf('\n\n') + 1)).size;
          if (seen.at(-1)?.size !== size) seen.push({ at: Date.now(), size, note: res.text });
        }
        await sleep(25);
      }
    })();
    const sent: { at: number; seq: number }[] = [];
    const start = Date.now();
    while (Date.now() - start < 4000) {
      const seq = await send(A, 1 + (sent.length % 7));
      sent.push({ at: Date.now(), seq });
      await sleep(150);
    }
    await sleep(1600);
    sending = false;
    await poller;

    for (const s of sent) {
      const first = seen.find((c) => c.size >= s.seq);
      assert.ok(first, `no checkpoint ever covered seq ${s.seq}`);
      assert.ok(first.at - s.at <= 1500, `seq ${s.seq} was covered after ${first.at - s.at} ms`);
    }
    assert.ok(seen.length >= 3, `only ${seen.length} checkpoints seen`);
    assert.equal(seen.at(-1)!.size, sent.at(-1)!.seq);

    const headA = await head(t.url, token);
    const stored = await list(A);
    assert.ok(stored.length >= seen.length);
    assert.equal(stored.at(-1)!.size, headA.tree_size);
    assert.equal(stored.at(-1)!.root_hash, headA.root_hash);
    const leaves = (await allEntries(t.url, token)).map((e) => fromHex(e.leaf_hash));
    for (let i = 0; i < stored.length; i++) {
      const cp = open(stored[i].note, A);
      assert.equal(cp.size, stored[i].size);
      assert.equal(cp.rootHash.toString('hex'), stored[i].root_hash);
      assert.deepEqual(cp.rootHash, rootFromLeaves(leaves.slice(0, cp.size)), `checkpoint ${cp.size} root`);
      assert.ok(!Number.isNaN(Date.parse(stored[i].created_at)));
      if (i === 0) continue;
      const prev = open(stored[i - 1].note, A);
      assert.ok(prev.size < cp.size, 'sizes strictly increase');
      const proof = await call<{ path: string[] }>(t.url, 'GET', `/v1/ledger/proofs/consistency?from_size=${prev.size}&to_size=${cp.size}`, { token });
      assert.ok(verifyConsistency(prev.size, cp.size, proof.body.path.map(fromHex), prev.rootHash, cp.rootHash), `${prev.size} -> ${cp.size}`);
    }
    // what the served note says is what the list says
    for (const s of seen) assert.ok(stored.some((c) => c.note === s.note));

    const v = await verify(A);
    assert.equal(v.ok, true, JSON.stringify(v));
  });

  test('cutNow and latest: the API the export uses', async () => {
    const svc = t.app.get(CheckpointService);
    const seq = await send('cut', 5);
    const cp = await svc.cutNow('cut');
    assert.ok(cp);
    assert.equal(cp.size, seq);
    assert.deepEqual(open(cp.note, 'cut').rootHash, cp.rootHash);
    // nothing new: the same checkpoint
    assert.deepEqual(await svc.cutNow('cut'), cp);
    assert.deepEqual(await svc.latest('cut'), cp);
    const served = await call(t.url, 'GET', '/v1/ledger/checkpoint', { token: await reader('cut') });
    assert.match(served.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(served.text, cp.note);
    const list = await call<CheckpointList>(t.url, 'GET', '/v1/ledger/checkpoints', { token: await reader('cut') });
    assert.equal(list.body.verifier_key, formatVerifierKey(origin, ledgerKey));
    assert.deepEqual(list.body.checkpointer, { status: 'ok' });
    // another tenant's checkpoints are not listed
    assert.ok(list.body.checkpoints.every((c) => c.note.startsWith(`${origin}/cut\n`)));
  });

  test('two service instances on one database sign one linked sequence of checkpoints', async () => {
    const second: ExtraApp = await startAppOn(t.db, t.config);
    try {
      await send('duo', 1);
      const start = Date.now();
      const both: Promise<number>[] = [];
      while (Date.now() - start < 3000) {
        both.push(send('duo', 3, t.url), send('duo', 4, second.url));
        await Promise.all(both.splice(0));
        await sleep(100);
      }
      await Promise.all([t.app.get(CheckpointService).cutNow('duo'), second.app.get(CheckpointService).cutNow('duo')]);
    } finally {
      await second.close();
    }
    const token = await reader('duo');
    const stored = await list('duo');
    assert.ok(stored.length >= 3, `${stored.length} checkpoints`);
    assert.equal(stored.at(-1)!.size, (await head(t.url, token)).tree_size);
    for (let i = 1; i < stored.length; i++) {
      const [prev, cp] = [open(stored[i - 1].note, 'duo'), open(stored[i].note, 'duo')];
      const proof = await call<{ path: string[] }>(t.url, 'GET', `/v1/ledger/proofs/consistency?from_size=${prev.size}&to_size=${cp.size}`, { token });
      assert.ok(verifyConsistency(prev.size, cp.size, proof.body.path.map(fromHex), prev.rootHash, cp.rootHash));
    }
    assert.equal((await verify('duo')).ok, true);
  });

  test('after a restart, entries that were never checkpointed get a checkpoint without new appends', async () => {
    const tenant = 'restarted';
    const size = await send(tenant, 4);
    await t.app.get(CheckpointService).cutNow(tenant);
    await sleep(1200); // this instance's timer has seen the tenant and has nothing left to cut
    // as if the process had died between the commit and the cut: no checkpoint for these entries
    await asSuperuser(t.db, async (c: Client) => {
      await c.query(`SET session_replication_role = replica`);
      await c.query(`DELETE FROM checkpoints WHERE tenant_id = $1`, [tenant]);
    });
    const second: ExtraApp = await startAppOn(t.db, t.config);
    try {
      let stored: ListedCheckpoint[] = [];
      for (let i = 0; i < 30 && stored.length === 0; i++) {
        await sleep(100);
        stored = await list(tenant);
      }
      assert.deepEqual(stored.map((c) => c.size), [size]);
      assert.equal(open(stored[0].note, tenant).size, size);
    } finally {
      await second.close();
    }
  });

  describe('history changed by the superuser after a checkpoint', () => {
    /** Rewrites entry `seq`'s record (its received_at), as the superuser with the triggers off. */
    async function rewrite(tenant: string, seq: number, recompute: boolean): Promise<void> {
      await asSuperuser(t.db, async (c: Client) => {
        await c.query(`SET session_replication_role = replica`);
        const { rows } = await c.query<{ seq: number; record: string; leaf_hash: Buffer }>(
          `SELECT seq::int AS seq, record, leaf_hash FROM ledger_entries WHERE tenant_id = $1 ORDER BY seq`,
          [tenant],
        );
        const rec = JSON.parse(rows[seq - 1].record) as { received_at: string };
        rec.received_at = new Date(Date.parse(rec.received_at) - 3_600_000).toISOString();
        const text = jcs(rec);
        await c.query(`UPDATE ledger_entries SET record = $3, received_at = $4 WHERE tenant_id = $1 AND seq = $2`, [
          tenant,
          seq,
          text,
          rec.received_at,
        ]);
        if (!recompute) return;
        // a careful forger: leaf, chain and every Merkle node recomputed, so the ledger is self-consistent again
        rows[seq - 1].record = text;
        let chain = genesisChainHash(tenant);
        const leaves: Buffer[] = [];
        for (const r of rows) {
          const leaf = leafHash(r.record);
          chain = nextChainHash(chain, leaf);
          leaves.push(leaf);
          if (r.seq >= seq) {
            await c.query(`UPDATE ledger_entries SET leaf_hash = $3, chain_hash = $4 WHERE tenant_id = $1 AND seq = $2`, [
              tenant,
              r.seq,
              leaf,
              chain,
            ]);
          }
        }
        await c.query(`DELETE FROM merkle_nodes WHERE tenant_id = $1`, [tenant]);
        for (const n of completeMerkleNodes(leaves)) {
          const [level, idx, hash] = n.split(':');
          await c.query(`INSERT INTO merkle_nodes (tenant_id, level, idx, hash) VALUES ($1, $2, $3, $4)`, [
            tenant,
            Number(level),
            Number(idx),
            Buffer.from(hash, 'hex'),
          ]);
        }
      });
    }

    async function consistencyFrom(tenant: string, cp: { size: number; rootHash: Buffer }): Promise<boolean> {
      const token = await reader(tenant);
      const h = await head(t.url, token);
      const proof = await call<{ path: string[] }>(t.url, 'GET', `/v1/ledger/proofs/consistency?from_size=${cp.size}&to_size=${h.tree_size}`, {
        token,
      });
      assert.equal(proof.status, 200, proof.text);
      return verifyConsistency(cp.size, h.tree_size, proof.body.path.map(fromHex), cp.rootHash, fromHex(h.root_hash));
    }

    test('a careful rewrite: verify names it through the checkpoint, the proof from it fails, the checkpointer refuses', async () => {
      const svc = t.app.get(CheckpointService);
      const tenant = 'rewritten';
      await send(tenant, 10);
      const early = (await svc.cutNow(tenant))!; // size 11: the key registration and 10 events
      await send(tenant, 12);
      const signed = (await svc.cutNow(tenant))!; // size 23
      assert.deepEqual([early.size, signed.size], [11, 23]);
      assert.equal((await verify(tenant)).ok, true);

      await rewrite(tenant, 15, true);

      // the ledger alone is self-consistent again: only the checkpoint shows the rewrite
      const alone = await t.app.get(LedgerService).verify(tenant, 1);
      assert.equal(alone.ok, true, JSON.stringify(alone));
      const v = await verify(tenant);
      assert.equal(v.ok, false, JSON.stringify(v));
      assert.equal(v.first_bad_seq, 12, JSON.stringify(v)); // entries 1..11 still match the earlier checkpoint
      assert.match(v.reason ?? '', /checkpoint of size 23 .*12\.\.23/);
      const before = (await list(tenant)).map((c) => c.size);
      assert.ok(before.includes(11) && before.at(-1) === 23, before.join());

      // entries keep arriving: the proof from the signed checkpoint to the new head fails
      await send(tenant, 3);
      assert.equal(await consistencyFrom(tenant, signed), false, 'the consistency proof from the signed checkpoint must fail');
      assert.equal(await consistencyFrom(tenant, early), true, 'entries before the rewrite are still consistent');

      // the checkpointer refuses, on its own timer and on demand
      await sleep(1500);
      await assert.rejects(svc.cutNow(tenant), (err: unknown) => err instanceof CheckpointError && err.code === 'checkpoint_refused');
      assert.deepEqual((await list(tenant)).map((c) => c.size), before);
      const state = await call<CheckpointList>(t.url, 'GET', '/v1/ledger/checkpoints', { token: await reader(tenant) });
      assert.equal(state.body.checkpointer.status, 'refusing');
      assert.match(state.body.checkpointer.reason ?? '', /does not extend the checkpoint of size 23/);
      // the latest served checkpoint is still the last one signed before the rewrite
      const served = await call(t.url, 'GET', '/v1/ledger/checkpoint', { token: await reader(tenant) });
      assert.equal(open(served.text, tenant).size, 23);
      // other tenants are not affected
      assert.equal((await verify(A)).ok, true);
    });

    test('a crude rewrite (record only) is named by the ledger checks, the checkpoint agrees it is bad', async () => {
      const svc = t.app.get(CheckpointService);
      const tenant = 'crude';
      await send(tenant, 20);
      const signed = (await svc.cutNow(tenant))!;
      await rewrite(tenant, 7, false);
      const v = await verify(tenant);
      assert.equal(v.ok, false);
      assert.equal(v.first_bad_seq, 7, JSON.stringify(v));
      assert.equal(signed.size, 21);
    });

    test('truncation after a checkpoint: verify names head + 1 even when the batch rows are gone too', async () => {
      const svc = t.app.get(CheckpointService);
      const tenant = 'truncated';
      await send(tenant, 9);
      await send(tenant, 8);
      const signed = (await svc.cutNow(tenant))!;
      assert.equal(signed.size, 18);
      // remove the last batch (entries 11..18) completely, with its Merkle nodes
      await asSuperuser(t.db, async (c: Client) => {
        await c.query(`SET session_replication_role = replica`);
        await c.query(`DELETE FROM ledger_entries WHERE tenant_id = $1 AND seq > 10`, [tenant]);
        await c.query(`DELETE FROM ledger_bodies WHERE tenant_id = $1 AND seq > 10`, [tenant]);
        await c.query(`DELETE FROM ledger_batches WHERE tenant_id = $1 AND first_seq > 10`, [tenant]);
        await c.query(`DELETE FROM merkle_nodes WHERE tenant_id = $1 AND (idx + 1) * (1::bigint << level) > 10`, [tenant]);
      });
      const alone = await t.app.get(LedgerService).verify(tenant, 1);
      assert.equal(alone.ok, true, JSON.stringify(alone));
      const v = await verify(tenant);
      assert.equal(v.ok, false, JSON.stringify(v));
      assert.equal(v.first_bad_seq, 11);
      assert.match(v.reason ?? '', /checkpoint of size 18/);
      await assert.rejects(svc.cutNow(tenant), (err: unknown) => err instanceof CheckpointError && /removed/.test(err.message));
    });
  });
});
