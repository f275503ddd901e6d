import type { OtlpRequest, OtlpSpan, OtlpSpanEvent, OtlpValue } from './otlp-types';

/**
 * A minimal protobuf decoder for the OTLP trace messages we ingest
 * (opentelemetry-proto v1: collector/trace/v1, trace/v1, common/v1,
 * resource/v1), and the ExportTraceServiceResponse we answer with.
 *
 * Why hand-written: `@opentelemetry/otlp-transformer` only *serialises*
 * requests (and parses responses); its reader is internal and not exported,
 * and protobufjs is not installed. The wire format needed here is small:
 * varints, fixed64/fixed32, doubles and length-delimited fields. Unknown
 * fields are skipped (forward compatible, as protobuf requires); groups
 * (wire types 3/4, unused by OTLP) and truncated input are errors.
 */

export class ProtoDecodeError extends Error {}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const utf8 = new TextDecoder('utf-8');

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint read as a JS number (tags, lengths, enums): exact up to 2^53. */
  uint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) throw new ProtoDecodeError('truncated varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
      if (i >= 9) throw new ProtoDecodeError('varint longer than 10 bytes');
    }
  }

  /** A varint as a signed 64-bit integer (int64 two's complement). */
  int64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new ProtoDecodeError('truncated varint');
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asIntN(64, result);
      shift += 7n;
      if (shift > 63n) throw new ProtoDecodeError('varint longer than 10 bytes');
    }
  }

  fixed64(): bigint {
    if (this.pos + 8 > this.end) throw new ProtoDecodeError('truncated fixed64');
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new ProtoDecodeError('truncated double');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Bounds [start, end) of a length-delimited field. */
  len(): [number, number] {
    const n = this.uint();
    const start = this.pos;
    if (start + n > this.end) throw new ProtoDecodeError('length-delimited field runs past its message');
    this.pos += n;
    return [start, start + n];
  }

  string(): string {
    const [s, e] = this.len();
    return utf8.decode(this.buf.subarray(s, e));
  }

  hex(): string {
    const [s, e] = this.len();
    return this.buf.toString('hex', s, e);
  }

  sub(): Reader {
    const [s, e] = this.len();
    return new Reader(this.buf, s, e);
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.int64();
        return;
      case WIRE_I64:
        if (this.pos + 8 > this.end) throw new ProtoDecodeError('truncated fixed64');
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.len();
        return;
      case WIRE_I32:
        if (this.pos + 4 > this.end) throw new ProtoDecodeError('truncated fixed32');
        this.pos += 4;
        return;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wire}`);
    }
  }

  /** Iterates the fields of this message: calls `f(field, wire)`, which must consume the value or return false to skip it. */
  fields(f: (field: number, wire: number) => boolean): void {
    while (this.pos < this.end) {
      const tag = this.uint();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 0) throw new ProtoDecodeError('field number 0');
      if (!f(field, wire)) this.skip(wire);
    }
  }
}

function expectWire(wire: number, want: number, what: string): void {
  if (wire !== want) throw new ProtoDecodeError(`${what}: wire type ${wire}, expected ${want}`);
}

/** Decodes an ExportTraceServiceRequest (field 1: repeated ResourceSpans). */
export function decodeTraceRequest(buf: Buffer): OtlpRequest {
  const out: OtlpRequest = { spans: [] };
  const r = new Reader(buf, 0, buf.length);
  while (r.pos < r.end) {
    const tag = r.uint();
    if (tag >>> 3 === 1) {
      expectWire(tag & 7, WIRE_LEN, 'resource_spans');
      resourceSpans(r.sub(), out);
    } else if (tag >>> 3 === 0) throw new ProtoDecodeError('field number 0');
    else r.skip(tag & 7);
  }
  return out;
}

function resourceSpans(r: Reader, out: OtlpRequest): void {
  const resource: Record<string, OtlpValue> = {};
  const scopes: Reader[] = [];
  r.fields((field, wire) => {
    if (field === 1) {
      expectWire(wire, WIRE_LEN, 'resource');
      const rr = r.sub();
      rr.fields((f, w) => {
        if (f !== 1) return false;
        expectWire(w, WIRE_LEN, 'resource.attributes');
        keyValue(rr.sub(), resource);
        return true;
      });
      return true;
    }
    if (field === 2) {
      expectWire(wire, WIRE_LEN, 'scope_spans');
      scopes.push(r.sub());
      return true;
    }
    return false;
  });
  for (const s of scopes) scopeSpans(s, resource, out);
}

function scopeSpans(r: Reader, resource: Record<string, OtlpValue>, out: OtlpRequest): void {
  let scope = { name: '', version: '' };
  const spans: Reader[] = [];
  r.fields((field, wire) => {
    if (field === 1) {
      expectWire(wire, WIRE_LEN, 'scope');
      const sr = r.sub();
      sr.fields((f, w) => {
        if (f === 1 && w === WIRE_LEN) scope = { ...scope, name: sr.string() };
        else if (f === 2 && w === WIRE_LEN) scope = { ...scope, version: sr.string() };
        else return false;
        return true;
      });
      return true;
    }
    if (field === 2) {
      expectWire(wire, WIRE_LEN, 'spans');
      spans.push(r.sub());
      return true;
    }
    return false;
  });
  for (const s of spans) out.spans.push(span(s, resource, scope));
}

function span(r: Reader, resource: Record<string, OtlpValue>, scope: { name: string; version: string }): OtlpSpan {
  const s: OtlpSpan = {
    traceId: '',
    spanId: '',
    parentSpanId: '',
    name: '',
    kind: 0,
    startNs: 0n,
    endNs: 0n,
    attributes: {},
    events: [],
    status: { code: 0, message: '' },
    resource,
    scope,
  };
  r.fields((field, wire) => {
    switch (field) {
      case 1:
        expectWire(wire, WIRE_LEN, 'span.trace_id');
        s.traceId = r.hex();
        return true;
      case 2:
        expectWire(wire, WIRE_LEN, 'span.span_id');
        s.spanId = r.hex();
        return true;
      case 4:
        expectWire(wire, WIRE_LEN, 'span.parent_span_id');
        s.parentSpanId = r.hex();
        return true;
      case 5:
        expectWire(wire, WIRE_LEN, 'span.name');
        s.name = r.string();
        return true;
      case 6:
        expectWire(wire, WIRE_VARINT, 'span.kind');
        s.kind = r.uint();
        return true;
      case 7:
        expectWire(wire, WIRE_I64, 'span.start_time_unix_nano');
        s.startNs = r.fixed64();
        return true;
      case 8:
        expectWire(wire, WIRE_I64, 'span.end_time_unix_nano');
        s.endNs = r.fixed64();
        return true;
      case 9:
        expectWire(wire, WIRE_LEN, 'span.attributes');
        keyValue(r.sub(), s.attributes);
        return true;
      case 11:
        expectWire(wire, WIRE_LEN, 'span.events');
        s.events.push(spanEvent(r.sub()));
        return true;
      case 15: {
        expectWire(wire, WIRE_LEN, 'span.status');
        const sr = r.sub();
        sr.fields((f, w) => {
          if (f === 2 && w === WIRE_LEN) s.status.message = sr.string();
          else if (f === 3 && w === WIRE_VARINT) s.status.code = sr.uint();
          else return false;
          return true;
        });
        return true;
      }
      default:
        return false;
    }
  });
  return s;
}

function spanEvent(r: Reader): OtlpSpanEvent {
  const e: OtlpSpanEvent = { timeNs: 0n, name: '', attributes: {} };
  r.fields((field, wire) => {
    if (field === 1 && wire === WIRE_I64) e.timeNs = r.fixed64();
    else if (field === 2 && wire === WIRE_LEN) e.name = r.string();
    else if (field === 3 && wire === WIRE_LEN) keyValue(r.sub(), e.attributes);
    else return false;
    return true;
  });
  return e;
}

/** KeyValue {1: key, 2: AnyValue}, added to `into`. */
function keyValue(r: Reader, into: Record<string, OtlpValue>): void {
  let key = '';
  let value: OtlpValue = null;
  r.fields((field, wire) => {
    if (field === 1 && wire === WIRE_LEN) key = r.string();
    else if (field === 2 && wire === WIRE_LEN) value = anyValue(r.sub());
    else return false;
    return true;
  });
  into[key] = value;
}

/** AnyValue: a oneof of string, bool, int64, double, array, kvlist, bytes (base64 here). */
function anyValue(r: Reader): OtlpValue {
  let value: OtlpValue = null;
  r.fields((field, wire) => {
    switch (field) {
      case 1:
        expectWire(wire, WIRE_LEN, 'AnyValue.string_value');
        value = r.string();
        return true;
      case 2:
        expectWire(wire, WIRE_VARINT, 'AnyValue.bool_value');
        value = r.uint() !== 0;
        return true;
      case 3: {
        expectWire(wire, WIRE_VARINT, 'AnyValue.int_value');
        value = int64Value(r.int64());
        return true;
      }
      case 4:
        expectWire(wire, WIRE_I64, 'AnyValue.double_value');
        value = r.double();
        return true;
      case 5: {
        expectWire(wire, WIRE_LEN, 'AnyValue.array_value');
        const ar = r.sub();
        const list: OtlpValue[] = [];
        ar.fields((f, w) => {
          if (f !== 1) return false;
          expectWire(w, WIRE_LEN, 'ArrayValue.values');
          list.push(anyValue(ar.sub()));
          return true;
        });
        value = list;
        return true;
      }
      case 6: {
        expectWire(wire, WIRE_LEN, 'AnyValue.kvlist_value');
        const kr = r.sub();
        const obj: Record<string, OtlpValue> = {};
        kr.fields((f, w) => {
          if (f !== 1) return false;
          expectWire(w, WIRE_LEN, 'KeyValueList.values');
          keyValue(kr.sub(), obj);
          return true;
        });
        value = obj;
        return true;
      }
      case 7: {
        expectWire(wire, WIRE_LEN, 'AnyValue.bytes_value');
        const [s, e] = r.len();
        value = r.buf.toString('base64', s, e);
        return true;
      }
      default:
        return false;
    }
  });
  return value;
}

/** int64 as a JSON number when exact, else as its decimal string (as OTLP/JSON writes it). */
export function int64Value(v: bigint): number | string {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

// ---- encoding of the answers -------------------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function lenField(field: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((field << 3) | WIRE_LEN), ...varint(bytes.length)]), bytes]);
}

/**
 * ExportTraceServiceResponse {1: partial_success ExportTracePartialSuccess
 * {1: int64 rejected_spans, 2: string error_message}}; empty when all were accepted.
 */
export function encodeTraceResponse(rejectedSpans: number, errorMessage: string): Buffer {
  if (rejectedSpans === 0 && errorMessage === '') return Buffer.alloc(0);
  const parts: Buffer[] = [];
  if (rejectedSpans > 0) parts.push(Buffer.from([...varint((1 << 3) | WIRE_VARINT), ...varint(rejectedSpans)]));
  if (errorMessage) parts.push(lenField(2, Buffer.from(errorMessage, 'utf8')));
  return lenField(1, Buffer.concat(parts));
}
