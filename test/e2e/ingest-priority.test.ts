import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from 'pg';
import { newTraceId, type LedgerClient } from '../../src/client/ledger-client';
import type { TraceEvent } from '../../src/core/event';
import { LedgerService } from '../../src/ledger/ledger.service';
import { startTestApp, type TestApp } from '../support/app';
import { client, event, events, producerKey, registerKey, signedBatch, type TestProducer } from '../support/factories';
import { sleep, waitFor, watch } from '../support/async';
import { call, type HttpResult } from '../support/http';

/**
 * Ingest first, end to end. Tenant A's commit is held at the ledger's
 * per-tenant writer lock (taken here from a superuser connection, as another
 * service process would hold it), so the sequencer stays busy: ingest is
 * saturated. Other tenants still commit and are projected at once; their
 * policy evaluation waits until INGEST_PRIORITY_MAX_MS passed or A's commit
 * goes through. With INGEST_PRIORITY_MAX_LAG=0 nothing waits.
 *
 * The timing assertions are one-sided: a follower deferred from the moment
 * its tenant's events were sent cannot catch up before MAX_MS after that
 * moment on its own, so catching up earlier proves something ended the
 * deferral, and catching up later proves it was deferred all along.
 */

const MAX_MS = 5000;
const ROOT = process.env.TEST_ROOT ?? resolve(__dirname, '..', '..', '..');

function policiesDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'agent-ledger-policies-'));
  copyFileSync(join(ROOT, 'policies', 'support-agent.yaml'), join(dir, 'support-agent.yaml'));
  return dir;
}

/** The seconds a follower spent deferred, from GET /metrics (0 when never counted). */
async function deferredSeconds(url: string, follower: 'projector' | 'evaluator'): Promise<number> {
  const res = await call(url, 'GET', '/metrics');
  assert.equal(res.status, 200);
  const m = new RegExp(`^agent_ledger_follower_deferred_seconds_total\\{follower="${follower}"\\} (\\S+)$`, 'm').exec(res.text);
  return m ? Number(m[1]) : 0;
}

interface Tenant {
  name: string;
  key: TestProducer;
  writer: LedgerClient;
  writerToken: string;
  reader: string;
}

interface Progress {
  head: number;
  /** query_cursors.seq: what the read models hold. */
  projected: number;
  /** policy_cursors.seq: what the evaluator has walked past. */
  evaluated: number;
  violations: number;
}

/** One app, its superuser view, and the lock that stalls a tenant's commits. */
class Harness {
  t!: TestApp;
  su!: Client;
  private holder: Client | undefined;
  private dir = policiesDir();

  async start(env: Record<string, string>): Promise<void> {
    this.t = await startTestApp({ POLICIES_DIR: this.dir, POLICY_EVALUATOR: 'true', POLICY_POLL_MS: '200', ...env });
    this.su = new Client({ connectionString: this.t.db.ownerUrl });
    await this.su.connect();
  }

  async stop(): Promise<void> {
    await this.holder?.end().catch(() => undefined);
    await this.su?.end();
    await this.t?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  get ledger(): LedgerService {
    return this.t.app.get(LedgerService);
  }

  async tenant(name: string): Promise<Tenant> {
    const key = await producerKey();
    await registerKey(this.t.url, await this.t.token(name, 'admin'), key);
    const writerToken = await this.t.token(name, 'events:write');
    return { name, key, writer: client(this.t.url, writerToken, key), writerToken, reader: await this.t.token(name, 'audit:read') };
  }

  async progress(tenant: string): Promise<Progress> {
    const { rows } = await this.su.query(
      `SELECT (SELECT coalesce(max(seq), 0) FROM ledger_entries WHERE tenant_id = $1)::int AS head,
              coalesce((SELECT seq FROM query_cursors WHERE tenant_id = $1), 0)::int AS projected,
              coalesce((SELECT seq FROM policy_cursors WHERE tenant_id = $1), 0)::int AS evaluated,
              (SELECT count(*) FROM violations WHERE tenant_id = $1)::int AS violations`,
      [tenant],
    );
    return rows[0] as Progress;
  }

  /** Until the tenant's read models and policy cursor are at its head (the policy set announced: head ≥ 2). */
  async settled(...tenants: string[]): Promise<void> {
    for (const name of tenants) {
      let p: Progress | undefined;
      await waitFor(
        async () => {
          p = await this.progress(name);
          return p.head >= 2 && p.projected === p.head && p.evaluated === p.head;
        },
        () => `${name} settled: ${JSON.stringify(p)}`,
      );
    }
  }

  /**
   * Takes the tenant's ledger writer lock (LedgerRepository's per-tenant
   * advisory lock, as ledger_lock_head takes it) in an open transaction and
   * sends a batch for the tenant, which then waits for that lock: the
   * sequencer has events in flight until `release()`.
   */
  async stall(a: Tenant): Promise<{ sent: { promise: Promise<HttpResult>; readonly done: boolean }; trace: string; release(): Promise<void> }> {
    this.holder = new Client({ connectionString: this.t.db.ownerUrl });
    await this.holder.connect();
    await this.holder.query('BEGIN');
    await this.holder.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`agent-ledger:${a.name}`]);
    const trace = newTraceId();
    const body = await signedBatch(events(4, { trace_id: trace, name: 'lookup_order' }), a.key);
    const sent = watch(call(this.t.url, 'POST', '/v1/events', { token: a.writerToken, json: body }));
    await waitFor(
      async () =>
        (
          await this.su.query(
            `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'agent_ledger_app'
               AND wait_event_type = 'Lock' AND wait_event = 'advisory'
               AND (query LIKE 'SELECT ledger_append(%' OR query LIKE '%ledger_lock_head(%')`,
          )
        ).rowCount === 1,
      () => `${a.name}'s commit waiting for its lock`,
    );
    const holder = this.holder;
    return {
      sent,
      trace,
      release: async () => {
        await holder.query('COMMIT');
      },
    };
  }
}

/** A run with `lookups` harmless tool calls and, when `refund`, one refund above 100 without approval (a violation). */
function run(lookups: number, refund = false): { trace: string; events: TraceEvent[] } {
  const trace = newTraceId();
  const evs = Array.from({ length: lookups }, () => event({ trace_id: trace, name: 'lookup_order' }));
  if (refund) evs.push(event({ trace_id: trace, name: 'refund_payment', attributes: { args: { order_id: 'A-1', amount: 250 } } }));
  return { trace, events: evs };
}

async function eventsOf(h: Harness, tn: Tenant, trace: string): Promise<{ seqs: number[]; projected: number }> {
  const res = await call<{ events: { seq: number }[]; projected_seq: number }>(h.t.url, 'GET', `/v1/events?trace_id=${trace}&limit=100`, {
    token: tn.reader,
  });
  assert.equal(res.status, 200, res.text);
  return { seqs: res.body.events.map((e) => e.seq).sort((x, y) => x - y), projected: res.body.projected_seq };
}

describe("ingest saturated: other tenants' policy evaluation waits, within bounds; their projection does not", () => {
  const h = new Harness();
  let a: Tenant, b: Tenant, c: Tenant, d: Tenant;

  before(async () => {
    await h.start({ INGEST_PRIORITY_MAX_LAG: '100000', INGEST_PRIORITY_MAX_MS: String(MAX_MS) });
    [a, b, c, d] = await Promise.all(['prio-a', 'prio-b', 'prio-c', 'prio-d'].map((n) => h.tenant(n)));
    await h.settled(a.name, b.name, c.name, d.name);
  });
  after(() => h.stop());

  test('MAX_MS bounds the wait; the end of the saturation ends it; then all catches up', async () => {
    // the setup's own batches may have saturated ingest for a moment: count from here
    const deferredBefore = await deferredSeconds(h.t.url, 'evaluator');
    const stalled = await h.stall(a);
    await waitFor(() => h.ledger.priority.saturated, 'ingest saturated', 5000);

    // B (a violation among its events) and C commit normally: A's lock is not theirs
    const runB = run(3, true);
    const bStart = performance.now();
    const bSeqs = (await b.writer.send(runB.events)).map((r) => r.seq);
    const bHead = bSeqs.at(-1)!;
    const cHead = (await c.writer.send(run(3).events)).at(-1)!.seq;

    // the projector follows at once, no query asking for it; the evaluator waits
    let pb: Progress | undefined;
    let pc: Progress | undefined;
    await waitFor(
      async () => (pb = await h.progress(b.name)).projected >= bHead && (pc = await h.progress(c.name)).projected >= cHead,
      () => `B and C projected: ${JSON.stringify([pb, pc])}`,
      MAX_MS / 2,
    );
    await sleep(1000);
    pb = await h.progress(b.name);
    pc = await h.progress(c.name);
    assert.ok(pb.evaluated < bHead && pb.violations === 0 && pb.head === bHead, `B's evaluation deferred: ${JSON.stringify(pb)}`);
    assert.ok(pc.evaluated < cHead, `C's evaluation deferred: ${JSON.stringify(pc)}`);
    assert.equal(stalled.sent.done, false, "A's batch still waits for its lock");

    // MAX_MS ends the wait while ingest is still saturated
    await waitFor(async () => (pb = await h.progress(b.name)).violations === 1, () => `B's violation: ${JSON.stringify(pb)}`, MAX_MS + 15_000);
    assert.ok(performance.now() - bStart >= MAX_MS, `B evaluated ${Math.round(performance.now() - bStart)} ms after its events were sent, before MAX_MS`);
    const { rows } = await h.su.query(`SELECT rule_id, seq::int FROM violations WHERE tenant_id = $1`, [b.name]);
    assert.deepEqual(rows, [{ rule_id: 'refund-needs-approval', seq: bHead }]);
    assert.equal(stalled.sent.done, false, "A's batch still waits: MAX_MS ended this deferral, not the saturation");
    assert.equal(h.ledger.priority.saturated, true);

    // D commits while saturated and waits; releasing A's lock ends the saturation, and with it D's wait
    const dStart = performance.now();
    const dHead = (await d.writer.send(run(2, true).events)).at(-1)!.seq;
    await sleep(500);
    let pd = await h.progress(d.name);
    assert.ok(pd.evaluated < dHead && pd.violations === 0, `D's evaluation deferred: ${JSON.stringify(pd)}`);
    await stalled.release();
    const res = await stalled.sent.promise;
    assert.equal(res.status, 201, res.text);
    const aSeqs = (res.body as { receipts: { seq: number }[] }).receipts.map((r) => r.seq);
    assert.equal(aSeqs.length, 4);
    await waitFor(async () => (pd = await h.progress(d.name)).violations === 1, () => `D's violation: ${JSON.stringify(pd)}`);
    assert.ok(performance.now() - dStart < MAX_MS, 'D evaluated before its wait could have run out: the end of the saturation ended it');

    // everything catches up: read models and policy cursors at every head, A's events queryable
    for (const tn of [a, b, c, d]) {
      let p: Progress | undefined;
      await waitFor(
        async () => {
          p = await h.progress(tn.name);
          return p.projected === p.head && p.evaluated === p.head;
        },
        () => `${tn.name} caught up: ${JSON.stringify(p)}`,
      );
    }
    assert.deepEqual((await eventsOf(h, a, stalled.trace)).seqs, aSeqs);
    assert.equal(h.ledger.priority.saturated, false);

    // B's and C's evaluation waited MAX_MS (one walk may cover both); the projector never waits
    assert.ok((await deferredSeconds(h.t.url, 'evaluator')) - deferredBefore >= MAX_MS / 1000);
    assert.equal(await deferredSeconds(h.t.url, 'projector'), 0);
  });
});

describe('INGEST_PRIORITY_MAX_LAG=0: nothing waits for ingest', () => {
  const h = new Harness();
  let a: Tenant, b: Tenant;

  before(async () => {
    await h.start({ INGEST_PRIORITY_MAX_LAG: '0', INGEST_PRIORITY_MAX_MS: String(MAX_MS) });
    [a, b] = await Promise.all(['ctl-a', 'ctl-b'].map((n) => h.tenant(n)));
    await h.settled(a.name, b.name);
  });
  after(() => h.stop());

  test('the same stall: B is projected and evaluated at once, without a query', async () => {
    const stalled = await h.stall(a);
    // as long as the deferring app needed to call ingest saturated: the sequencer busy over a whole window and more
    const busyFrom = h.ledger.sequencer.busyMs();
    await waitFor(() => h.ledger.sequencer.busyMs() - busyFrom >= 500, () => 'the sequencer busy for 500 ms', 5000);
    assert.equal(h.ledger.priority.saturated, false, 'never sampled');

    const runB = run(3, true);
    const bStart = performance.now();
    const bHead = (await b.writer.send(runB.events)).at(-1)!.seq;
    let pb: Progress | undefined;
    await waitFor(
      async () => {
        pb = await h.progress(b.name);
        return pb.projected >= bHead && pb.violations === 1;
      },
      () => `B projected and evaluated: ${JSON.stringify(pb)}`,
    );
    assert.ok(performance.now() - bStart < MAX_MS, `B caught up ${Math.round(performance.now() - bStart)} ms after its events were sent`);
    assert.equal(stalled.sent.done, false, "A's batch still waits for its lock");

    await stalled.release();
    assert.equal((await stalled.sent.promise).status, 201);
    assert.equal(await deferredSeconds(h.t.url, 'projector'), 0);
    assert.equal(await deferredSeconds(h.t.url, 'evaluator'), 0);
  });
});

/**
 * A small pool (4 connections) and five tenants: A stalled, B, C and D commit while ingest is saturated, so
 * their evaluator walks all become due when the deferral ends. A deferred walk holds no connection, and walks
 * run a quarter of the pool at a time (each needs two connections): without both, the walks took every
 * connection and waited for one more, E's ingest waited past MAX_MS, and app.close() hung.
 */
describe('a small pool: deferred walks neither starve ingest of connections nor deadlock', () => {
  const h = new Harness();
  const names = ['a', 'b', 'c', 'd', 'e'].map((x) => `pool-${x}`);
  let ts: Tenant[];
  before(async () => {
    await h.start({ INGEST_PRIORITY_MAX_MS: String(MAX_MS), DATABASE_POOL_SIZE: '4' });
    ts = [];
    for (const n of names) ts.push(await h.tenant(n));
    await h.settled(...names);
  });
  after(async () => {
    const closed = await Promise.race([h.stop().then(() => 'closed'), sleep(20_000).then(() => 'hung')]);
    assert.equal(closed, 'closed', 'app.close() hung: evaluator walks stuck on the pool');
  });

  test("another tenant's batch commits while the walks wait; everything catches up after the stall", async () => {
    const [a, b, c, d, e] = ts;
    const stalled = await h.stall(a);
    await sleep(600);
    for (const tn of [b, c, d]) {
      await tn.writer.send(run(2).events);
      await sleep(200);
    }
    const s = performance.now();
    const r = await Promise.race([e.writer.send(run(2).events).then(() => 'ok'), sleep(MAX_MS + 5000).then(() => 'pending')]);
    assert.equal(r, 'ok', `E's batch still pending ${Math.round(performance.now() - s)} ms later`);
    await stalled.release();
    assert.equal((await stalled.sent.promise).status, 201);
    for (const n of names) {
      let p: Progress | undefined;
      await waitFor(
        async () => {
          p = await h.progress(n);
          return p.projected === p.head && p.evaluated === p.head;
        },
        () => `${n}: ${JSON.stringify(p)}`,
      );
    }
  });
});
