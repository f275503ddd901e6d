import { randomUUID } from 'node:crypto';
import { context, trace, type Span, type Tracer } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { mintToken } from '../src/auth/token';
import { signBatch } from '../src/core/batch';
import { decodeTraceRequest } from '../src/otlp/otlp-proto';
import { mapSpans } from '../src/otlp/otlp-mapping';
import { producerKey, registerKey } from '../test/support/factories';
import { BENCH_SECRET, median, startBenchDb, startService, table } from './support';

/**
 * npm run bench:otlp — spans/s through POST /otlp/v1/traces (OTLP/HTTP
 * protobuf, 512 spans a request, made by the real OpenTelemetry SDK and
 * serialised by its protobuf serialiser) against signed POST /v1/events
 * batches carrying the same ledger events (what those 512 spans map to: a
 * chat span is one model.call, a tool span a tool.call and a tool.result),
 * in the same run, 4 concurrent clients each, alternating rounds. Bodies are
 * built and signed before the clock starts.
 */

const SPANS = 512;
const CLIENTS = 4;
const REQUESTS_PER_CLIENT = Number(process.env.BENCH_REQUESTS_PER_CLIENT ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TOOLS = ['search_kb', 'lookup_customer', 'lookup_order', 'refund_payment', 'send_email', 'create_ticket'];

/** One agent run of 8 spans: invoke_agent, 4 chat, 3 execute_tool. */
function agentRun(tracer: Tracer, i: number): void {
  const root = tracer.startSpan('invoke_agent support-agent', {
    attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': `agent-${i % 20}`, 'gen_ai.conversation.id': `conv-${i}` },
  });
  const ctx = trace.setSpan(context.active(), root);
  const child = (name: string, attributes: Record<string, string | number>): Span => tracer.startSpan(name, { attributes }, ctx);
  for (let k = 0; k < 4; k++) {
    child('chat gpt-5-mini', {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-5-mini',
      'gen_ai.usage.input_tokens': 200 + ((i + k) % 900),
      'gen_ai.usage.output_tokens': 40 + ((i + k) % 200),
    }).end();
    if (k === 3) break;
    const tool = TOOLS[(i + k) % TOOLS.length];
    child(`execute_tool ${tool}`, {
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': tool,
      'gen_ai.tool.call.id': `call_${i}_${k}`,
      'gen_ai.tool.call.arguments': JSON.stringify({ order_id: `A-${1000 + (i % 9000)}`, customer_id: `C-${i % 5000}`, amount: (i % 400) + 0.5 }),
      'gen_ai.tool.call.result': JSON.stringify({ ok: true, note: 'customer asked about a late delivery and a partial refund' }),
    }).end();
  }
  root.end();
}

/** Protobuf ExportTraceServiceRequests of SPANS spans each, from the real SDK. */
function otlpBodies(n: number): Buffer[] {
  const mem = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'support-service' }),
    spanProcessors: [new SimpleSpanProcessor(mem)],
  });
  const tracer = provider.getTracer('bench');
  const out: Buffer[] = [];
  for (let r = 0; r < n; r++) {
    mem.reset();
    for (let i = 0; i < SPANS / 8; i++) agentRun(tracer, r * 1000 + i);
    out.push(Buffer.from(ProtobufTraceSerializer.serializeRequest(mem.getFinishedSpans())!));
  }
  return out;
}

async function post(url: string, path: string, token: string, body: string | Buffer, contentType: string, want: number): Promise<void> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, body });
  const text = await res.text();
  if (res.status !== want) throw new Error(`${path} answered ${res.status}: ${text.slice(0, 200)}`);
  if (path.startsWith('/otlp') && text.length > 0) throw new Error(`partial success: ${text.slice(0, 200)}`);
}

async function drive(bodies: (string | Buffer)[], send: (b: string | Buffer) => Promise<void>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < bodies.length) await send(bodies[next++]);
  }));
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const db = await startBenchDb();
  const svc = await startService(db);
  try {
    const key = await producerKey();
    const secret = new TextEncoder().encode(BENCH_SECRET);
    const n = CLIENTS * REQUESTS_PER_CLIENT;
    const otlpRates: number[] = [];
    const nativeRates: number[] = [];
    let eventsPerSpan = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const tenant = `otlp${round}`;
      const admin = await mintToken({ secret, tenant, scope: 'admin' });
      const writer = await mintToken({ secret, tenant, scope: 'events:write' });
      await registerKey(svc.url, admin, key);

      const protobuf = otlpBodies(n + 1);
      // the native twin: the same ledger events (fresh ids), signed by a producer, 1 batch per OTLP request
      const native: string[] = [];
      for (const body of otlpBodies(n + 1)) {
        const events = mapSpans(decodeTraceRequest(body).spans, { subject: 'bench' }).mapped.flatMap((m) => m.events.map((e) => ({ ...e, id: randomUUID() })));
        eventsPerSpan = events.length / SPANS;
        native.push(JSON.stringify({ events, signature: await signBatch(events, key.privateKey, key.kid, key.alg) }));
      }
      // warm-up: one of each
      await post(svc.url, '/otlp/v1/traces', writer, protobuf.pop()!, 'application/x-protobuf', 200);
      await post(svc.url, '/v1/events', writer, native.pop()!, 'application/json', 201);

      const runOtlp = async () => otlpRates.push((n * SPANS) / (await drive(protobuf, (b) => post(svc.url, '/otlp/v1/traces', writer, b, 'application/x-protobuf', 200))));
      const runNative = async () => nativeRates.push((n * SPANS) / (await drive(native, (b) => post(svc.url, '/v1/events', writer, b, 'application/json', 201))));
      // alternate which path goes first, so neither always meets a warmer or fuller database
      if (round % 2 === 0) {
        await runOtlp();
        await runNative();
      } else {
        await runNative();
        await runOtlp();
      }
    }
    const ratios = otlpRates.map((o, i) => o / nativeRates[i]);
    const rows: (string | number)[][] = [
      ['measure', 'median', 'all rounds'],
      [`OTLP protobuf, spans/s (${SPANS}/request, ${CLIENTS} clients)`, median(otlpRates).toFixed(0), otlpRates.map((x) => x.toFixed(0)).join(' ')],
      [`signed /v1/events, spans/s (same events, ${CLIENTS} clients)`, median(nativeRates).toFixed(0), nativeRates.map((x) => x.toFixed(0)).join(' ')],
      ['OTLP / signed', `${(median(ratios) * 100).toFixed(0)} %`, ratios.map((x) => `${(x * 100).toFixed(0)}%`).join(' ')],
      ['ledger events per span', eventsPerSpan.toFixed(3), `${(median(otlpRates) * eventsPerSpan).toFixed(0)} events/s via OTLP`],
    ];
    process.stdout.write(`\nbench:otlp (${ROUNDS} rounds of ${n * SPANS} spans per path)\n${table(rows)}\n`);
  } finally {
    await svc.stop();
    await db.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
