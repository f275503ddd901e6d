import { Readable } from 'node:stream';
import { Injectable } from '@nestjs/common';
import { NotFoundError } from '../common/problem';
import { toHex } from '../core/encoding';
import { csvLine } from './csv';
import type { EventItem, EventsQuery, TraceSummary, TracesQuery } from './dto/query.dto';
import { decodeCursor, encodeCursor } from './page-cursor';
import { ProjectorService } from './projector.service';
import { QueryRepository, type EventFilter, type EventRow, type TraceFilter, type TraceSummaryRow } from './query.repository';
import { buildTimeline, buildTree, type Timeline, type Tree, type TreeInputEvent } from './trace-tree';

const DEFAULT_LIMIT = 100;
/** Rows fetched per keyset page while streaming CSV or NDJSON. */
const STREAM_PAGE = 1000;

export type ExportFormat = 'csv' | 'ndjson';

const EVENT_CSV_COLUMNS = [
  'seq', 'id', 'time', 'received_at', 'trace_id', 'span_id', 'parent_span_id', 'session_id', 'type', 'name', 'agent',
  'status', 'duration_ms', 'leaf_hash', 'chain_hash', 'attributes',
] as const;

const TRACE_CSV_COLUMNS = [
  'trace_id', 'session_id', 'status', 'first_time', 'last_time', 'duration_ms', 'agents', 'tools', 'event_count',
  'error_count', 'violation_count', 'counts', 'violations_by_severity', 'first_seq', 'last_seq',
] as const;

/**
 * The audit trail, runs and the trace tree. Lists read the read models after
 * `projector.catchUp` (read-your-writes when the projection is a little
 * behind); the tree reads the ledger itself, so it is always current.
 */
@Injectable()
export class QueryService {
  constructor(
    private readonly repo: QueryRepository,
    private readonly projector: ProjectorService,
  ) {}

  async events(tenant: string, q: EventsQuery) {
    const after = q.cursor === undefined ? undefined : decodeCursor('events', q.order, q.cursor);
    const projected = await this.projector.catchUp(tenant);
    const limit = q.limit ?? DEFAULT_LIMIT;
    const rows = await this.repo.events(tenant, eventFilter(q), q.order, after, limit + 1);
    const page = rows.slice(0, limit);
    return {
      events: page.map(toEventItem),
      next_cursor: rows.length > limit ? encodeCursor('events', q.order, Number(page[page.length - 1].seq)) : null,
      projected_seq: projected,
    };
  }

  async traces(tenant: string, q: TracesQuery) {
    const after = q.cursor === undefined ? undefined : decodeCursor('traces', q.order, q.cursor);
    const projected = await this.projector.catchUp(tenant);
    const limit = q.limit ?? DEFAULT_LIMIT;
    const rows = await this.repo.traces(tenant, traceFilter(q), q.order, after, limit + 1);
    const page = rows.slice(0, limit);
    return {
      traces: page.map(toTraceSummary),
      next_cursor: rows.length > limit ? encodeCursor('traces', q.order, Number(page[page.length - 1].first_seq)) : null,
      projected_seq: projected,
    };
  }

  /**
   * Every matching event as CSV or NDJSON, written page by page (keyset
   * pages of STREAM_PAGE, pulled as the client reads: constant memory).
   * The cursor is validated and the projection caught up before the first byte.
   */
  async exportEvents(tenant: string, q: EventsQuery, format: ExportFormat): Promise<Readable> {
    let after = q.cursor === undefined ? undefined : decodeCursor('events', q.order, q.cursor);
    await this.projector.catchUp(tenant);
    const filter = eventFilter(q);
    const repo = this.repo;
    let left = q.limit ?? Infinity;
    async function* lines() {
      if (format === 'csv') yield csvLine(EVENT_CSV_COLUMNS);
      while (left > 0) {
        const rows = await repo.events(tenant, filter, q.order, after, Math.min(STREAM_PAGE, left));
        const out: string[] = [];
        for (const r of rows) {
          const item = toEventItem(r);
          out.push(format === 'csv' ? eventCsv(item) : `${JSON.stringify(item)}\n`);
        }
        if (out.length) yield out.join('');
        left -= rows.length;
        if (rows.length < STREAM_PAGE) return;
        after = Number(rows[rows.length - 1].seq);
      }
    }
    return Readable.from(lines(), { objectMode: false });
  }

  async exportTraces(tenant: string, q: TracesQuery, format: ExportFormat): Promise<Readable> {
    let after = q.cursor === undefined ? undefined : decodeCursor('traces', q.order, q.cursor);
    await this.projector.catchUp(tenant);
    const filter = traceFilter(q);
    const repo = this.repo;
    let left = q.limit ?? Infinity;
    async function* lines() {
      if (format === 'csv') yield csvLine(TRACE_CSV_COLUMNS);
      while (left > 0) {
        const rows = await repo.traces(tenant, filter, q.order, after, Math.min(STREAM_PAGE, left));
        const out: string[] = [];
        for (const r of rows) {
          const t = toTraceSummary(r);
          out.push(format === 'csv' ? csvLine(TRACE_CSV_COLUMNS.map((c) => t[c])) : `${JSON.stringify(t)}\n`);
        }
        if (out.length) yield out.join('');
        left -= rows.length;
        if (rows.length < STREAM_PAGE) return;
        after = Number(rows[rows.length - 1].first_seq);
      }
    }
    return Readable.from(lines(), { objectMode: false });
  }

  /** One run as a span tree or a timeline; a trace without entries in this tenant is 404. */
  async trace(tenant: string, traceId: string, format: 'tree' | 'timeline'): Promise<Tree | Timeline> {
    const [rows, violations] = await Promise.all([this.repo.treeRows(tenant, traceId), this.repo.traceViolations(tenant, traceId)]);
    // the service's own entries (violations, acknowledgements) are shown as the violations they record
    const events: TreeInputEvent[] = [];
    for (const r of rows) {
      if (/^(ledger|policy)\./.test(r.type)) continue;
      const body = r.body === null ? null : (JSON.parse(r.body) as { time?: string; attributes?: Record<string, unknown> });
      events.push({
        seq: Number(r.seq),
        id: r.event_id,
        span_id: r.span_id,
        parent_span_id: r.parent_span_id,
        session_id: r.session_id,
        type: r.type,
        name: r.name,
        agent: r.agent,
        time: body?.time ?? r.event_time.toISOString(),
        duration_ms: r.duration_ms,
        status: r.status,
        attributes: body ? (body.attributes ?? {}) : null,
      });
    }
    if (!events.length) throw new NotFoundError(`trace ${traceId}`);
    const vs = violations.map((v) => ({ ...v, seq: Number(v.seq), ledger_seq: Number(v.ledger_seq) }));
    return format === 'timeline' ? buildTimeline(traceId, events, vs) : buildTree(traceId, events, vs);
  }
}

function eventFilter(q: EventsQuery): EventFilter {
  return {
    trace_id: q.trace_id,
    session_id: q.session_id,
    agent: q.agent,
    type: q.type,
    name: q.name,
    status: q.status,
    from: q.from,
    to: q.to,
    attr: q.attr,
  };
}

function traceFilter(q: TracesQuery): TraceFilter {
  return {
    agent: q.agent,
    status: q.status,
    from: q.from,
    to: q.to,
    has_violations: q.has_violations,
    tool: q.tool,
    session_id: q.session_id,
  };
}

function toEventItem(r: EventRow): EventItem {
  return {
    seq: Number(r.seq),
    id: r.event_id,
    received_at: r.received_at.toISOString(),
    leaf_hash: toHex(r.leaf_hash),
    chain_hash: toHex(r.chain_hash),
    body: r.body === null ? null : (JSON.parse(r.body) as Record<string, unknown>),
  };
}

function eventCsv(item: EventItem): string {
  const b = (item.body ?? {}) as Record<string, unknown>;
  return csvLine([
    item.seq, item.id, b.time, item.received_at, b.trace_id, b.span_id, b.parent_span_id, b.session_id, b.type, b.name,
    b.agent, b.status, b.duration_ms, item.leaf_hash, item.chain_hash, b.attributes ?? null,
  ]);
}

function toTraceSummary(r: TraceSummaryRow): TraceSummary {
  const first = r.first_time?.getTime();
  const last = r.last_time?.getTime();
  return {
    trace_id: r.trace_id,
    session_id: r.session_id,
    agents: r.agents,
    tools: r.tools,
    first_time: r.first_time?.toISOString() ?? null,
    last_time: r.last_time?.toISOString() ?? null,
    duration_ms: first !== undefined && last !== undefined ? last - first : null,
    status: r.status as TraceSummary['status'],
    counts: r.counts,
    event_count: r.event_count,
    error_count: r.error_count,
    violation_count: r.violation_count,
    violations_by_severity: r.violations_by_severity,
    first_seq: Number(r.first_seq),
    last_seq: Number(r.last_seq),
  };
}
