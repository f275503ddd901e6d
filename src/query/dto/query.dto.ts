import { z } from 'zod';
import { EVENT_STATUSES, rfc3339Schema, traceIdSchema } from '../../core/event';

const text = (max: number) => z.string().min(1).max(max);
const limit = z.coerce.number().int().min(1).max(1000);
const order = z.enum(['asc', 'desc']);
const cursor = z.string().min(1).max(200).describe('opaque: the next_cursor of the previous page (same filters and order)');
const from = rfc3339Schema.describe('inclusive lower bound on the event time (RFC 3339)');
const to = rfc3339Schema.describe('exclusive upper bound on the event time (RFC 3339)');
const bool = z.enum(['true', 'false']).transform((v) => v === 'true');

export const TRACE_STATUSES = ['running', 'completed', 'failed', 'interrupted', 'unknown'] as const;

/**
 * GET /v1/events. Attribute filters `attr.<path>=<value>` are not listed
 * here: the query pipe takes them out first (see attribute-filter.ts).
 */
export const eventsQuerySchema = z
  .object({
    trace_id: traceIdSchema.optional(),
    session_id: text(128).optional(),
    agent: text(128).optional(),
    type: text(80).optional(),
    name: text(256).optional(),
    status: z.enum(EVENT_STATUSES).optional(),
    from: from.optional(),
    to: to.optional(),
    order: order.default('asc').describe('by seq; asc (default) or desc'),
    cursor: cursor.optional(),
    limit: limit.optional().describe('events per page, 1-1000 (default 100; no default for text/csv and application/x-ndjson, which stream every match)'),
  })
  .strict();
export type EventsQuery = z.infer<typeof eventsQuerySchema> & { attr: AttributeFilter[] };

export interface AttributeFilter {
  /** The query parameter, e.g. `attr.args.order_id`. */
  param: string;
  path: string[];
  value: string;
}

export const tracesQuerySchema = z
  .object({
    agent: text(128).optional().describe('runs in which this agent recorded an event'),
    status: z.enum(TRACE_STATUSES).optional().describe('the newest run.* event decides: running, completed, failed, interrupted; unknown without one'),
    from: from.optional().describe('runs with an event at or after this time (RFC 3339)'),
    to: to.optional().describe('runs with an event before this time (RFC 3339)'),
    has_violations: bool.optional(),
    tool: text(256).optional().describe('runs that called this tool (tool.call name)'),
    session_id: text(128).optional(),
    order: order.default('desc').describe("by the run's first seq; desc (default, newest first) or asc"),
    cursor: cursor.optional(),
    limit: limit.optional().describe('runs per page, 1-1000 (default 100; no default for text/csv and application/x-ndjson)'),
  })
  .strict();
export type TracesQuery = z.infer<typeof tracesQuerySchema>;

export const traceParamSchema = z.object({ trace_id: traceIdSchema }).strict();
export const traceQuerySchema = z
  .object({ format: z.enum(['tree', 'timeline']).default('tree').describe('tree (default) or timeline: a flat, time-ordered list with depth') })
  .strict();

const reportBase = {
  from: from.optional(),
  to: to.optional(),
  agent: text(128).optional(),
};
export const toolsReportQuerySchema = z
  .object({ ...reportBase, slowest: z.coerce.number().int().min(0).max(20).default(3).describe('slowest traces listed per tool') })
  .strict();
export const loopsReportQuerySchema = z
  .object({
    ...reportBase,
    min_repeats: z.coerce.number().int().min(2).max(10_000).default(3).describe('calls of one tool with identical args in one run that count as a loop'),
    max_model_calls: z.coerce.number().int().min(0).max(1_000_000).default(25).describe('runs with more model.call events than this are listed'),
    limit: limit.default(100).describe('most rows per list'),
  })
  .strict();
export const agentsReportQuerySchema = z.object(reportBase).strict();

// ---- responses ---------------------------------------------------------------

export const eventItemSchema = z.object({
  seq: z.number().int(),
  id: z.string(),
  received_at: z.string(),
  leaf_hash: z.string().describe('lowercase hex'),
  chain_hash: z.string().describe('lowercase hex'),
  body: z.record(z.string(), z.unknown()).nullable().describe('the event as stored (its JCS), null if erased'),
});

export const eventsPageSchema = z
  .object({
    events: z.array(eventItemSchema),
    next_cursor: z.string().nullable(),
    projected_seq: z.number().int().describe('the read model holds the ledger up to this seq'),
  })
  .meta({ id: 'EventsPage' });

const counts = z.record(z.string(), z.number().int());

export const traceSummarySchema = z.object({
  trace_id: z.string(),
  session_id: z.string().nullable(),
  agents: z.array(z.string()),
  tools: z.array(z.string()),
  first_time: z.string().nullable(),
  last_time: z.string().nullable(),
  duration_ms: z.number().nullable().describe('last event time minus first event time'),
  status: z.enum(TRACE_STATUSES),
  counts: counts.describe('events by type'),
  event_count: z.number().int(),
  error_count: z.number().int().describe('events with status error'),
  violation_count: z.number().int(),
  violations_by_severity: counts,
  first_seq: z.number().int(),
  last_seq: z.number().int(),
});

export const tracesPageSchema = z
  .object({
    traces: z.array(traceSummarySchema),
    next_cursor: z.string().nullable(),
    projected_seq: z.number().int(),
  })
  .meta({ id: 'TracesPage' });

const treeEventSchema = z.object({
  seq: z.number().int(),
  id: z.string(),
  type: z.string(),
  name: z.string().nullable(),
  agent: z.string(),
  time: z.string(),
  duration_ms: z.number().nullable(),
  status: z.string().nullable(),
  attributes: z.record(z.string(), z.unknown()).nullable(),
});

const attachedViolationSchema = z.object({
  id: z.string(),
  rule_id: z.string(),
  severity: z.string(),
  message: z.string(),
  seq: z.number().int().describe('the offending event'),
  ledger_seq: z.number().int().describe('the policy.violation entry'),
  status: z.string(),
});

const spanSchema = z.object({
  span_id: z.string(),
  parent_span_id: z.string().nullable(),
  name: z.string().nullable(),
  kind: z.string().describe('type of the span’s first event'),
  agent: z.string(),
  depth: z.number().int(),
  start_time: z.string(),
  end_time: z.string(),
  duration_ms: z.number(),
  status: z.enum(['ok', 'error', 'unset']),
  orphan: z.boolean().describe('its parent span was never recorded in this trace (shown at the root)'),
  events: z.array(treeEventSchema),
  violations: z.array(attachedViolationSchema),
  children: z.array(z.record(z.string(), z.unknown())).describe('child spans, same shape'),
});

export const traceTreeSchema = z
  .object({
    trace_id: z.string(),
    format: z.literal('tree'),
    session_id: z.string().nullable(),
    agents: z.array(z.string()),
    status: z.enum(TRACE_STATUSES),
    start_time: z.string(),
    end_time: z.string(),
    duration_ms: z.number(),
    event_count: z.number().int(),
    span_count: z.number().int(),
    orphan_count: z.number().int(),
    max_depth: z.number().int(),
    violation_count: z.number().int(),
    spans: z.array(spanSchema).describe('root spans, then orphans, by first seq'),
    unattached_violations: z.array(attachedViolationSchema).describe('violations whose offending event is not in a span of this trace'),
  })
  .meta({ id: 'TraceTree' });

export const traceTimelineSchema = z
  .object({
    trace_id: z.string(),
    format: z.literal('timeline'),
    start_time: z.string(),
    items: z.array(
      treeEventSchema.extend({
        span_id: z.string(),
        parent_span_id: z.string().nullable(),
        depth: z.number().int(),
        orphan: z.boolean(),
        offset_ms: z.number().describe('time since the first event of the trace'),
        violations: z.array(attachedViolationSchema),
      }),
    ),
  })
  .meta({ id: 'TraceTimeline' });

export const toolsReportSchema = z
  .object({
    tools: z.array(
      z.object({
        tool: z.string(),
        calls: z.number().int(),
        errors: z.number().int(),
        error_rate: z.number(),
        p50_ms: z.number().nullable(),
        p95_ms: z.number().nullable(),
        p99_ms: z.number().nullable(),
        slowest: z.array(z.object({ trace_id: z.string(), seq: z.number().int(), duration_ms: z.number() })),
      }),
    ),
  })
  .meta({ id: 'ToolsReport' });

export const loopsReportSchema = z
  .object({
    min_repeats: z.number().int(),
    max_model_calls: z.number().int(),
    repeated_calls: z.array(
      z.object({
        trace_id: z.string(),
        tool: z.string(),
        args: z.unknown().describe('the repeated arguments'),
        count: z.number().int(),
        first_seq: z.number().int(),
        last_seq: z.number().int(),
      }),
    ),
    model_call_heavy: z.array(
      z.object({ trace_id: z.string(), model_calls: z.number().int(), agents: z.array(z.string()), status: z.string() }),
    ),
  })
  .meta({ id: 'LoopsReport' });

export const agentsReportSchema = z
  .object({
    agents: z.array(
      z.object({
        agent: z.string(),
        runs: z.number().int(),
        failed_runs: z.number().int(),
        failure_rate: z.number(),
        violations: z.object({ low: z.number().int(), medium: z.number().int(), high: z.number().int(), critical: z.number().int() }),
      }),
    ),
  })
  .meta({ id: 'AgentsReport' });

export type EventItem = z.infer<typeof eventItemSchema>;
export type TraceSummary = z.infer<typeof traceSummarySchema>;
export type TraceTree = z.infer<typeof traceTreeSchema>;
export type TraceTimeline = z.infer<typeof traceTimelineSchema>;
