import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { decodeTraceRequestJson } from '../../src/otlp/otlp-json';
import { mapSpans, nanosToRfc3339 } from '../../src/otlp/otlp-mapping';
import { decodeTraceRequest, encodeTraceResponse, ProtoDecodeError } from '../../src/otlp/otlp-proto';

/** The OTLP decoders against the OpenTelemetry SDK's own serialisers, and the mapping's pure parts. */

function finishedSpans() {
  const mem = new InMemorySpanExporter();
  const p = new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'svc', 'deployment.env': 'test' }), spanProcessors: [new SimpleSpanProcessor(mem)] });
  const tracer = p.getTracer('unit', '1.2.3');
  const root = tracer.startSpan('invoke_agent a', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'a', big: 2 ** 53 + 2, neg: -5, ratio: 0.25, ok: true, tags: ['x', 'y'] } });
  const child = tracer.startSpan('execute_tool t', { attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 't', 'gen_ai.tool.call.arguments': '{"a":1}' } }, trace.setSpan(context.active(), root));
  child.addEvent('checkpoint', { step: 3, note: 'é ✓' });
  child.setStatus({ code: 2, message: 'boom' });
  child.end();
  root.end();
  return mem.getFinishedSpans();
}

describe('OTLP decoding', () => {
  it('protobuf and JSON (as the SDK serialises them) decode to the same spans', () => {
    const spans = finishedSpans();
    const proto = decodeTraceRequest(Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!));
    const json = decodeTraceRequestJson(JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans)!)));
    assert.deepEqual(proto, json);
    const [child, root] = proto.spans;
    assert.equal(root.traceId, spans[1].spanContext().traceId);
    assert.equal(child.parentSpanId, root.spanId);
    assert.equal(root.attributes.neg, -5);
    assert.equal(root.attributes.ratio, 0.25);
    assert.equal(root.attributes.ok, true);
    assert.deepEqual(root.attributes.tags, ['x', 'y']);
    assert.deepEqual(child.events[0].attributes, { step: 3, note: 'é ✓' });
    assert.deepEqual(child.status, { code: 2, message: 'boom' });
    assert.equal(child.resource['service.name'], 'svc');
    assert.deepEqual(child.scope, { name: 'unit', version: '1.2.3' });
    assert.ok(child.endNs >= child.startNs && child.startNs > 1_700_000_000_000_000_000n);
  });

  it('refuses truncated and malformed protobuf, never half-reads', () => {
    const body = Buffer.from(ProtobufTraceSerializer.serializeRequest(finishedSpans())!);
    for (const cut of [1, 5, 40, body.length - 1]) assert.throws(() => decodeTraceRequest(body.subarray(0, cut)), ProtoDecodeError);
    assert.throws(() => decodeTraceRequest(Buffer.from([0x0b])), ProtoDecodeError, 'group wire type');
    assert.throws(() => decodeTraceRequest(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), ProtoDecodeError, 'length past the end');
    assert.deepEqual(decodeTraceRequest(Buffer.alloc(0)), { spans: [] });
    // unknown fields are skipped
    assert.deepEqual(decodeTraceRequest(Buffer.from([0x78, 0x01])), { spans: [] });
  });

  it('encodes the answers the SDK reads back', () => {
    assert.equal(encodeTraceResponse(0, '').length, 0);
    const r = ProtobufTraceSerializer.deserializeResponse(encodeTraceResponse(3, 'bad ids'));
    assert.equal(Number(r.partialSuccess?.rejectedSpans), 3);
    assert.equal(r.partialSuccess?.errorMessage, 'bad ids');
  });
});

describe('OTLP mapping', () => {
  it('formats nanoseconds as RFC 3339, keeping sub-millisecond digits only when present', () => {
    assert.equal(nanosToRfc3339(1764064800123000000n), '2025-11-25T10:00:00.123Z');
    assert.equal(nanosToRfc3339(1764064800123456789n), '2025-11-25T10:00:00.123456789Z');
    assert.equal(nanosToRfc3339(1764064800000000000n), '2025-11-25T10:00:00.000Z');
    assert.equal(nanosToRfc3339(1764064800120000000n), '2025-11-25T10:00:00.120Z');
    assert.equal(nanosToRfc3339(5n), '1970-01-01T00:00:00.000000005Z');
  });

  it('derives the same event ids for the same span and subject, others for another subject', () => {
    const spans = decodeTraceRequest(Buffer.from(ProtobufTraceSerializer.serializeRequest(finishedSpans())!)).spans;
    const ids = (subject: string) => mapSpans(spans, { subject }).mapped.flatMap((m) => m.events.map((e) => e.id));
    const a = ids('collector');
    assert.deepEqual(ids('collector'), a);
    assert.equal(new Set(a).size, a.length);
    assert.ok(a.every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)));
    assert.equal(ids('other').filter((id) => a.includes(id)).length, 0);
  });

  it('maps a failed tool span to an errored tool.result and keeps span events', () => {
    const spans = decodeTraceRequest(Buffer.from(ProtobufTraceSerializer.serializeRequest(finishedSpans())!)).spans;
    const { mapped, rejected } = mapSpans(spans, { subject: 's' });
    assert.deepEqual(rejected, []);
    const evs = mapped.flatMap((m) => m.events);
    const result = evs.find((e) => e.type === 'tool.result')!;
    assert.equal(result.status, 'error');
    assert.deepEqual(result.attributes?.error, { message: 'boom', type: null });
    assert.deepEqual(evs.find((e) => e.type === 'tool.call')!.attributes?.args, { a: 1 });
    const ev = evs.find((e) => e.type === 'custom.otel.event')!;
    assert.equal(ev.name, 'checkpoint');
    assert.equal(ev.agent, 'a');
    assert.equal(evs.find((e) => e.type === 'run.failed'), undefined);
  });
});
