import { createServer } from 'node:http';
import { mintToken } from '../src/auth/token';
import { LedgerClient } from '../src/client/ledger-client';
import { event, producerKey, registerKey } from '../test/support/factories';
import { BENCH_SECRET, freePort, percentile, startBenchDb, startService, table } from './support';

/**
 * npm run bench:alerts — alert latency: from the 201 of a batch whose refund
 * ran without approval (the sample policies) to the arrival of the
 * violation.created webhook at a receiver on loopback, with the service's
 * default evaluator and delivery-worker settings.
 */

const ALERTS = Number(process.env.BENCH_ALERTS ?? 100);
const RATE = Number(process.env.BENCH_ALERT_RPS ?? 10);

async function main(): Promise<void> {
  const arrivals = new Map<string, number>();
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const trace = (JSON.parse(body) as { data?: { violation?: { trace_id?: string } } }).data?.violation?.trace_id;
      if (trace && !arrivals.has(trace)) arrivals.set(trace, performance.now());
      res.writeHead(204).end();
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', r));
  const db = await startBenchDb();
  const svc = await startService(db, { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', POLICIES_DIR: 'policies' });
  try {
    const secret = new TextEncoder().encode(BENCH_SECRET);
    const tenant = 'alerts';
    const admin = await mintToken({ secret, tenant, scope: 'admin' });
    const key = await producerKey();
    await registerKey(svc.url, admin, key);
    await new LedgerClient({ baseUrl: svc.url, token: admin, maxAttempts: 1 }).request('POST', '/v1/webhooks', {
      url: `http://127.0.0.1:${port}/hook`,
      event_types: ['violation.created'],
    });
    const writer = new LedgerClient({ baseUrl: svc.url, token: await mintToken({ secret, tenant, scope: 'events:write' }), key, maxAttempts: 1 });
    const acked = new Map<string, number>();
    const start = performance.now();
    await Promise.all(
      Array.from({ length: ALERTS }, async (_, i) => {
        await new Promise((r) => setTimeout(r, Math.max(0, start + (i * 1000) / RATE - performance.now())));
        const e = event({ type: 'tool.call', name: 'refund_payment', attributes: { args: { order_id: `A-${i}`, amount: 250 } } });
        await writer.send([e]);
        acked.set(e.trace_id, performance.now());
      }),
    );
    const deadline = performance.now() + 30_000;
    while (arrivals.size < acked.size && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const lat = [...acked].filter(([t]) => arrivals.has(t)).map(([t, at]) => arrivals.get(t)! - at).sort((a, b) => a - b);
    process.stdout.write(
      `\nbench:alerts (${ALERTS} violating batches at ${RATE}/s, default WEBHOOK_POLL_MS)\n` +
        table([
          ['measure', 'value'],
          ['webhooks received / violations expected', `${lat.length} / ${acked.size}`],
          ['alert latency p50, ms (201 → webhook arrival)', percentile(lat, 50).toFixed(1)],
          ['alert latency p99, ms', percentile(lat, 99).toFixed(1)],
          ['alert latency max, ms', (lat.at(-1) ?? NaN).toFixed(1)],
        ]) +
        '\n',
    );
    if (lat.length < acked.size) process.exitCode = 1;
  } finally {
    await svc.stop();
    await db.stop();
    receiver.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
