/**
 * OTLP trace data after decoding, the same for OTLP/HTTP protobuf and JSON:
 * ids as lowercase hex (their byte length is checked by the mapping, which
 * rejects the span), times as unsigned nanoseconds, attribute values as JSON
 * (int64 beyond 2^53 as decimal strings, bytes as base64).
 */

export type OtlpValue = string | number | boolean | null | OtlpValue[] | { [key: string]: OtlpValue };

export interface OtlpSpanEvent {
  timeNs: bigint;
  name: string;
  attributes: Record<string, OtlpValue>;
}

export interface OtlpSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, OtlpValue>;
  events: OtlpSpanEvent[];
  /** StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  /** Attributes of the span's resource (shared by the spans of one ResourceSpans). */
  resource: Record<string, OtlpValue>;
  scope: { name: string; version: string };
}

export interface OtlpRequest {
  spans: OtlpSpan[];
}
