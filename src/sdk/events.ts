import { randomBytes, randomUUID } from 'node:crypto';
import type { TraceEvent } from '../core/event';

/**
 * Helpers that make correct events for each type of DESIGN.md §2, with W3C
 * trace and span ids and parent links: a `Run` is one agent run (one trace,
 * its root span); each step is a child span of the run; a tool call and its
 * result share the call's span; an approval's request and decision share
 * the request's span; a handoff opens a child run for the other agent under
 * the handoff's span. Every event goes to `emit` (a batching client's
 * `record`, or an array).
 */

export type Emit = (event: TraceEvent) => unknown;
export type Attributes = Record<string, unknown>;
export type Status = NonNullable<TraceEvent['status']>;

export const newTraceId = (): string => randomBytes(16).toString('hex');
export const newSpanId = (): string => randomBytes(8).toString('hex');

export interface RunOptions {
  agent: string;
  /** The run's name (default: the agent). */
  name?: string;
  /** Groups the traces of one conversation (gen_ai.conversation.id); keep it across an interruption. */
  session_id?: string | null;
  /** Continue an existing trace (e.g. a resumed run, or the trace of an incoming request). */
  trace_id?: string;
  /** The span this run nests under (e.g. a handoff span, or an incoming request's span). */
  parent_span_id?: string | null;
  attributes?: Attributes;
}

interface Common {
  attributes?: Attributes;
  status?: Status;
  duration_ms?: number;
}

/** A tool call's span: its result (or failure) lands on the same span. */
export class ToolCall {
  private readonly started = Date.now();

  constructor(
    private readonly run: Run,
    readonly span_id: string,
    readonly name: string,
    readonly call_id: string | null,
  ) {}

  result(result: unknown, opts: Common = {}): TraceEvent {
    return this.run.emitEvent({
      span_id: this.span_id,
      parent_span_id: this.run.span_id,
      type: 'tool.result',
      name: this.name,
      duration_ms: opts.duration_ms ?? Date.now() - this.started,
      status: opts.status ?? 'ok',
      attributes: { tool: this.name, call_id: this.call_id, result, ...opts.attributes },
    });
  }

  failed(error: unknown, opts: Common = {}): TraceEvent {
    return this.result(null, { ...opts, status: 'error', attributes: { error: errorInfo(error), ...opts.attributes } });
  }
}

/** A pending approval: the decision lands on the request's span. */
export class Approval {
  constructor(
    private readonly run: Run,
    readonly span_id: string,
    readonly tool: string,
    readonly args: unknown,
  ) {}

  granted(by: { approver: string; role?: string; reason?: string }): TraceEvent {
    return this.decide('approval.granted', by);
  }

  denied(by: { approver: string; role?: string; reason?: string }): TraceEvent {
    return this.decide('approval.denied', by);
  }

  private decide(type: 'approval.granted' | 'approval.denied', by: { approver: string; role?: string; reason?: string }): TraceEvent {
    return this.run.emitEvent({
      span_id: this.span_id,
      parent_span_id: this.run.span_id,
      type,
      name: this.tool,
      status: 'ok',
      attributes: { tool: this.tool, args: this.args, approver: by.approver, role: by.role ?? null, reason: by.reason ?? null },
    });
  }
}

export class Run {
  readonly trace_id: string;
  readonly span_id: string;
  readonly parent_span_id: string | null;
  readonly session_id: string | null;
  readonly agent: string;
  readonly name: string;
  private readonly started = Date.now();

  /** Emits `run.started`. */
  constructor(
    private readonly emit: Emit,
    opts: RunOptions,
  ) {
    this.trace_id = opts.trace_id ?? newTraceId();
    this.span_id = newSpanId();
    this.parent_span_id = opts.parent_span_id ?? null;
    this.session_id = opts.session_id ?? null;
    this.agent = opts.agent;
    this.name = opts.name ?? opts.agent;
    this.emitEvent({ span_id: this.span_id, parent_span_id: this.parent_span_id, type: 'run.started', name: this.name, attributes: opts.attributes });
  }

  /** A complete event of this run (id, trace, session, agent, time filled in); emitted. */
  emitEvent(e: Omit<TraceEvent, 'id' | 'trace_id' | 'agent' | 'time' | 'session_id'> & Partial<Pick<TraceEvent, 'agent' | 'time'>>): TraceEvent {
    const event: TraceEvent = {
      id: randomUUID(),
      trace_id: this.trace_id,
      session_id: this.session_id,
      agent: this.agent,
      time: new Date().toISOString(),
      ...e,
    };
    // absent, not undefined: the canonical form and the server see the same object
    for (const k of Object.keys(event) as (keyof TraceEvent)[]) if (event[k] === undefined) delete event[k];
    this.emit(event);
    return event;
  }

  /** A step on its own child span. */
  private step(type: TraceEvent['type'], name: string | null, opts: Common & { span_id?: string }): TraceEvent {
    return this.emitEvent({
      span_id: opts.span_id ?? newSpanId(),
      parent_span_id: this.span_id,
      type,
      name,
      duration_ms: opts.duration_ms,
      status: opts.status,
      attributes: opts.attributes,
    });
  }

  modelCall(model: string, opts: Common & { input_tokens?: number; output_tokens?: number } = {}): TraceEvent {
    const { input_tokens, output_tokens, ...rest } = opts;
    return this.step('model.call', model, {
      status: 'ok',
      ...rest,
      attributes: { model, usage: { input_tokens: input_tokens ?? null, output_tokens: output_tokens ?? null }, ...opts.attributes },
    });
  }

  /** `tool.call` on a new span; call `.result()` or `.failed()` on what it returns. */
  toolCall(name: string, args: unknown, opts: { call_id?: string; attributes?: Attributes } = {}): ToolCall {
    const call = new ToolCall(this, newSpanId(), name, opts.call_id ?? null);
    this.step('tool.call', name, { span_id: call.span_id, attributes: { tool: name, call_id: call.call_id, args, ...opts.attributes } });
    return call;
  }

  validation(name: string, passed: boolean, opts: Common = {}): TraceEvent {
    return this.step('validation', name, { status: passed ? 'ok' : 'error', ...opts, attributes: { check: name, passed, ...opts.attributes } });
  }

  /** An action stopped before it ran (a guardrail, a policy, a human). */
  blocked(tool: string, reason: string, opts: Common = {}): TraceEvent {
    return this.step('action.blocked', tool, { status: 'error', ...opts, attributes: { tool, reason, ...opts.attributes } });
  }

  /** `approval.requested` on a new span; decide with `.granted()` / `.denied()` on what it returns. */
  approvalRequested(tool: string, args: unknown, opts: { attributes?: Attributes } = {}): Approval {
    const approval = new Approval(this, newSpanId(), tool, args);
    this.step('approval.requested', tool, { span_id: approval.span_id, attributes: { tool, args, ...opts.attributes } });
    return approval;
  }

  interrupted(reason: string, opts: Common = {}): TraceEvent {
    return this.onRunSpan('run.interrupted', { ...opts, attributes: { reason, ...opts.attributes } });
  }

  resumed(opts: Common = {}): TraceEvent {
    return this.onRunSpan('run.resumed', opts);
  }

  retry(what: string, attempt: number, opts: Common = {}): TraceEvent {
    return this.step('retry', what, { ...opts, attributes: { attempt, ...opts.attributes } });
  }

  evaluation(name: string, score: number | string, opts: Common = {}): TraceEvent {
    return this.step('evaluation', name, { ...opts, attributes: { score, ...opts.attributes } });
  }

  /** A `custom.<name>` event on its own span. */
  custom(type: `custom.${string}`, name: string | null, attributes: Attributes = {}): TraceEvent {
    return this.step(type, name, { attributes });
  }

  /** `handoff` on a new span, and the other agent's run nested under it (same trace and session). */
  handoff(toAgent: string, opts: { attributes?: Attributes } = {}): Run {
    const span = newSpanId();
    this.step('handoff', toAgent, { span_id: span, attributes: { from_agent: this.agent, target_agent: toAgent, ...opts.attributes } });
    return new Run(this.emit, { agent: toAgent, trace_id: this.trace_id, session_id: this.session_id, parent_span_id: span });
  }

  completed(output?: unknown, opts: Common = {}): TraceEvent {
    return this.onRunSpan('run.completed', { status: 'ok', ...opts, attributes: { ...(output === undefined ? {} : { output }), ...opts.attributes } });
  }

  failed(error: unknown, opts: Common = {}): TraceEvent {
    return this.onRunSpan('run.failed', { status: 'error', ...opts, attributes: { error: errorInfo(error), ...opts.attributes } });
  }

  private onRunSpan(type: TraceEvent['type'], opts: Common): TraceEvent {
    const ends = type === 'run.completed' || type === 'run.failed';
    return this.emitEvent({
      span_id: this.span_id,
      parent_span_id: this.parent_span_id,
      type,
      name: this.name,
      duration_ms: opts.duration_ms ?? (ends ? Date.now() - this.started : undefined),
      status: opts.status,
      attributes: opts.attributes,
    });
  }
}

function errorInfo(error: unknown): Attributes {
  if (error instanceof Error) return { type: error.name, message: error.message };
  return { message: String(error) };
}
