import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { describe, test } from 'node:test';
import { loadEnv } from '../../src/config/config';
import { MAX_EVENTS_PER_BATCH } from '../../src/core/event';
import { IngestWorkers } from '../../src/ingest/ingest-workers';
import { prepareEvents } from '../../src/ingest/prepare';
import { prepareBatchBody } from '../../src/ingest/prepare-body';
import { MetricsService } from '../../src/metrics/metrics.service';
import type { AppConfig } from '../../src/runtime/runtime';
import { event, events } from '../support/factories';

const body = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('prepareBatchBody (what an ingest worker runs)', () => {
  test('prepares as the event loop does: the same bodies, digests and record fields, without the attributes', () => {
    const evs = events(40).map((e, i) => ({ ...e, attributes: { i, args: { order_id: `A-${i}` }, note: 'ünïcode ✓' } }));
    const out = prepareBatchBody(body({ events: evs, signature: 'h.p.s' }));
    assert.ok(out);
    assert.equal(out.signature, 'h.p.s');
    const expected = prepareEvents(structuredClone(evs));
    assert.deepEqual(
      out.events.map((p) => [p.body, p.digest]),
      expected.map((p) => [p.body, p.digest]),
    );
    assert.deepEqual(
      out.events.map((p) => p.event),
      expected.map(({ event: { attributes: _, ...rest } }) => rest),
    );
  });

  test('a body starting with a byte order mark is read as Fastify reads it', () => {
    const evs = events(2);
    assert.equal(prepareBatchBody(body('\ufeff' + JSON.stringify({ events: evs, signature: 's' })))?.events.length, 2);
  });

  const declined: [string, () => string][] = [
    ['an empty body', () => ''],
    ['text that is not JSON', () => 'not json'],
    ['a JSON array', () => '[]'],
    ['JSON null', () => 'null'],
    ['no events', () => JSON.stringify({ events: [], signature: 's' })],
    ['events that are not an array', () => JSON.stringify({ events: {}, signature: 's' })],
    ['no signature', () => JSON.stringify({ events: events(1) })],
    ['an empty signature', () => JSON.stringify({ events: events(1), signature: '' })],
    ['a signature that is not a string', () => JSON.stringify({ events: events(1), signature: 7 })],
    ['an unknown top-level field', () => JSON.stringify({ events: events(1), signature: 's', extra: 1 })],
    ['more events than a batch may hold', () => JSON.stringify({ events: events(MAX_EVENTS_PER_BATCH + 1), signature: 's' })],
    ['a malformed event', () => JSON.stringify({ events: [event(), { ...event(), trace_id: 'nope' }], signature: 's' })],
    ['two events with one id', () => JSON.stringify({ events: [event({ id: '3b0c8a8e-4f5c-4d39-9a53-0c7a6a2f6f11' }), event({ id: '3b0c8a8e-4f5c-4d39-9a53-0c7a6a2f6f11' })], signature: 's' })],
    ['a __proto__ key deep in the attributes', () => `{"events":[${JSON.stringify({ ...event(), attributes: {} }).replace('"attributes":{}', '"attributes":{"a":{"__proto__":{"x":1}}}')}],"signature":"s"}`],
    ['a constructor.prototype key', () => `{"events":[${JSON.stringify({ ...event(), attributes: {} }).replace('"attributes":{}', '"attributes":{"constructor":{"prototype":{"x":1}}}')}],"signature":"s"}`],
  ];
  for (const [what, make] of declined) {
    test(`declines ${what} (the event loop then answers the problem)`, () => {
      assert.equal(prepareBatchBody(body(make())), undefined);
    });
  }
});

function workers(n: number): { pool: IngestWorkers; metrics: MetricsService } {
  const metrics = new MetricsService();
  const config = { env: loadEnv({ NODE_ENV: 'test', AUTH_JWT_SECRET: 'x'.repeat(32), INGEST_WORKERS: String(n), INGEST_WORKER_MIN_BYTES: '100' }) } as AppConfig;
  return { pool: new IngestWorkers(config, metrics), metrics };
}

async function outcomes(metrics: MetricsService): Promise<Record<string, number>> {
  const { values } = await metrics.workerBatches.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.outcome), v.value]));
}

describe('IngestWorkers', () => {
  test('prepares in a worker thread and counts what each batch came to', async () => {
    const { pool, metrics } = workers(2);
    try {
      const evs = events(30);
      const ready = await pool.prepare(body({ events: evs, signature: 's' }));
      assert.deepEqual(
        ready?.events.map((p) => p.digest),
        prepareEvents(structuredClone(evs)).map((p) => p.digest),
      );
      assert.equal(await pool.prepare(body('{"events": 1}')), undefined);
      // several at once, spread over the workers
      const many = await Promise.all(Array.from({ length: 6 }, () => pool.prepare(body({ events: events(20), signature: 's' }))));
      assert.ok(many.every((r) => r?.events.length === 20));
      assert.deepEqual(await outcomes(metrics), { prepared: 7, declined: 1 });
    } finally {
      await pool.onModuleDestroy();
    }
  });

  test('takes bodies from INGEST_WORKER_MIN_BYTES up, none with INGEST_WORKERS=0', async () => {
    const { pool } = workers(1);
    assert.deepEqual([pool.takes(99), pool.takes(100)], [false, true]);
    await pool.onModuleDestroy();
    assert.equal(pool.takes(1000), false, 'not once closed');
    const { pool: none } = workers(0);
    assert.equal(none.takes(1_000_000), false);
    assert.equal(await none.prepare(body({ events: events(1), signature: 's' })), undefined);
  });

  test('a worker that dies: its batches fall back to the event loop, and the next one starts a new worker', async () => {
    const { pool, metrics } = workers(1);
    try {
      const big = body({ events: events(MAX_EVENTS_PER_BATCH), signature: 's' });
      const pending = pool.prepare(big);
      const slot = (pool as unknown as { slots: { worker?: Worker }[] }).slots[0];
      const first = slot.worker;
      assert.ok(first);
      await first.terminate();
      assert.equal(await pending, undefined, 'the pending batch resolves, for the event loop to parse');
      assert.deepEqual(await outcomes(metrics), { failed: 1 });
      const again = await pool.prepare(body({ events: events(3), signature: 's' }));
      assert.equal(again?.events.length, 3);
      assert.notEqual(slot.worker, first, 'a new worker');
    } finally {
      await pool.onModuleDestroy();
    }
  });
});
