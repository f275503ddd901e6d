import { randomUUID } from 'node:crypto';
import type { TraceEvent } from '../../src/core/event';
import type { TestApp } from './app';
import { client, producerKey, registerKey } from './factories';
import { rng } from './random';

/**
 * Generated runs for the query tests, and a tenant to send them to. The
 * generator is seeded (mulberry32), so a failing case reproduces.
 */

export { rng };

const hex = (r: () => number, n: number) => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('');
export const traceIdOf = (r: () => number) => `a${hex(r, 31)}`;
export const spanIdOf = (r: () => number) => `b${hex(r, 15)}`;

export const TOOLS = ['search_kb', 'lookup_order', 'refund_payment', 'send_email', 'create_ticket'];
export const AGENTS = ['support-agent', 'billing-agent', 'triage-agent'];

export interface GenOptions {
  traces: number;
  seed?: number;
  start?: number;
}

/** Runs with nested spans, tool calls and results (some failing), model calls, loops and handoffs. */
export function generateRuns(opts: GenOptions): TraceEvent[][] {
  const r = rng(opts.seed ?? 1);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const runs: TraceEvent[][] = [];
  for (let t = 0; t < opts.traces; t++) {
    const trace_id = traceIdOf(r);
    const session_id = r() < 0.2 ? null : `conv-${Math.floor(r() * (opts.traces / 2 + 1))}`;
    const agent = pick(AGENTS);
    let clock = (opts.start ?? Date.UTC(2026, 10, 1)) + t * 60_000;
    const ev = (e: Partial<TraceEvent> & Pick<TraceEvent, 'span_id' | 'type'>): TraceEvent => {
      clock += 1 + Math.floor(r() * 500);
      return {
        id: randomUUID(),
        trace_id,
        parent_span_id: null,
        session_id,
        name: null,
        agent,
        time: new Date(clock).toISOString(),
        duration_ms: null,
        status: 'ok',
        attributes: {},
        ...e,
      };
    };
    const root = spanIdOf(r);
    const events: TraceEvent[] = [ev({ span_id: root, type: 'run.started', name: agent, attributes: { input: `case ${t}` } })];
    const steps = 2 + Math.floor(r() * 8);
    let parent = root;
    for (let s = 0; s < steps; s++) {
      const kind = r();
      if (kind < 0.3) {
        events.push(ev({ span_id: spanIdOf(r), parent_span_id: parent, type: 'model.call', name: 'plan', duration_ms: Math.floor(r() * 900), attributes: { model: pick(['gpt-4.1', 'gpt-5-mini']), usage: { input_tokens: Math.floor(r() * 1000) } } }));
      } else if (kind < 0.85) {
        const tool = pick(TOOLS);
        const args = { order_id: `A-${1000 + Math.floor(r() * 20)}`, amount: Math.floor(r() * 5) * 50 };
        const repeat = r() < 0.1 ? 3 + Math.floor(r() * 2) : 1;
        for (let k = 0; k < repeat; k++) {
          const span = spanIdOf(r);
          const error = r() < 0.15;
          events.push(ev({ span_id: span, parent_span_id: parent, type: 'tool.call', name: tool, status: null, attributes: { args } }));
          events.push(ev({ span_id: span, parent_span_id: parent, type: 'tool.result', name: tool, status: error ? 'error' : 'ok', duration_ms: 1 + Math.floor(r() * 2000), attributes: error ? { error: 'failed' } : { result: { ok: true } } }));
        }
      } else {
        // a handoff opens a nested span: later steps nest under it
        const span = spanIdOf(r);
        events.push(ev({ span_id: span, parent_span_id: parent, type: 'handoff', name: 'escalate', attributes: { target_agent: pick(AGENTS) } }));
        parent = span;
      }
    }
    const end = r();
    if (end < 0.6) events.push(ev({ span_id: root, type: 'run.completed', name: agent, duration_ms: 1000 }));
    else if (end < 0.8) events.push(ev({ span_id: root, type: 'run.failed', name: agent, status: 'error' }));
    runs.push(events);
  }
  return runs;
}

/** Interleaves the runs' events (each run keeps its own order) into batches of at most `size`. */
export function interleave(runs: TraceEvent[][], size: number, seed = 7): TraceEvent[][] {
  const r = rng(seed);
  const queues = runs.map((x) => [...x]);
  const all: TraceEvent[] = [];
  while (queues.some((q) => q.length)) {
    const live = queues.filter((q) => q.length);
    all.push(live[Math.floor(r() * live.length)].shift()!);
  }
  const batches: TraceEvent[][] = [];
  for (let i = 0; i < all.length; i += size) batches.push(all.slice(i, i + size));
  return batches;
}

export interface Tenant {
  name: string;
  reader: string;
  /** Sends one batch; returns each event with its seq. */
  send(events: TraceEvent[]): Promise<(TraceEvent & { seq: number })[]>;
}

export async function tenant(t: TestApp, name: string): Promise<Tenant> {
  const key = await producerKey();
  await registerKey(t.url, await t.token(name, 'admin'), key);
  const writer = client(t.url, await t.token(name, 'events:write'), key);
  return {
    name,
    reader: await t.token(name, 'audit:read'),
    send: async (events) => {
      const receipts = await writer.send(events);
      return events.map((e, i) => ({ ...e, seq: receipts[i].seq }));
    },
  };
}
