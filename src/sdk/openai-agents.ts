import { createHash, randomUUID } from 'node:crypto';
import type { RunToolApprovalItem, Span, SpanData, Trace, TracingProcessor } from '@openai/agents';
import type { TraceEvent } from '../core/event';
import type { BatchingLedgerClient } from './batching-client';

/**
 * agent-ledger/openai-agents: a tracing processor for the OpenAI Agents SDK
 * (`@openai/agents`) that records its traces as signed ledger events.
 *
 *   const ledger = new AgentLedger({ baseUrl, token, key });
 *   const processor = new LedgerTracingProcessor(ledger);
 *   addTraceProcessor(processor);           // or setTraceProcessors([processor])
 *
 * Span kinds: agent → run.started / run.completed | run.failed; function →
 * tool.call + tool.result (one span), or action.blocked for a call a person
 * rejected; generation and response → model.call;
 * handoff → handoff; guardrail → validation (+ action.blocked when its
 * tripwire fired); custom and the other kinds → custom.agents.<kind>.
 *
 * Human-in-the-loop approvals never reach a tracing processor (the SDK has
 * no span for them), so they are recorded through the processor:
 * `recordInterruptions(result)` right after a run stops for approval
 * (approval.requested per tool call, then run.interrupted; the SDK ends the
 * agent span at an interruption as if it had finished, so an agent span's
 * run.completed is held until the run goes on, the trace has ended and
 * `recordInterruptions` did not claim it, or a flush), and
 * `approve(state, item, by)` / `reject(...)` instead of `state.approve(...)`
 * (approval.granted / approval.denied; the resumed run's new agent span
 * opens with run.resumed instead of run.started). The resumed run keeps the trace id of the
 * RunState (also after `RunState.fromString`), so the request, the decision,
 * the tool call and its result land in one trace; the trace's `groupId` is
 * the session id of every event (pass `groupId` to the Runner for a
 * conversation). Approval span ids derive from the trace and the call id, so
 * a process that resumes a serialised state writes on the same span.
 *
 * Ids: the SDK's `trace_<32 hex>` becomes the W3C trace id; `span_<24 hex>`
 * keeps its first 16 hex digits; any other form is hashed to the right length.
 */

export type Emit = (event: TraceEvent) => unknown;

export interface LedgerTracingOptions {
  /** Agent name for events outside any agent span (default "openai-agents"). */
  defaultAgent?: string;
  /** Session id when the trace has no groupId (default: none). */
  sessionId?: (trace: { traceId: string; groupId: string | null; metadata?: Record<string, unknown> }) => string | undefined;
  /** Record model inputs and outputs of generation spans (default false: model, usage and settings only). */
  includeModelContent?: boolean;
}

/** Who decided an approval. */
export interface Decision {
  approver: string;
  role?: string;
  reason?: string;
}

interface ApprovalState {
  _trace: Trace | null;
  _currentAgentSpan?: Span<SpanData> | undefined;
  approve(item: RunToolApprovalItem, options?: { alwaysApprove?: boolean }): void;
  reject(item: RunToolApprovalItem, options?: { alwaysReject?: boolean; message?: string }): void;
}

interface AgentRef {
  span: string;
  parent: string | null;
  agent: string;
}

interface SpanInfo {
  parent: string | null;
  agent?: string;
}

const MAX_TRACKED = 10_000;

function hexId(id: string, prefix: string, length: number): string {
  const m = new RegExp(`^${prefix}_([0-9a-f]{${length},})$`).exec(id);
  if (m && !/^0+$/.test(m[1].slice(0, length))) return m[1].slice(0, length);
  return createHash('sha256').update(id).digest('hex').slice(0, length);
}

export const toTraceId = (id: string) => hexId(id, 'trace', 32);
export const toSpanId = (id: string) => hexId(id, 'span', 16);

function parseJson(s: unknown): unknown {
  if (typeof s !== 'string') return s ?? null;
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s;
  }
}

export class LedgerTracingProcessor implements TracingProcessor {
  private readonly emit: Emit;
  private readonly spans = new Map<string, SpanInfo>();
  private readonly sessions = new Map<string, string | null>();
  /** Traces stopped for an approval and since decided: the next span records run.resumed. */
  private readonly resuming = new Map<string, AgentRef>();
  /** The latest agent span of each trace (the one an interruption stops). */
  private readonly lastAgent = new Map<string, AgentRef>();
  /**
   * Agent span ends not yet recorded, by trace: when a run stops for an
   * approval the SDK ends the agent span like a finished one, so its
   * run.completed waits until we know it was not an interruption.
   */
  private readonly held = new Map<string, TraceEvent[]>();
  /** Rejected calls whose function span has not ended yet, by trace and tool. */
  private readonly rejections = new Map<string, number>();

  constructor(
    private readonly sink: BatchingLedgerClient | Emit,
    private readonly opts: LedgerTracingOptions = {},
  ) {
    this.emit = typeof sink === 'function' ? sink : (e) => sink.record(e);
  }

  // ---- TracingProcessor ---------------------------------------------------

  async onTraceStart(trace: Trace): Promise<void> {
    this.sessionOf(trace);
  }

  async onTraceEnd(trace: Trace): Promise<void> {
    // run() returns right after this: recordInterruptions(result), if the run stopped, comes before this timer
    const id = toTraceId(trace.traceId);
    setImmediate(() => this.release(id));
  }

  async onSpanStart(span: Span<SpanData>): Promise<void> {
    const id = toSpanId(span.spanId);
    const parent = span.parentId ? toSpanId(span.parentId) : null;
    const data = span.spanData;
    const trace = toTraceId(span.traceId);
    this.track(id, { parent, agent: data.type === 'agent' ? data.name : undefined });
    // a new span: the run goes on, so an agent span that ended before it had completed (or handed off)
    this.release(trace);
    // the resumed run's wrapper spans (task, turn) come before its agent span
    const resume = data.type === 'task' || data.type === 'turn' ? undefined : this.resuming.get(trace);
    if (resume) this.resuming.delete(trace);
    if (data.type === 'agent') this.lastAgent.set(trace, { span: id, parent, agent: data.name });
    if (resume && data.type === 'agent') {
      // the resumed run opens a new agent span: it is the run going on, not a new run
      this.event(span, 'run.resumed', { name: data.name, agent: data.name, time: span.startedAt ?? undefined, attributes: {} });
      return;
    }
    if (resume) {
      this.raw({ trace, session: this.sessions.get(trace) ?? null }, { span_id: resume.span, parent_span_id: resume.parent, type: 'run.resumed', name: resume.agent, agent: resume.agent, attributes: {} });
    }
    if (data.type === 'agent') {
      this.event(span, 'run.started', {
        name: data.name,
        agent: data.name,
        time: span.startedAt ?? undefined,
        attributes: { tools: data.tools ?? [], handoffs: data.handoffs ?? [], output_type: data.output_type ?? null },
      });
    }
  }

  async onSpanEnd(span: Span<SpanData>): Promise<void> {
    const data = span.spanData;
    const error = span.error ? { message: span.error.message, data: span.error.data ?? null } : undefined;
    const status = error ? ('error' as const) : ('ok' as const);
    const end = span.endedAt ?? new Date().toISOString();
    const duration = span.startedAt && span.endedAt ? Math.max(0, Date.parse(span.endedAt) - Date.parse(span.startedAt)) : undefined;
    const err = error ? { error } : {};
    switch (data.type) {
      case 'agent':
        if (error) this.event(span, 'run.failed', { name: data.name, agent: data.name, time: end, duration_ms: duration, status, attributes: err });
        else this.hold(span, { name: data.name, agent: data.name, time: end, duration_ms: duration, status, attributes: {} });
        break;
      case 'function':
        if (error && this.takeRejection(toTraceId(span.traceId), data.name, error)) {
          // the SDK closes a rejected call's span with an error; the tool never ran
          this.event(span, 'action.blocked', { name: data.name, time: end, status: 'error', attributes: { tool: data.name, args: parseJson(data.input), reason: 'approval denied' } });
          break;
        }
        this.event(span, 'tool.call', {
          name: data.name,
          time: span.startedAt ?? end,
          attributes: { tool: data.name, args: parseJson(data.input), ...(data.mcp_data ? { mcp: parseJson(data.mcp_data) } : {}) },
        });
        this.event(span, 'tool.result', { name: data.name, time: end, duration_ms: duration, status, attributes: { tool: data.name, result: parseJson(data.output), ...err } });
        break;
      case 'generation':
        this.event(span, 'model.call', {
          name: data.model ?? null,
          time: span.startedAt ?? end,
          duration_ms: duration,
          status,
          attributes: {
            operation: 'generation',
            model: data.model ?? null,
            model_config: data.model_config ?? null,
            usage: { input_tokens: data.usage?.input_tokens ?? null, output_tokens: data.usage?.output_tokens ?? null },
            ...(this.opts.includeModelContent ? { input: data.input ?? null, output: data.output ?? null } : {}),
            ...err,
          },
        });
        break;
      case 'response': {
        const r = data._response as { model?: string; usage?: { input_tokens?: number; output_tokens?: number } } | undefined;
        this.event(span, 'model.call', {
          name: r?.model ?? null,
          time: span.startedAt ?? end,
          duration_ms: duration,
          status,
          attributes: {
            operation: 'response',
            response_id: data.response_id ?? null,
            model: r?.model ?? null,
            usage: { input_tokens: r?.usage?.input_tokens ?? null, output_tokens: r?.usage?.output_tokens ?? null },
            ...err,
          },
        });
        break;
      }
      case 'handoff':
        this.event(span, 'handoff', {
          name: data.to_agent ?? null,
          agent: data.from_agent ?? undefined,
          time: end,
          status,
          attributes: { from_agent: data.from_agent ?? null, target_agent: data.to_agent ?? null, ...err },
        });
        break;
      case 'guardrail':
        this.event(span, 'validation', { name: data.name, time: end, duration_ms: duration, status: data.triggered ? 'error' : 'ok', attributes: { guardrail: data.name, passed: !data.triggered } });
        if (data.triggered) {
          this.event(span, 'action.blocked', { name: data.name, time: end, status: 'error', attributes: { guardrail: data.name, tool: null, reason: `guardrail "${data.name}" tripwire triggered` } });
        }
        break;
      case 'custom':
        this.event(span, 'custom.agents.custom', { name: data.name, time: end, duration_ms: duration, status, attributes: { data: data.data, ...err } });
        break;
      default: {
        const { type, ...rest } = data as { type: string } & Record<string, unknown>;
        this.event(span, `custom.agents.${type.replace(/[^a-z0-9_.-]/g, '_')}`, {
          name: typeof rest.name === 'string' ? rest.name : null,
          time: end,
          duration_ms: duration,
          status,
          attributes: { ...(type === 'task' || type === 'turn' || type === 'mcp_tools' ? rest : {}), ...err },
        });
      }
    }
  }

  async shutdown(): Promise<void> {
    for (const trace of [...this.held.keys()]) this.release(trace);
    if (typeof this.sink !== 'function') await this.sink.shutdown();
  }

  async forceFlush(): Promise<void> {
    for (const trace of [...this.held.keys()]) this.release(trace);
    if (typeof this.sink !== 'function') await this.sink.flush();
  }

  // ---- approvals ------------------------------------------------------------

  /**
   * After a run stopped for approvals: `approval.requested` for each pending
   * tool call (on a span of its own under the agent's span), then
   * `run.interrupted` on the agent's span.
   */
  recordInterruptions(result: { interruptions: RunToolApprovalItem[]; state: ApprovalState }): void {
    const items = result.interruptions;
    if (items.length === 0) return;
    const where = this.approvalContext(result.state);
    // the agent span that "ended" did not complete: it stopped here
    this.held.delete(where.trace);
    for (const item of items) {
      this.raw(where, {
        span_id: this.approvalSpan(where.trace, item),
        parent_span_id: where.agentSpan,
        type: 'approval.requested',
        name: item.name ?? null,
        agent: item.agent?.name ?? where.agent,
        attributes: { tool: item.name ?? null, args: parseJson(item.arguments), call_id: callId(item) },
      });
    }
    this.raw(where, {
      span_id: where.agentSpan ?? this.approvalSpan(where.trace, items[0]),
      parent_span_id: where.agentParent,
      type: 'run.interrupted',
      name: items[0].agent?.name ?? where.agent,
      agent: items[0].agent?.name ?? where.agent,
      attributes: { reason: 'approval', pending: items.map((i) => ({ tool: i.name ?? null, call_id: callId(i) })) },
    });
  }

  /** `state.approve(item)`, recorded as `approval.granted` with who decided. */
  approve(state: ApprovalState, item: RunToolApprovalItem, by: Decision, options?: { alwaysApprove?: boolean }): void {
    state.approve(item, options);
    this.decided(state, item, 'approval.granted', by);
  }

  /**
   * `state.reject(item)`, recorded as `approval.denied` with who decided; the
   * rejected call's function span becomes `action.blocked`, not a tool call.
   */
  reject(state: ApprovalState, item: RunToolApprovalItem, by: Decision, options?: { alwaysReject?: boolean; message?: string }): void {
    state.reject(item, options);
    this.decided(state, item, 'approval.denied', by);
    const trace = this.approvalContext(state).trace;
    const key = `${trace}\u0000${item.name ?? ''}`;
    this.rejections.set(key, (this.rejections.get(key) ?? 0) + 1);
  }

  /** Whether an errored function span is a call a person rejected (counted by reject(), or so described by the SDK). */
  private takeRejection(trace: string, tool: string, error: { message: string; data: unknown }): boolean {
    const key = `${trace}\u0000${tool}`;
    const n = this.rejections.get(key) ?? 0;
    if (n > 0) {
      if (n === 1) this.rejections.delete(key);
      else this.rejections.set(key, n - 1);
      return true;
    }
    return /manually rejected by user/.test(JSON.stringify(error.data ?? ''));
  }

  private decided(state: ApprovalState, item: RunToolApprovalItem, type: 'approval.granted' | 'approval.denied', by: Decision): void {
    const where = this.approvalContext(state);
    const agent = item.agent?.name ?? where.agent;
    this.raw(where, {
      span_id: this.approvalSpan(where.trace, item),
      parent_span_id: where.agentSpan,
      type,
      name: item.name ?? null,
      agent,
      attributes: { tool: item.name ?? null, args: parseJson(item.arguments), call_id: callId(item), approver: by.approver, role: by.role ?? null, reason: by.reason ?? null },
    });
    if (where.agentSpan) this.resuming.set(where.trace, { span: where.agentSpan, parent: where.agentParent, agent });
    else this.resuming.delete(where.trace);
  }

  // ---- helpers --------------------------------------------------------------

  private approvalContext(state: ApprovalState) {
    const trace = state._trace;
    if (!trace) throw new Error('the run state has no trace (is tracing disabled?): approvals cannot be linked to the run');
    const traceId = toTraceId(trace.traceId);
    const agentSpan = state._currentAgentSpan;
    const data = agentSpan?.spanData;
    const seen = this.lastAgent.get(traceId);
    return {
      trace: traceId,
      session: this.sessionOf(trace),
      agentSpan: agentSpan ? toSpanId(agentSpan.spanId) : (seen?.span ?? null),
      agentParent: agentSpan ? (agentSpan.parentId ? toSpanId(agentSpan.parentId) : null) : (seen?.parent ?? null),
      agent: data?.type === 'agent' ? data.name : (seen?.agent ?? this.opts.defaultAgent ?? 'openai-agents'),
    };
  }

  private approvalSpan(trace: string, item: RunToolApprovalItem): string {
    return createHash('sha256').update(`approval\u0000${trace}\u0000${callId(item) ?? item.name ?? ''}`).digest('hex').slice(0, 16);
  }

  private sessionOf(trace: Trace): string | null {
    const id = toTraceId(trace.traceId);
    if (!this.sessions.has(id)) {
      const s = trace.groupId ?? this.opts.sessionId?.({ traceId: trace.traceId, groupId: trace.groupId, metadata: trace.metadata }) ?? null;
      if (this.sessions.size >= MAX_TRACKED) this.sessions.delete(this.sessions.keys().next().value!);
      this.sessions.set(id, s ? s.slice(0, 128) : null);
    }
    return this.sessions.get(id)!;
  }

  private track(id: string, info: SpanInfo): void {
    if (this.spans.size >= MAX_TRACKED) this.spans.delete(this.spans.keys().next().value!);
    this.spans.set(id, info);
  }

  /** The agent of the nearest agent span above (or at) `spanId`. */
  private agentOf(spanId: string): string {
    let cur: string | null = spanId;
    for (let d = 0; cur && d < 64; d++) {
      const info = this.spans.get(cur);
      if (!info) break;
      if (info.agent) return info.agent;
      cur = info.parent;
    }
    return this.opts.defaultAgent ?? 'openai-agents';
  }

  private hold(span: Span<SpanData>, e: EventFields): void {
    const trace = toTraceId(span.traceId);
    const list = this.held.get(trace) ?? [];
    list.push(this.build({ trace, session: this.sessions.get(trace) ?? null }, this.fields(span, 'run.completed', e)));
    this.held.set(trace, list);
  }

  /** Records the held agent span ends of the trace. */
  private release(trace: string): void {
    const list = this.held.get(trace);
    if (!list) return;
    this.held.delete(trace);
    for (const e of list) this.emit(e);
  }

  private fields(span: Span<SpanData>, type: string, e: EventFields): RawEvent {
    const spanId = toSpanId(span.spanId);
    return {
      span_id: spanId,
      parent_span_id: span.parentId ? toSpanId(span.parentId) : null,
      type,
      name: e.name,
      agent: e.agent ?? this.agentOf(spanId),
      time: e.time,
      duration_ms: e.duration_ms,
      status: e.status,
      attributes: e.attributes,
    };
  }

  private event(span: Span<SpanData>, type: string, e: EventFields): void {
    const trace = toTraceId(span.traceId);
    this.raw({ trace, session: this.sessions.get(trace) ?? null }, this.fields(span, type, e));
  }

  private raw(where: { trace: string; session: string | null }, e: RawEvent): void {
    this.emit(this.build(where, e));
  }

  private build(where: { trace: string; session: string | null }, e: RawEvent): TraceEvent {
    const event: TraceEvent = {
      id: randomUUID(),
      trace_id: where.trace,
      span_id: e.span_id,
      parent_span_id: e.parent_span_id,
      session_id: where.session,
      type: e.type,
      name: e.name === null ? null : e.name.slice(0, 256),
      agent: e.agent.slice(0, 128),
      time: e.time ?? new Date().toISOString(),
      attributes: { ...e.attributes, source: 'openai-agents' },
    };
    if (e.duration_ms !== undefined) event.duration_ms = e.duration_ms;
    if (e.status !== undefined) event.status = e.status;
    return event;
  }
}

interface EventFields {
  name: string | null;
  time?: string;
  agent?: string;
  duration_ms?: number;
  status?: 'ok' | 'error';
  attributes: Record<string, unknown>;
}

interface RawEvent extends Omit<EventFields, 'agent'> {
  span_id: string;
  parent_span_id: string | null;
  type: string;
  agent: string;
}

function callId(item: RunToolApprovalItem): string | null {
  const raw = item.rawItem as { callId?: string; id?: string };
  return raw.callId ?? raw.id ?? null;
}
