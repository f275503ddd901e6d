/**
 * The run as a tree of spans, and as a timeline: plain functions over the
 * trace's entries (no Nest, no database), unit-testable on their own.
 *
 * - A span is the events sharing a span_id; its parent is the first non-null
 *   parent_span_id among its events in seq order.
 * - Roots are spans without a parent. A span whose parent was never recorded
 *   in this trace (or that is its own parent, or sits on a parent cycle) is an
 *   orphan: shown at the root, flagged `orphan: true`.
 * - Children and root spans are ordered by their first seq; events in a span
 *   by seq (the ledger's order, not the producers' clocks).
 * - A span starts at its earliest event time and ends at the latest of its
 *   event times and start + the largest duration_ms its events report.
 * - Violations attach to the span of the offending event (by seq).
 */

export interface TreeInputEvent {
  seq: number;
  id: string;
  span_id: string;
  parent_span_id: string | null;
  session_id: string | null;
  type: string;
  name: string | null;
  agent: string;
  /** The event's own time string. */
  time: string;
  duration_ms: number | null;
  status: string | null;
  attributes: Record<string, unknown> | null;
}

export interface TreeViolation {
  id: string;
  rule_id: string;
  severity: string;
  message: string;
  seq: number;
  ledger_seq: number;
  status: string;
}

export interface TreeEvent {
  seq: number;
  id: string;
  type: string;
  name: string | null;
  agent: string;
  time: string;
  duration_ms: number | null;
  status: string | null;
  attributes: Record<string, unknown> | null;
}

export interface Span {
  span_id: string;
  parent_span_id: string | null;
  name: string | null;
  kind: string;
  agent: string;
  depth: number;
  start_time: string;
  end_time: string;
  duration_ms: number;
  status: 'ok' | 'error' | 'unset';
  orphan: boolean;
  events: TreeEvent[];
  violations: TreeViolation[];
  children: Span[];
}

export type RunStatus = 'running' | 'completed' | 'failed' | 'interrupted' | 'unknown';

export interface Tree {
  trace_id: string;
  format: 'tree';
  session_id: string | null;
  agents: string[];
  status: RunStatus;
  start_time: string;
  end_time: string;
  duration_ms: number;
  event_count: number;
  span_count: number;
  orphan_count: number;
  max_depth: number;
  violation_count: number;
  spans: Span[];
  /** Violations whose offending event is not in this trace's spans. */
  unattached_violations: TreeViolation[];
}

export interface TimelineItem extends TreeEvent {
  span_id: string;
  parent_span_id: string | null;
  depth: number;
  orphan: boolean;
  offset_ms: number;
  violations: TreeViolation[];
}

export interface Timeline {
  trace_id: string;
  format: 'timeline';
  start_time: string;
  items: TimelineItem[];
}

const RUN_STATUS: Record<string, RunStatus> = {
  'run.completed': 'completed',
  'run.failed': 'failed',
  'run.interrupted': 'interrupted',
  'run.started': 'running',
  'run.resumed': 'running',
};

/** The newest run.* event (by seq) decides; the projector's trace_summaries.status follows the same rule. */
export function runStatus(events: readonly { type: string }[]): RunStatus {
  for (let i = events.length - 1; i >= 0; i--) {
    const s = RUN_STATUS[events[i].type];
    if (s) return s;
  }
  return 'unknown';
}

interface Built {
  spans: Span[];
  all: Map<string, Span>;
  bySeq: Map<number, Span>;
}

/** `events` in seq order, the service's own entries already left out. */
function build(events: readonly TreeInputEvent[], violations: readonly TreeViolation[]): Built & { unattached: TreeViolation[] } {
  const all = new Map<string, Span>();
  const raw = new Map<string, { events: TreeInputEvent[]; parent: string | null }>();
  for (const e of events) {
    let s = raw.get(e.span_id);
    if (!s) raw.set(e.span_id, (s = { events: [], parent: null }));
    s.events.push(e);
    if (s.parent === null && e.parent_span_id) s.parent = e.parent_span_id;
  }
  const bySeq = new Map<number, Span>();
  for (const [spanId, s] of raw) {
    const first = s.events[0];
    let start = Infinity;
    let lastTime = -Infinity;
    let longest = 0;
    let error = false;
    let ok = false;
    for (const e of s.events) {
      const t = Date.parse(e.time);
      start = Math.min(start, t);
      lastTime = Math.max(lastTime, t);
      if (e.duration_ms !== null) longest = Math.max(longest, e.duration_ms);
      if (e.status === 'error') error = true;
      else if (e.status === 'ok') ok = true;
    }
    const end = Math.max(lastTime, start + longest);
    const span: Span = {
      span_id: spanId,
      parent_span_id: s.parent,
      name: first.name,
      kind: first.type,
      agent: first.agent,
      depth: 0,
      start_time: new Date(start).toISOString(),
      end_time: new Date(end).toISOString(),
      duration_ms: end - start,
      status: error ? 'error' : ok ? 'ok' : 'unset',
      orphan: false,
      events: s.events.map(toTreeEvent),
      violations: [],
      children: [],
    };
    all.set(spanId, span);
    for (const e of s.events) bySeq.set(e.seq, span);
  }
  const firstSeq = (s: Span) => s.events[0].seq;
  const roots: Span[] = [];
  for (const span of all.values()) {
    const parent = span.parent_span_id === null ? undefined : all.get(span.parent_span_id);
    if (span.parent_span_id === null) roots.push(span);
    else if (!parent || parent === span) {
      span.orphan = true;
      roots.push(span);
    } else parent.children.push(span);
  }
  // Depths from the roots, iteratively (a run may nest deeply). Spans not reached sit on a parent cycle.
  const reached = new Set<Span>();
  const visit = (root: Span) => {
    const stack: Span[] = [root];
    reached.add(root);
    while (stack.length) {
      const s = stack.pop()!;
      s.children.sort((a, b) => firstSeq(a) - firstSeq(b));
      for (const c of s.children) {
        if (reached.has(c)) continue;
        reached.add(c);
        c.depth = s.depth + 1;
        stack.push(c);
      }
    }
  };
  for (const r of roots) visit(r);
  const unreached = [...all.values()].filter((s) => !reached.has(s)).sort((a, b) => firstSeq(a) - firstSeq(b));
  for (const s of unreached) {
    if (reached.has(s)) continue;
    // break the cycle here: detach from its parent, show it at the root
    const parent = all.get(s.parent_span_id!)!;
    parent.children = parent.children.filter((c) => c !== s);
    s.orphan = true;
    roots.push(s);
    visit(s);
  }
  roots.sort((a, b) => Number(a.orphan) - Number(b.orphan) || firstSeq(a) - firstSeq(b));
  const unattached: TreeViolation[] = [];
  for (const v of violations) {
    const span = bySeq.get(v.seq);
    if (span) span.violations.push(v);
    else unattached.push(v);
  }
  return { spans: roots, all, bySeq, unattached };
}

function toTreeEvent(e: TreeInputEvent): TreeEvent {
  return {
    seq: e.seq,
    id: e.id,
    type: e.type,
    name: e.name,
    agent: e.agent,
    time: e.time,
    duration_ms: e.duration_ms,
    status: e.status,
    attributes: e.attributes,
  };
}

export function buildTree(traceId: string, events: readonly TreeInputEvent[], violations: readonly TreeViolation[]): Tree {
  const b = build(events, violations);
  let start = Infinity;
  let end = -Infinity;
  let maxDepth = 0;
  let orphans = 0;
  for (const s of b.all.values()) {
    start = Math.min(start, Date.parse(s.start_time));
    end = Math.max(end, Date.parse(s.end_time));
    maxDepth = Math.max(maxDepth, s.depth);
    if (s.orphan) orphans++;
  }
  return {
    trace_id: traceId,
    format: 'tree',
    session_id: events.find((e) => e.session_id !== null)?.session_id ?? null,
    agents: [...new Set(events.map((e) => e.agent))].sort(),
    status: runStatus(events),
    start_time: new Date(start).toISOString(),
    end_time: new Date(end).toISOString(),
    duration_ms: end - start,
    event_count: events.length,
    span_count: b.all.size,
    orphan_count: orphans,
    max_depth: maxDepth,
    violation_count: violations.length,
    spans: b.spans,
    unattached_violations: b.unattached,
  };
}

/** Every event in time order (seq breaks ties), with its span's depth and the violations it caused. */
export function buildTimeline(traceId: string, events: readonly TreeInputEvent[], violations: readonly TreeViolation[]): Timeline {
  const b = build(events, []);
  const start = events.reduce((m, e) => Math.min(m, Date.parse(e.time)), Infinity);
  const bySeqViolations = new Map<number, TreeViolation[]>();
  for (const v of violations) bySeqViolations.set(v.seq, [...(bySeqViolations.get(v.seq) ?? []), v]);
  const items = events
    .map((e) => ({ e, t: Date.parse(e.time) }))
    .sort((x, y) => x.t - y.t || x.e.seq - y.e.seq)
    .map(({ e, t }) => {
      const span = b.bySeq.get(e.seq)!;
      return {
        ...toTreeEvent(e),
        span_id: e.span_id,
        parent_span_id: span.parent_span_id,
        depth: span.depth,
        orphan: span.orphan,
        offset_ms: t - start,
        violations: bySeqViolations.get(e.seq) ?? [],
      };
    });
  return { trace_id: traceId, format: 'timeline', start_time: new Date(start).toISOString(), items };
}
