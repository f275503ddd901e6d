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

export const traceIdSchema = z
  .string()
  .regex(/^[0-9a-f]{32}$/, '32 lowercase hex characters')
  .refine((s) => s !== '0'.repeat(32), 'must not be all zeros');
export const spanIdSchema = z
  .string()
  .regex(/^[0-9a-f]{16}$/, '16 lowercase hex characters')
  .refine((s) => s !== '0'.repeat(16), 'must not be all zeros');

/**
 * A real calendar instant: Date.parse alone rolls 2026-02-30 over to March,
 * and PostgreSQL refuses what JavaScript accepts (year 0, hour 24), so every
 * field is range-checked here rather than failing later inside a commit.
 */
export function isValidRfc3339(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|([+-])(\d{2}):(\d{2}))$/.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59) return false;
  if (m[8] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) return false;
  return d <= new Date(Date.UTC(y, mo, 0)).getUTCDate();
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

export const traceEventSchema = eventSchemaWith(producerEventTypeSchema).meta({
  id: 'TraceEvent',
  description: 'One trace event (DESIGN.md §2). Unknown fields are refused.',
});

/** The service's own entries (key registrations, violations, exports…). */
export const serviceEventSchema = eventSchemaWith(z.string().regex(SERVICE_TYPE));

export type TraceEvent = z.infer<typeof traceEventSchema>;
