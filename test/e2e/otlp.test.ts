import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { context, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter as HttpExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-node';
import { decodeTraceRequest } from '../../src/otlp/otlp-proto';
import { LEDGER_KID } from '../../src/core/record';
import { startTestApp, type TestApp } from '../support/app';
import { assertProblem, call } from '../support/http';
import { storedEvents, type StoredEvent } from '../support/ledger-events';

/**
 * OTLP ingest with the real OpenTelemetry SDK and both real exporters
 * (OTLP/HTTP JSON and protobuf) on loopback: GenAI spans become ledger
 * events signed by the service, in the span tree the SDK made.
 */

function provider(exporter: SpanExporter, service = 'support-svc'): NodeTracerProvider {
  return new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service }),
    spanProcessors: [new BatchSpanProcessor(exporter, { maxExportBatchSize: 512, scheduledDelayMillis: 60_000 })],
  });
}

/** One agent run as GenAI-instrumented code emits it: agent → chat → tool, then a handoff to a second agent. */
function emitRun(tracer: Tracer, conversation: string, amount = 250): void {
  tracer.startActiveSpan('invoke_agent support-agent', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'support-agent', 'gen_ai.conversation.id': conversation } }, (agent) => {
    tracer.startActiveSpan('chat gpt-4.1', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4.1', 'gen_ai.provider.name': 'openai', 'gen_ai.usage.input_tokens': 120, 'gen_ai.usage.output_tokens': 33 } }, (chat) => {
      chat.setStatus({ code: SpanStatusCode.OK });
      chat.end();
    });
    tracer.startActiveSpan(
      'execute_tool refund_payment',
      {
        attributes: {
          'gen_ai.operation.name': 'execute_tool',
          'gen_ai.tool.name': 'refund_payment',
          'gen_ai.tool.call.id': 'call_1',
          'gen_ai.tool.call.arguments': JSON.stringify({ order_id: 'A-1009', amount }),
          'gen_ai.tool.call.result': JSON.stringify({ refunded: true }),
        },
      },
      (tool) => {
        tool.addEvent('gen_ai.evaluation.result', { 'gen_ai.evaluation.name': 'Relevance', 'gen_ai.evaluation.score.value': 0.9 });
        tool.end();
      },
    );
    tracer.startActiveSpan('apply_guardrail pii', { attributes: { 'gen_ai.operation.name': 'apply_guardrail', 'gen_ai.guardian.name': 'pii', 'gen_ai.security.decision.type': 'deny', 'gen_ai.security.target.id': 'send_email' } }, (g) => g.end());
    tracer.startActiveSpan('invoke_agent billing-agent', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'billing-agent' } }, (billing) => {
      tracer.startActiveSpan('db.query', { attributes: { 'db.system': 'postgresql' } }, (q) => {
        q.setStatus({ code: SpanStatusCode.ERROR, message: 'timeout' });
        q.end();
      });
      billing.end();
    });
    agent.end();
  });
}

function byType(events: StoredEvent[], type: string): StoredEvent[] {
  return events.filter((e) => e.event.type === type);
}

function checkRun(events: StoredEvent[], subject: string): void {
  const trace = events[0].event.trace_id;
  assert.ok(events.every((e) => e.event.trace_id === trace), 'one trace');
  assert.ok(events.every((e) => e.record.kid === LEDGER_KID), 'signed by the service');
  assert.ok(events.every((e) => (e.event.attributes as { origin: unknown }).origin !== undefined));
  assert.deepEqual((events[0].event.attributes as { origin: unknown }).origin, { via: 'otlp', subject });

  const [started, billingStarted] = byType(events, 'run.started').sort((a, b) => (a.event.name! < b.event.name! ? 1 : -1));
  assert.equal(started.event.name, 'support-agent');
  assert.equal(started.event.parent_span_id, null);
  assert.equal(billingStarted.event.name, 'billing-agent');
  assert.equal(billingStarted.event.parent_span_id, started.event.span_id);
  assert.equal(byType(events, 'run.completed').length, 2);

  const [model] = byType(events, 'model.call');
  assert.equal(model.event.name, 'gpt-4.1');
  assert.equal(model.event.parent_span_id, started.event.span_id);
  assert.equal(model.event.agent, 'support-agent');
  assert.equal(model.event.status, 'ok');
  assert.deepEqual((model.event.attributes as { usage: unknown }).usage, { input_tokens: 120, output_tokens: 33 });

  const [call] = byType(events, 'tool.call');
  const [result] = byType(events, 'tool.result');
  assert.equal(call.event.name, 'refund_payment');
  assert.equal(call.event.span_id, result.event.span_id);
  assert.equal(call.event.parent_span_id, started.event.span_id);
  assert.deepEqual((call.event.attributes as { args: unknown }).args, { order_id: 'A-1009', amount: 250 });
  assert.deepEqual((result.event.attributes as { result: unknown }).result, { refunded: true });
  assert.ok(typeof result.event.duration_ms === 'number');

  const [evaluation] = byType(events, 'evaluation');
  assert.equal(evaluation.event.name, 'Relevance');
  assert.equal((evaluation.event.attributes as { score: number }).score, 0.9);
  assert.equal(evaluation.event.span_id, call.event.span_id);

  assert.equal(byType(events, 'validation')[0].event.name, 'pii');
  const [blocked] = byType(events, 'action.blocked');
  assert.equal(blocked.event.name, 'send_email');
  assert.equal((blocked.event.attributes as { tool: string }).tool, 'send_email');

  const [handoff] = byType(events, 'handoff');
  assert.equal(handoff.event.agent, 'support-agent');
  assert.deepEqual([(handoff.event.attributes as { from_agent: string }).from_agent, handoff.event.name], ['support-agent', 'billing-agent']);

  const [custom] = byType(events, 'custom.otel.span');
  assert.equal(custom.event.name, 'db.query');
  assert.equal(custom.event.agent, 'billing-agent', 'inherits the agent of its nearest agent span');
  assert.equal(custom.event.status, 'error');
  assert.equal(custom.event.parent_span_id, billingStarted.event.span_id);
  assert.deepEqual((custom.event.attributes as { otel: { attributes: unknown } }).otel.attributes, { 'db.system': 'postgresql' });

  const session = started.event.session_id;
  assert.ok(session);
  assert.ok(events.every((e) => e.event.session_id === session), 'gen_ai.conversation.id is the session of every span below it');
}

describe('OTLP ingest (real OpenTelemetry SDK and exporters)', () => {
  let t: TestApp;
  let writer: string;

  before(async () => {
    // what NodeTracerProvider.register() installs: the active span is the parent of the next
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    t = await startTestApp();
    writer = await t.token('acme', 'events:write', { sub: 'otel-collector' });
  });
  after(() => t.close());

  for (const [kind, Exporter] of [
    ['http/json', HttpExporter],
    ['http/protobuf', ProtoExporter],
  ] as const) {
    it(`maps GenAI spans exported by the ${kind} exporter into one trace tree`, async () => {
      const tenant = `t-${kind.replace(/\W/g, '')}`;
      const token = await t.token(tenant, 'events:write', { sub: 'otel-collector' });
      const p = provider(new Exporter({ url: `${t.url}/otlp/v1/traces`, headers: { authorization: `Bearer ${token}` } }));
      emitRun(p.getTracer('agent-app'), `conv-${kind}`);
      await p.forceFlush();
      await p.shutdown();
      const events = await storedEvents(t.db, tenant);
      assert.equal(events.length, 12, events.map((e) => e.event.type).join(','));
      checkRun(events, 'otel-collector');
      const verify = await call<{ ok: boolean }>(t.url, 'GET', '/v1/ledger/verify', { token: await t.token(tenant, 'audit:read') });
      assert.equal(verify.body.ok, true, verify.text);
    });
  }

  it('is idempotent: the same request again appends nothing', async () => {
    const mem = new InMemorySpanExporter();
    const p = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(mem)] });
    emitRun(p.getTracer('x'), 'conv-idem');
    const body = Buffer.from(ProtobufTraceSerializer.serializeRequest(mem.getFinishedSpans())!);
    const token = await t.token('idem', 'events:write');
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${t.url}/otlp/v1/traces`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' }, body: gzipSync(body) });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/x-protobuf');
      assert.equal(Buffer.from(await res.arrayBuffer()).length, 0, 'no partial_success when all spans are accepted');
    }
    assert.equal((await storedEvents(t.db, 'idem')).length, 12);
  });

  it('503 with Retry-After when the ledger queue cannot take the spans (the exporter retries)', async () => {
    const small = await startTestApp({ INGEST_MAX_GROUP_EVENTS: '1' }); // a queue of 20 events
    try {
      const spans = Array.from({ length: 30 }, (_, i) => ({
        traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
        spanId: (i + 1).toString(16).padStart(16, '0'),
        name: 'chat m',
        startTimeUnixNano: '1764064800000000000',
        attributes: [{ key: 'gen_ai.operation.name', value: { stringValue: 'chat' } }],
      }));
      const res = await call(small.url, 'POST', '/otlp/v1/traces', {
        token: await small.token('busy', 'events:write'),
        json: { resourceSpans: [{ scopeSpans: [{ spans }] }] },
      });
      assertProblem(res, 503, 'ledger_busy');
      assert.equal(res.headers.get('retry-after'), '1');
      assert.equal((await storedEvents(small.db, 'busy')).length, 0);
    } finally {
      await small.close();
    }
  });

  describe('bad input', () => {
    const post = (body: string | Buffer, headers: Record<string, string>, token = writer) =>
      call(t.url, 'POST', '/otlp/v1/traces', { raw: body, token, headers });
    const span = (o: Record<string, unknown> = {}) => ({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      name: 'execute_tool lookup',
      kind: 1,
      startTimeUnixNano: '1764064800000000000',
      endTimeUnixNano: '1764064800120000000',
      attributes: [{ key: 'gen_ai.operation.name', value: { stringValue: 'execute_tool' } }],
      ...o,
    });
    const request = (...spans: unknown[]) => JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans }] }] });

    it('415 for a content type that is not OTLP', async () => {
      assertProblem(await post('hello', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
      assertProblem(await post('<x/>', { 'content-type': 'application/xml' }), 415, 'unsupported_media_type');
    });

    it('protobuf stays a 415 on the other routes', async () => {
      const res = await call(t.url, 'POST', '/v1/events', { raw: Buffer.from([0x0a, 0x00]), token: writer, headers: { 'content-type': 'application/x-protobuf' } });
      assertProblem(res, 415, 'unsupported_media_type');
    });

    it('415 for an encoding other than gzip', async () => {
      assertProblem(await post(request(span()), { 'content-type': 'application/json', 'content-encoding': 'br' }), 415, 'unsupported_encoding');
    });

    it('400 for a body that is not an ExportTraceServiceRequest (garbage protobuf, bad JSON shape, bad gzip)', async () => {
      assertProblem(await post(Buffer.from('this is not protobuf at all'), { 'content-type': 'application/x-protobuf' }), 400, 'undecodable_otlp');
      assertProblem(await post(Buffer.from([0x0a, 0x05, 0x12, 0x10]), { 'content-type': 'application/x-protobuf' }), 400, 'undecodable_otlp');
      assertProblem(await post(JSON.stringify({ resourceSpans: 'nope' }), { 'content-type': 'application/json' }), 400, 'undecodable_otlp');
      assertProblem(await post(Buffer.from('not gzip'), { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' }), 400, 'malformed_body');
    });

    it('413 for a body over the limit, also when it only gets that big once decompressed', async () => {
      const big = Buffer.alloc(6 * 1024 * 1024, 0x20);
      assertProblem(await post(big, { 'content-type': 'application/x-protobuf' }), 413, 'payload_too_large');
      assertProblem(await post(gzipSync(big), { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' }), 413, 'payload_too_large');
    });

    it('401 without a token, 403 without events:write', async () => {
      assertProblem(await call(t.url, 'POST', '/otlp/v1/traces', { raw: request(span()) }), 401, 'unauthenticated');
      assertProblem(await post(request(span()), { 'content-type': 'application/json' }, await t.token('acme', 'audit:read')), 403, 'forbidden');
    });

    it('rejects spans with ids of the wrong length in partialSuccess and keeps the others', async () => {
      const res = await post(
        request(
          span({ traceId: '4bf92f3577b34da6a3ce929d0e0e47', spanId: '1111111111111111' }),
          span({ spanId: '00f067aa0ba902' }),
          span({ spanId: '2222222222222222', parentSpanId: 'abcd' }),
          span({ spanId: '0000000000000000' }),
          span({ spanId: '3333333333333333' }),
        ),
        { 'content-type': 'application/json' },
        await t.token('partial', 'events:write'),
      );
      assert.equal(res.status, 200, res.text);
      const ps = (res.body as { partialSuccess: { rejectedSpans: string; errorMessage: string } }).partialSuccess;
      assert.equal(ps.rejectedSpans, '4');
      assert.match(ps.errorMessage, /span 0 .*traceId must be 16 bytes/);
      assert.match(ps.errorMessage, /span 1 .*spanId must be 8 bytes/);
      assert.match(ps.errorMessage, /span 2 .*parentSpanId must be 8 bytes/);
      assert.match(ps.errorMessage, /span 3 .*all zeros/);
      const stored = await storedEvents(t.db, 'partial');
      assert.deepEqual(stored.map((e) => [e.event.type, e.event.span_id]), [
        ['tool.call', '3333333333333333'],
        ['tool.result', '3333333333333333'],
      ]);
    });

    it('answers partial_success in protobuf for a protobuf request', async () => {
      const ld = (field: number, bytes: Buffer) => Buffer.concat([Buffer.from([(field << 3) | 2, bytes.length]), bytes]);
      const start = Buffer.alloc(8);
      start.writeBigUInt64LE(1764064800000000000n);
      const span = Buffer.concat([
        ld(1, Buffer.from('4bf92f3577b34da6a3ce929d0e0e4736', 'hex')),
        ld(2, Buffer.from('00f067aa', 'hex')),
        ld(5, Buffer.from('chat m')),
        Buffer.from([(7 << 3) | 1]),
        start,
      ]);
      const body = ld(1, ld(2, ld(2, span)));
      assert.equal(decodeTraceRequest(body).spans[0].spanId, '00f067aa');
      const res = await fetch(`${t.url}/otlp/v1/traces`, { method: 'POST', headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/x-protobuf' }, body });
      assert.equal(res.status, 200);
      const answer = ProtobufTraceSerializer.deserializeResponse(new Uint8Array(await res.arrayBuffer()));
      assert.equal(Number(answer.partialSuccess?.rejectedSpans), 1);
      assert.match(answer.partialSuccess?.errorMessage ?? '', /spanId must be 8 bytes \(16 hex characters\), got 4 bytes/);
    });
  });
});
