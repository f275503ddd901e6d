import { createHash } from 'node:crypto';
import { traceEventSchema, type TraceEvent } from '../core/event';
import type { OtlpSpan, OtlpValue } from './otlp-types';

/**
 * OTLP spans to ledger events, after the OpenTelemetry GenAI semantic
 * conventions (docs/otlp-mapping.md has the table). Pure: no I/O, no clock.
 *
 * Every span maps to one or more events sharing its span id (the span tree is
 * the trace tree). Each event id is derived from (token subject, trace id,
 * span id, role), so an exporter that resends a request gets the original
 * receipts instead of duplicates. Each event records where it came from in
 * `attributes.origin` (`{via: "otlp", subject}`) and keeps the span's own
 * attributes under `attributes.otel`.
 */

export interface Origin {
  /** The bearer token's subject. */
  subject: string;
}

export interface MappedSpan {
  /** Index of the span in the request (in decoding order). */
  index: number;
  events: TraceEvent[];
}

export interface RejectedSpan {
  index: number;
  reason: string;
}

const INFERENCE_OPS = new Set(['chat', 'text_completion', 'generate_content', 'embeddings']);
const KNOWN_OPS = new Set([...INFERENCE_OPS, 'execute_tool', 'invoke_agent', 'create_agent', 'apply_guardrail']);
const DENY_DECISIONS = new Set(['deny', 'block', 'blocked', 'reject']);
const FALLBACK_AGENT = 'otel';
/** How far up the span tree agent and session names are looked for. */
const MAX_DEPTH = 64;

const str = (v: OtlpValue | undefined): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const num = (v: OtlpValue | undefined): number | undefined =>
  typeof v === 'number' ? v : typeof v === 'string' && v !== '' && !Number.isNaN(Number(v)) ? Number(v) : undefined;

/** A JSON string attribute (tool arguments, results) as its value; other text as is. */
function jsonish(v: OtlpValue | undefined): unknown {
  if (typeof v !== 'string') return v ?? null;
  const t = v.trim();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      return JSON.parse(t) as unknown;
    } catch {
      return v;
    }
  }
  return v;
}

let lastSecond = '';
let lastIso = '';

/** Nanoseconds since the epoch as RFC 3339 UTC, keeping sub-millisecond digits when there are any. */
export function nanosToRfc3339(ns: bigint): string {
  const digits = ns.toString().padStart(10, '0');
  const seconds = digits.slice(0, -9);
  // spans of one export share their seconds: format each second once
  if (seconds !== lastSecond) {
    lastSecond = seconds;
    lastIso = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  }
  const frac = digits.slice(-9).replace(/0{1,6}$/, '');
  return `${lastIso}.${frac.padEnd(3, '0')}Z`;
}

/** Stable small numbers for the roles a span's events play (span events: 64 + their index). */
const ROLE = { 'tool.call': 1, 'tool.result': 2, 'run.started': 3, 'run.end': 4, handoff: 5, validation: 6, blocked: 7, 'model.call': 8, span: 9 } as const;
type Role = keyof typeof ROLE | number;

/**
 * UUIDs (version 8, RFC 9562) derived from the span: H(subject, trace, span),
 * its last two bytes mixed with the event's role. The same span resent maps
 * to the same ids; one hash per span.
 */
function spanIds(parts: string[]): (role: Role) => string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  h[6] = (h[6] & 0x0f) | 0x80;
  h[8] = (h[8] & 0x3f) | 0x80;
  return (role) => {
    const code = typeof role === 'number' ? 64 + role : ROLE[role];
    const b = Buffer.from(h.subarray(0, 16));
    b[14] ^= (code >> 8) & 0xff;
    b[15] ^= code & 0xff;
    const x = b.toString('hex');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
  };
}

function idProblem(hex: string, bytes: number, what: string): string | null {
  if (!/^[0-9a-f]*$/.test(hex) || hex.length !== bytes * 2) {
    return `${what} must be ${bytes} bytes (${bytes * 2} hex characters), got ${/^[0-9a-f]*$/.test(hex) ? `${hex.length / 2} bytes` : 'a non-hex value'}`;
  }
  if (/^0+$/.test(hex)) return `${what} must not be all zeros`;
  return null;
}

function statusOf(code: number): 'ok' | 'error' | 'unset' {
  return code === 1 ? 'ok' : code === 2 ? 'error' : 'unset';
}

/** The GenAI operation: `gen_ai.operation.name`, else the first word of the span name when it is a known one. */
export function operationOf(span: OtlpSpan): string | undefined {
  const op = str(span.attributes['gen_ai.operation.name']);
  if (op) return op;
  const first = span.name.split(' ', 1)[0];
  return KNOWN_OPS.has(first) ? first : undefined;
}

function isGuardrail(span: OtlpSpan, op: string | undefined): boolean {
  if (op === 'apply_guardrail') return true;
  return Object.keys(span.attributes).some((k) => k.startsWith('gen_ai.guardrail.') || k.startsWith('gen_ai.guardian.'));
}

export function mapSpans(spans: readonly OtlpSpan[], origin: Origin): { mapped: MappedSpan[]; rejected: RejectedSpan[] } {
  const byId = new Map<string, OtlpSpan>();
  for (const s of spans) if (s.spanId) byId.set(`${s.traceId}/${s.spanId}`, s);
  const parentOf = (s: OtlpSpan): OtlpSpan | undefined => (s.parentSpanId ? byId.get(`${s.traceId}/${s.parentSpanId}`) : undefined);
  /** The nearest value of `attr` on the span or its ancestors in this request. */
  const inherited = (s: OtlpSpan, attr: string): string | undefined => {
    let cur: OtlpSpan | undefined = s;
    for (let d = 0; cur && d < MAX_DEPTH; d++, cur = parentOf(cur)) {
      const v = str(cur.attributes[attr]);
      if (v) return v;
    }
    return undefined;
  };
  /** The nearest ancestor invoke_agent span (for handoffs). */
  const parentAgentSpan = (s: OtlpSpan): OtlpSpan | undefined => {
    let cur = parentOf(s);
    for (let d = 0; cur && d < MAX_DEPTH; d++, cur = parentOf(cur)) if (operationOf(cur) === 'invoke_agent') return cur;
    return undefined;
  };

  const mapped: MappedSpan[] = [];
  const rejected: RejectedSpan[] = [];
  spans.forEach((span, index) => {
    const bad =
      idProblem(span.traceId, 16, 'traceId') ??
      idProblem(span.spanId, 8, 'spanId') ??
      (span.parentSpanId === '' ? null : idProblem(span.parentSpanId, 8, 'parentSpanId')) ??
      (span.startNs === 0n ? 'startTimeUnixNano is missing' : null) ??
      (span.startNs >= 253402300800000000000n ? 'startTimeUnixNano is after year 9999' : null);
    if (bad) {
      rejected.push({ index, reason: `span ${index} ("${span.name.slice(0, 64)}"): ${bad}` });
      return;
    }
    const events = mapOne(span, {
      agent: (inherited(span, 'gen_ai.agent.name') ?? str(span.resource['service.name']) ?? FALLBACK_AGENT).slice(0, 128),
      session: (inherited(span, 'gen_ai.conversation.id') ?? str(span.resource['gen_ai.conversation.id']))?.slice(0, 128),
      parentAgent: parentAgentSpan(span),
      origin,
    });
    const problems: string[] = [];
    for (const e of events) {
      const r = traceEventSchema.safeParse(e);
      if (!r.success) problems.push(...r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
    }
    if (problems.length) rejected.push({ index, reason: `span ${index} ("${span.name.slice(0, 64)}"): ${problems.slice(0, 3).join('; ')}` });
    else mapped.push({ index, events });
  });
  return { mapped, rejected };
}

interface Context {
  agent: string;
  session?: string;
  parentAgent?: OtlpSpan;
  origin: Origin;
}

function mapOne(span: OtlpSpan, ctx: Context): TraceEvent[] {
  const a = span.attributes;
  const op = operationOf(span);
  const start = nanosToRfc3339(span.startNs);
  const end = span.endNs >= span.startNs && span.endNs > 0n ? nanosToRfc3339(span.endNs) : start;
  const durationMs = span.endNs >= span.startNs && span.endNs > 0n ? Number(span.endNs - span.startNs) / 1e6 : null;
  const status = statusOf(span.status.code);
  const error = span.status.code === 2 ? { message: span.status.message || null, type: str(a['error.type']) ?? null } : undefined;
  const otel: Record<string, unknown> = { span_name: span.name, kind: span.kind, attributes: a };
  if (span.scope.name) otel.scope = span.scope.name;
  const origin = { via: 'otlp', subject: ctx.origin.subject };

  const base = {
    trace_id: span.traceId,
    span_id: span.spanId,
    parent_span_id: span.parentSpanId || null,
    session_id: ctx.session ?? null,
    agent: ctx.agent,
  };
  const idFor = spanIds(['otlp', ctx.origin.subject, span.traceId, span.spanId]);
  const ev = (role: Role, e: Partial<TraceEvent> & Pick<TraceEvent, 'type' | 'time'>, attributes: Record<string, unknown>): TraceEvent => ({
    id: idFor(role),
    ...base,
    name: null,
    duration_ms: null,
    status: null,
    ...e,
    attributes: { ...attributes, otel, origin },
  });
  const out: TraceEvent[] = [];
  primary();
  // Span events: evaluations per the GenAI conventions; any other is kept as custom.otel.event.
  span.events.forEach((e, k) => {
    const time = nanosToRfc3339(e.timeNs || span.startNs);
    if (e.name === 'gen_ai.evaluation.result') {
      out.push(
        ev(k, { type: 'evaluation', name: str(e.attributes['gen_ai.evaluation.name']) ?? null, time }, {
          score: num(e.attributes['gen_ai.evaluation.score.value']) ?? null,
          label: str(e.attributes['gen_ai.evaluation.score.label']) ?? null,
          explanation: str(e.attributes['gen_ai.evaluation.explanation']) ?? null,
          event_attributes: e.attributes,
        }),
      );
    } else {
      out.push(ev(k, { type: 'custom.otel.event', name: e.name.slice(0, 256) || null, time }, { event_attributes: e.attributes }));
    }
  });
  return out;

  function primary(): void {
    if (isGuardrail(span, op)) {
      const name = str(a['gen_ai.guardian.name']) ?? str(a['gen_ai.guardrail.name']) ?? span.name;
      const decision = str(a['gen_ai.security.decision.type']) ?? str(a['gen_ai.guardrail.decision']);
      const triggered =
        a['gen_ai.guardrail.triggered'] === true ||
        a['gen_ai.guardrail.tripwire_triggered'] === true ||
        (decision !== undefined && DENY_DECISIONS.has(decision.toLowerCase()));
      const tool = str(a['gen_ai.security.target.id']) ?? str(a['gen_ai.tool.name']);
      const reason = str(a['gen_ai.security.decision.reason']) ?? (span.status.message || null);
      out.push(
        ev('validation', { type: 'validation', name, time: end, duration_ms: durationMs, status: triggered ? 'error' : 'ok' }, {
          guardrail: name,
          passed: !triggered,
          decision: decision ?? null,
          target: str(a['gen_ai.security.target.type']) ?? null,
        }),
      );
      if (triggered) {
        out.push(ev('blocked', { type: 'action.blocked', name: tool ?? name, time: end, status: 'error' }, { tool: tool ?? null, guardrail: name, reason }));
      }
      return;
    }

    switch (op) {
      case 'execute_tool': {
        const tool = str(a['gen_ai.tool.name']) ?? (span.name.replace(/^execute_tool\s*/, '') || 'tool');
        const callId = str(a['gen_ai.tool.call.id']) ?? null;
        out.push(
          ev('tool.call', { type: 'tool.call', name: tool, time: start }, {
            tool,
            call_id: callId,
            args: jsonish(a['gen_ai.tool.call.arguments']),
            ...(str(a['gen_ai.tool.type']) ? { tool_type: str(a['gen_ai.tool.type']) } : {}),
          }),
          ev('tool.result', { type: 'tool.result', name: tool, time: end, duration_ms: durationMs, status }, {
            tool,
            call_id: callId,
            result: jsonish(a['gen_ai.tool.call.result']),
            ...(error ? { error } : {}),
          }),
        );
        return;
      }
      case 'invoke_agent': {
        const agent = str(a['gen_ai.agent.name']) ?? ctx.agent;
        const from = ctx.parentAgent ? str(ctx.parentAgent.attributes['gen_ai.agent.name']) : undefined;
        if (from && from !== agent) {
          out.push(ev('handoff', { type: 'handoff', name: agent, agent: from, time: start }, { from_agent: from, target_agent: agent }));
        }
        out.push(
          ev('run.started', { type: 'run.started', name: agent, time: start }, {
            agent_id: str(a['gen_ai.agent.id']) ?? null,
            description: str(a['gen_ai.agent.description']) ?? null,
          }),
          ev('run.end', { type: status === 'error' ? 'run.failed' : 'run.completed', name: agent, time: end, duration_ms: durationMs, status }, error ? { error } : {}),
        );
        return;
      }
      default:
        if (op && INFERENCE_OPS.has(op)) {
          const model = str(a['gen_ai.request.model']) ?? str(a['gen_ai.response.model']) ?? null;
          out.push(
            ev('model.call', { type: 'model.call', name: model, time: start, duration_ms: durationMs, status }, {
              operation: op,
              model,
              response_model: str(a['gen_ai.response.model']) ?? null,
              provider: str(a['gen_ai.provider.name']) ?? str(a['gen_ai.system']) ?? null,
              usage: { input_tokens: num(a['gen_ai.usage.input_tokens']) ?? null, output_tokens: num(a['gen_ai.usage.output_tokens']) ?? null },
              finish_reasons: a['gen_ai.response.finish_reasons'] ?? null,
              ...(error ? { error } : {}),
            }),
          );
          break;
        }
        out.push(
          ev('span', { type: 'custom.otel.span', name: span.name.slice(0, 256) || null, time: start, duration_ms: durationMs, status }, {
            ...(op ? { operation: op } : {}),
            ...(error ? { error } : {}),
          }),
        );
    }
  }
}
