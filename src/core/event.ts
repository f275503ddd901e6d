import { z } from 'zod';

/**
 * The trace event of DESIGN.md §2, the one schema used by the service (body
 * validation, OpenAPI), the client and the SDK.
 */

export const EVENT_TYPES = [
  'run.started',
  'run.completed',
  'run.failed',
  'model.call',
  'tool.call',
  'tool.result',
  'validation',
  'action.blocked',
  'approval.requested',
  'approval.granted',
  'approval.denied',
  'run.interrupted',
  'run.resumed',
  'retry',
  'handoff',
  'evaluation',
] as const;

export const EVENT_STATUSES = ['ok', 'error', 'unset'] as const;

/** Canonical size limit of `attributes` (DESIGN.md §2). */
export const MAX_ATTRIBUTES_BYTES = 64 * 1024;
export const MAX_EVENTS_PER_BATCH = 1000;
export const MAX_BATCH_BYTES = 5 * 1024 * 1024;

const CUSTOM_TYPE = /^custom\.[a-z0-9][a-z0-9_.-]{0,63}$/;
/** Types the service writes itself; producers may not send them. */
export const RESERVED_TYPE = /^(ledger|policy)\./;
const SERVICE_TYPE = /^(ledger|policy)\.[a-z0-9][a-z0-9_.-]{0,63}$/;

const RFC3339 =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export const traceIdSchema = z
  .string()
  .regex(TRACE_ID, '32 lowercase hex characters')
  .refine((s) => s !== ZERO_TRACE, 'must not be all zeros');
export const spanIdSchema = z
  .string()
  .regex(SPAN_ID, '16 lowercase hex characters')
  .refine((s) => s !== ZERO_SPAN, 'must not be all zeros');

/**
 * A real calendar instant: Date.parse alone rolls 2026-02-30 over to March,
 * and PostgreSQL refuses what JavaScript accepts (year 0, hour 24), so every
 * field is range-checked here rather than failing later inside a commit.
 * Also checks the RFC3339 pattern itself (`rfc3339Schema` tests the regex
 * first only for its message). Written with char codes, not a regex and a
 * Date: it runs for every ingested event (a property test in
 * test/unit/event-check.test.ts holds it to the regex-and-Date definition).
 */
export function isValidRfc3339(s: string): boolean {
  const len = s.length;
  if (len < 20 || len > 35) return false;
  const d = (i: number): number => {
    const c = s.charCodeAt(i) - 48;
    return c >= 0 && c <= 9 ? c : -1;
  };
  const two = (i: number): number => {
    const a = d(i);
    const b = d(i + 1);
    return a < 0 || b < 0 ? -1 : a * 10 + b;
  };
  const y0 = two(0);
  const y1 = two(2);
  if (y0 < 0 || y1 < 0 || s[4] !== '-' || s[7] !== '-' || s[10] !== 'T' || s[13] !== ':' || s[16] !== ':') return false;
  const y = y0 * 100 + y1;
  const mo = two(5);
  const day = two(8);
  const h = two(11);
  const mi = two(14);
  const sec = two(17);
  if (y < 1 || mo < 1 || mo > 12 || day < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return false;
  let i = 19;
  if (s[i] === '.') {
    const start = ++i;
    while (i < len && d(i) >= 0) i++;
    if (i === start || i - start > 9) return false;
  }
  if (s[i] === 'Z') {
    if (i + 1 !== len) return false;
  } else if (s[i] === '+' || s[i] === '-') {
    const oh = two(i + 1);
    const om = two(i + 4);
    if (i + 6 !== len || s[i + 3] !== ':' || oh < 0 || oh > 23 || om < 0 || om > 59) return false;
  } else {
    return false;
  }
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  return day <= (mo === 2 ? (leap ? 29 : 28) : mo === 4 || mo === 6 || mo === 9 || mo === 11 ? 30 : 31);
}

export const rfc3339Schema = z
  .string()
  .regex(RFC3339, 'an RFC 3339 timestamp such as 2026-11-25T10:00:00.123Z')
  .refine(isValidRfc3339, 'not a valid date and time (year 0001-9999, hour 00-23, a real day of the month)');

/** Text stored in its own column: PostgreSQL text cannot hold NUL. */
const shortText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((v) => !v.includes('\u0000'), 'must not contain NUL (\\u0000)');

function eventSchemaWith(typeSchema: z.ZodType<string>) {
  return z
    .object({
      id: z.string().regex(UUID, 'a UUID'),
      trace_id: traceIdSchema,
      span_id: spanIdSchema,
      parent_span_id: spanIdSchema.nullable().optional(),
      session_id: shortText(128).nullable().optional(),
      type: typeSchema,
      name: shortText(256).nullable().optional(),
      agent: shortText(128),
      time: rfc3339Schema,
      duration_ms: z.number().nonnegative().finite().nullable().optional(),
      status: z.enum(EVENT_STATUSES).nullable().optional(),
      attributes: z.record(z.string(), z.unknown()).optional(),
    })
    .strict();
}

export const producerEventTypeSchema = z.string().refine(
  (t) => (EVENT_TYPES as readonly string[]).includes(t) || CUSTOM_TYPE.test(t),
  {
    message: `one of ${EVENT_TYPES.join(', ')} or custom.<name>; ledger.* and policy.* are reserved for the service`,
  },
);

const EVENT_KEYS = new Set([
  'id', 'trace_id', 'span_id', 'parent_span_id', 'session_id', 'type', 'name', 'agent', 'time', 'duration_ms', 'status',
  'attributes',
]);
const PRODUCER_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

const isSpanId = (v: unknown): boolean => typeof v === 'string' && SPAN_ID.test(v) && v !== ZERO_SPAN;
const isShortText = (v: unknown, max: number): boolean =>
  typeof v === 'string' && v.length >= 1 && v.length <= max && !v.includes('\u0000');
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;

/**
 * True when `raw` is a producer event that `traceEventSchema` accepts
 * unchanged, checked by hand: the ingest hot path's validation (zod's parse,
 * which also copies every object, took ~16 µs of the ~110 µs of service CPU
 * per event). False means "ask zod": for its verdict and its error messages,
 * so zod stays the one definition of the event and the only source of
 * refusals. A property test (test/unit/event-check.test.ts) checks, over
 * valid and mutated events, that true implies zod accepts exactly this value.
 */
export function isWellFormedProducerEvent(raw: unknown): raw is TraceEvent {
  if (!isPlainObject(raw)) return false;
  for (const k in raw) if (!EVENT_KEYS.has(k)) return false;
  const e = raw;
  if (typeof e.id !== 'string' || !UUID.test(e.id)) return false;
  if (typeof e.trace_id !== 'string' || !TRACE_ID.test(e.trace_id) || e.trace_id === ZERO_TRACE) return false;
  if (!isSpanId(e.span_id)) return false;
  if ('parent_span_id' in e && e.parent_span_id !== null && !isSpanId(e.parent_span_id)) return false;
  if ('session_id' in e && e.session_id !== null && !isShortText(e.session_id, 128)) return false;
  if (typeof e.type !== 'string' || !(PRODUCER_TYPES.has(e.type) || CUSTOM_TYPE.test(e.type))) return false;
  if ('name' in e && e.name !== null && !isShortText(e.name, 256)) return false;
  if (!isShortText(e.agent, 128)) return false;
  if (typeof e.time !== 'string' || !isValidRfc3339(e.time)) return false;
  if ('duration_ms' in e && e.duration_ms !== null) {
    if (typeof e.duration_ms !== 'number' || !Number.isFinite(e.duration_ms) || e.duration_ms < 0) return false;
  }
  if ('status' in e && e.status !== null && e.status !== 'ok' && e.status !== 'error' && e.status !== 'unset') return false;
  if ('attributes' in e && (!isPlainObject(e.attributes) || Object.hasOwn(e.attributes, '__proto__'))) return false;
  return true;
}

export const traceEventSchema = eventSchemaWith(producerEventTypeSchema).meta({
  id: 'TraceEvent',
  description: 'One trace event (DESIGN.md §2). Unknown fields are refused.',
});

/** The service's own entries (key registrations, violations, exports…). */
export const serviceEventSchema = eventSchemaWith(z.string().regex(SERVICE_TYPE));

export type TraceEvent = z.infer<typeof traceEventSchema>;
