import { ProtoDecodeError } from './otlp-proto';
import type { OtlpRequest, OtlpSpan, OtlpSpanEvent, OtlpValue } from './otlp-types';

/**
 * OTLP/JSON (the protobuf JSON mapping with the OTLP exceptions): keys in
 * lowerCamelCase (the proto field names are accepted too), trace and span ids
 * as hex strings, 64-bit integers as numbers or decimal strings, enums as
 * integers. Unknown fields are ignored, as the spec requires. A body whose
 * shape is not an ExportTraceServiceRequest throws (400).
 */

type Json = Record<string, unknown>;

function field(o: Json, camel: string, snake: string): unknown {
  return o[camel] !== undefined ? o[camel] : o[snake];
}

function obj(v: unknown, where: string): Json {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ProtoDecodeError(`${where} must be an object`);
  return v as Json;
}

function list(v: unknown, where: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ProtoDecodeError(`${where} must be an array`);
  return v;
}

function str(v: unknown, where: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new ProtoDecodeError(`${where} must be a string`);
  return v;
}

function uint64(v: unknown, where: string): bigint {
  if (v === undefined || v === null || v === '') return 0n;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^\d{1,20}$/.test(v)) return BigInt(v);
  throw new ProtoDecodeError(`${where} must be an unsigned integer (number or decimal string)`);
}

function int(v: unknown, where: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  throw new ProtoDecodeError(`${where} must be an integer`);
}

function anyValue(v: unknown, where: string): OtlpValue {
  const o = obj(v, where);
  if (o.stringValue !== undefined || o.string_value !== undefined) return str(field(o, 'stringValue', 'string_value'), where);
  const b = field(o, 'boolValue', 'bool_value');
  if (b !== undefined) return b === true;
  const i = field(o, 'intValue', 'int_value');
  if (i !== undefined) {
    // beyond 2^53 as a decimal string, as the protobuf decoder gives it
    if (typeof i === 'number' && Number.isInteger(i)) return Number.isSafeInteger(i) ? i : BigInt(i).toString();
    if (typeof i === 'string' && /^-?\d{1,20}$/.test(i)) {
      const n = Number(i);
      return Number.isSafeInteger(n) ? n : i;
    }
    throw new ProtoDecodeError(`${where}.intValue must be an integer`);
  }
  const d = field(o, 'doubleValue', 'double_value');
  if (d !== undefined) {
    if (typeof d === 'number') return d;
    if (typeof d === 'string' && !Number.isNaN(Number(d))) return Number(d);
    throw new ProtoDecodeError(`${where}.doubleValue must be a number`);
  }
  const a = field(o, 'arrayValue', 'array_value');
  if (a !== undefined) return list(obj(a, where).values, `${where}.arrayValue.values`).map((x, k) => anyValue(x, `${where}[${k}]`));
  const kv = field(o, 'kvlistValue', 'kvlist_value');
  if (kv !== undefined) return keyValues(obj(kv, where).values, `${where}.kvlistValue.values`);
  const by = field(o, 'bytesValue', 'bytes_value');
  if (by !== undefined) return str(by, where);
  return null;
}

function keyValues(v: unknown, where: string): Record<string, OtlpValue> {
  const out: Record<string, OtlpValue> = {};
  list(v, where).forEach((kv, k) => {
    const o = obj(kv, `${where}[${k}]`);
    out[str(o.key, `${where}[${k}].key`)] = anyValue(o.value, `${where}[${k}].value`);
  });
  return out;
}

export function decodeTraceRequestJson(body: unknown): OtlpRequest {
  const root = obj(body, 'the body');
  const out: OtlpRequest = { spans: [] };
  list(field(root, 'resourceSpans', 'resource_spans'), 'resourceSpans').forEach((rsRaw, i) => {
    const rs = obj(rsRaw, `resourceSpans[${i}]`);
    const resource = keyValues(obj(rs.resource, `resourceSpans[${i}].resource`).attributes, `resourceSpans[${i}].resource.attributes`);
    list(field(rs, 'scopeSpans', 'scope_spans'), `resourceSpans[${i}].scopeSpans`).forEach((ssRaw, j) => {
      const where = `resourceSpans[${i}].scopeSpans[${j}]`;
      const ss = obj(ssRaw, where);
      const sc = obj(ss.scope, `${where}.scope`);
      const scope = { name: str(sc.name, `${where}.scope.name`), version: str(sc.version, `${where}.scope.version`) };
      list(ss.spans, `${where}.spans`).forEach((spRaw, k) => out.spans.push(span(obj(spRaw, `${where}.spans[${k}]`), `${where}.spans[${k}]`, resource, scope)));
    });
  });
  return out;
}

function span(o: Json, where: string, resource: Record<string, OtlpValue>, scope: OtlpSpan['scope']): OtlpSpan {
  const st = obj(o.status, `${where}.status`);
  return {
    traceId: str(field(o, 'traceId', 'trace_id'), `${where}.traceId`).toLowerCase(),
    spanId: str(field(o, 'spanId', 'span_id'), `${where}.spanId`).toLowerCase(),
    parentSpanId: str(field(o, 'parentSpanId', 'parent_span_id'), `${where}.parentSpanId`).toLowerCase(),
    name: str(o.name, `${where}.name`),
    kind: int(o.kind, `${where}.kind`),
    startNs: uint64(field(o, 'startTimeUnixNano', 'start_time_unix_nano'), `${where}.startTimeUnixNano`),
    endNs: uint64(field(o, 'endTimeUnixNano', 'end_time_unix_nano'), `${where}.endTimeUnixNano`),
    attributes: keyValues(o.attributes, `${where}.attributes`),
    events: list(o.events, `${where}.events`).map((eRaw, k): OtlpSpanEvent => {
      const e = obj(eRaw, `${where}.events[${k}]`);
      return {
        timeNs: uint64(field(e, 'timeUnixNano', 'time_unix_nano'), `${where}.events[${k}].timeUnixNano`),
        name: str(e.name, `${where}.events[${k}].name`),
        attributes: keyValues(e.attributes, `${where}.events[${k}].attributes`),
      };
    }),
    status: { code: int(st.code, `${where}.status.code`), message: str(st.message, `${where}.status.message`) },
    resource,
    scope,
  };
}
