import { z } from 'zod';
import { rfc3339Schema, traceIdSchema } from '../../core/event';
import type { ExportFilter } from '../../core/bundle';

/**
 * POST /v1/exports: one trace, one session, or an agent and/or time range
 * (`from` inclusive, `to` exclusive, on the event's `time`). The same
 * filter is written into the bundle's manifest.
 */
export const exportRequestSchema = z
  .object({
    trace_id: traceIdSchema.optional().describe('export one whole trace (alone)'),
    session_id: z.string().min(1).max(128).optional().describe('export one whole session (alone)'),
    agent: z.string().min(1).max(128).optional(),
    from: rfc3339Schema.optional().describe('events with time >= from (millisecond precision)'),
    to: rfc3339Schema.optional().describe('events with time < to (millisecond precision)'),
  })
  .strict()
  .superRefine((v, ctx) => {
    const given = (Object.keys(v) as (keyof typeof v)[]).filter((k) => v[k] !== undefined);
    if (given.length === 0) {
      ctx.addIssue({ code: 'custom', path: [], message: 'give trace_id, session_id, or agent and/or from/to' });
      return;
    }
    for (const only of ['trace_id', 'session_id'] as const) {
      if (v[only] === undefined) continue;
      for (const other of given.filter((k) => k !== only)) {
        ctx.addIssue({ code: 'custom', path: [other], message: `cannot be combined with ${only} (an export by ${only} holds the whole ${only === 'trace_id' ? 'trace' : 'session'})` });
      }
    }
    if (v.from !== undefined && v.to !== undefined && !(Date.parse(v.from) < Date.parse(v.to))) {
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be later than from' });
    }
  })
  .meta({ id: 'ExportRequest' });

export type ExportRequest = z.infer<typeof exportRequestSchema>;

/** The manifest's filter: times normalised to RFC 3339 UTC milliseconds, so SQL and the offline verifier agree. */
export function toExportFilter(r: ExportRequest): ExportFilter {
  if (r.trace_id !== undefined) return { trace_id: r.trace_id };
  if (r.session_id !== undefined) return { session_id: r.session_id };
  return {
    ...(r.agent !== undefined ? { agent: r.agent } : {}),
    ...(r.from !== undefined ? { from: new Date(r.from).toISOString() } : {}),
    ...(r.to !== undefined ? { to: new Date(r.to).toISOString() } : {}),
  };
}
