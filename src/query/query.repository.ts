import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import { containmentCandidates } from './attribute-filter';
import type { AttributeFilter } from './dto/query.dto';

/** Builds a WHERE clause with numbered parameters. */
class Where {
  readonly params: unknown[] = [];
  private readonly parts: string[] = [];

  constructor(tenant: string, column = 'tenant_id') {
    this.add(`${column} = ?`, tenant);
  }

  /** `sql` with each `?` replaced by the next parameter. */
  add(sql: string, ...values: unknown[]): this {
    let i = 0;
    this.parts.push(sql.replace(/\?/g, () => `$${this.params.push(values[i++])}`));
    return this;
  }

  param(value: unknown): string {
    return `$${this.params.push(value)}`;
  }

  get sql(): string {
    return this.parts.join(' AND ');
  }
}

export interface EventFilter {
  trace_id?: string;
  session_id?: string;
  agent?: string;
  type?: string;
  name?: string;
  status?: string;
  from?: string;
  to?: string;
  attr: AttributeFilter[];
}

export interface EventRow {
  seq: string;
  event_id: string;
  received_at: Date;
  leaf_hash: Buffer;
  chain_hash: Buffer;
  body: string | null;
}

export interface TraceFilter {
  agent?: string;
  status?: string;
  from?: string;
  to?: string;
  has_violations?: boolean;
  tool?: string;
  session_id?: string;
}

export interface TraceSummaryRow {
  trace_id: string;
  session_id: string | null;
  agents: string[];
  tools: string[];
  first_time: Date | null;
  last_time: Date | null;
  status: string;
  counts: Record<string, number>;
  event_count: number;
  error_count: number;
  violation_count: number;
  violations_by_severity: Record<string, number>;
  first_seq: string;
  last_seq: string;
}

export interface TreeRow {
  seq: string;
  span_id: string;
  parent_span_id: string | null;
  session_id: string | null;
  type: string;
  agent: string;
  body: string | null;
  name: string | null;
  event_time: Date;
  status: string | null;
  duration_ms: number | null;
  event_id: string;
}

export interface ViolationRow {
  id: string;
  rule_id: string;
  severity: string;
  message: string;
  seq: string;
  ledger_seq: string;
  status: string;
}

export interface ReportFilter {
  from?: string;
  to?: string;
  agent?: string;
}

/**
 * Read queries of the query module. The lists and reports read the read
 * models (query_events, trace_summaries, tool_calls, owned by the projector
 * repository); the trace tree reads the ledger itself (index
 * ledger_entries_trace, then bodies by primary key) and the violations table
 * of the policy module, read-only. Each query names the index it relies on;
 * docs/query-plans.md holds their EXPLAIN output at a million events.
 */
@Injectable()
export class QueryRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * One keyset page of events: the seqs from query_events (an index per
   * equality filter, each (tenant_id, col, seq); the GIN index for attribute
   * filters; the primary key otherwise), then records and bodies by primary key.
   */
  events(tenant: string, f: EventFilter, order: 'asc' | 'desc', after: number | undefined, limit: number): Promise<EventRow[]> {
    const { sql, params } = eventsSql(tenant, f, order, after, limit);
    return this.ds.query(sql, params);
  }

  /** One keyset page of runs, by first seq (index trace_summaries_first_seq; GIN on agents and tools). */
  traces(tenant: string, f: TraceFilter, order: 'asc' | 'desc', after: number | undefined, limit: number): Promise<TraceSummaryRow[]> {
    const { sql, params } = tracesSql(tenant, f, order, after, limit);
    return this.ds.query(sql, params);
  }

  /** Every entry of a trace with its body, in seq order (index ledger_entries_trace, bodies by primary key). */
  treeRows(tenant: string, traceId: string): Promise<TreeRow[]> {
    return this.ds.query(
      `SELECT e.seq, e.span_id, e.parent_span_id, e.session_id, e.type, e.agent, e.name, e.event_time, e.status,
              e.duration_ms, e.event_id::text AS event_id, b.body
       FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE e.tenant_id = $1 AND e.trace_id = $2
       ORDER BY e.seq`,
      [tenant, traceId],
    );
  }

  /** The policy module's violations of a trace, read-only (index violations_trace). */
  traceViolations(tenant: string, traceId: string): Promise<ViolationRow[]> {
    return this.ds.query(
      `SELECT id::text AS id, rule_id, severity, message, seq, ledger_seq, status
       FROM violations WHERE tenant_id = $1 AND trace_id = $2 ORDER BY ledger_seq`,
      [tenant, traceId],
    );
  }

  // ---- reports ------------------------------------------------------------------

  /**
   * Per tool: calls, errors, exact percentiles (percentile_cont's values) and
   * the slowest calls, from one snapshot (a repeatable-read transaction). When
   * the range holds every call of the tenant and no agent is given, the counts
   * come from the per-day rollup (tool_call_days) and each percentile from the
   * values at its ranks (ranksStats); otherwise one aggregate over the calls in
   * range (index tool_calls_agent_time or tool_calls_time, index-only).
   */
  toolReport(tenant: string, f: ReportFilter, perTool: number): Promise<{ stats: ToolStatsRow[]; slow: SlowCallRow[] }> {
    return this.ds.transaction('REPEATABLE READ', async (tx) => {
      const stats = (await this.coversEveryCall(tx, tenant, f)) ? await ranksStats(tx, tenant) : await aggregateStats(tx, tenant, f);
      const slow = perTool > 0 && stats.length ? await slowestCalls(tx, tenant, f, stats.map((s) => s.tool), perTool) : [];
      return { stats, slow };
    });
  }

  /** No agent, and [from, to) holds every day the rollup has calls on (primary key of tool_call_days). */
  private async coversEveryCall(tx: EntityManager, tenant: string, f: ReportFilter): Promise<boolean> {
    if (f.agent) return false;
    if (!f.from && !f.to) return true;
    const [row] = (await tx.query(
      `SELECT ($2::timestamptz IS NULL OR $2::timestamptz <= min(day)::timestamp AT TIME ZONE 'UTC')
          AND ($3::timestamptz IS NULL OR $3::timestamptz >= (max(day) + 1)::timestamp AT TIME ZONE 'UTC') AS covers
       FROM tool_call_days WHERE tenant_id = $1 AND calls > 0`,
      [tenant, f.from ?? null, f.to ?? null],
    )) as { covers: boolean | null }[];
    return row.covers !== false;
  }

  /**
   * Same tool, identical args, min_repeats times or more in one run. The
   * candidates are the rollup's groups with two or more calls
   * (tool_call_repeats, which holds every group; index tool_call_repeats_calls); a group whose calls
   * all fall inside the agent and time filter is taken as it is, one the
   * filter cuts is recounted from its calls (index tool_calls_repeats).
   */
  repeatedCalls(tenant: string, f: ReportFilter, minRepeats: number, limit: number): Promise<{ trace_id: string; tool: string; n: string; first_seq: string; last_seq: string; args: unknown }[]> {
    const { sql, params } = repeatedCallsSql(tenant, f, minRepeats, limit);
    return this.ds.query(sql, params);
  }

  /** Runs with more model calls than `max` (trace_summaries, one row per run). */
  modelHeavyRuns(tenant: string, f: ReportFilter, max: number, limit: number): Promise<{ trace_id: string; model_calls: string; agents: string[]; status: string }[]> {
    const w = traceWhere(tenant, { from: f.from, to: f.to, agent: f.agent });
    w.add(`COALESCE((counts ->> 'model.call')::bigint, 0) > ?`, max);
    return this.ds.query(
      `SELECT trace_id, (counts ->> 'model.call')::bigint AS model_calls, agents, status
       FROM trace_summaries WHERE ${w.sql}
       ORDER BY model_calls DESC, first_seq LIMIT ${w.param(limit)}`,
      w.params,
    );
  }

  /** Per agent: runs and failed runs (trace_summaries, one row per run and agent). */
  agentRuns(tenant: string, f: ReportFilter): Promise<{ agent: string; runs: string; failed: string }[]> {
    const w = traceWhere(tenant, { from: f.from, to: f.to });
    if (f.agent) w.add(`a = ?`, f.agent);
    return this.ds.query(
      `SELECT a AS agent, count(*) AS runs, count(*) FILTER (WHERE status = 'failed') AS failed
       FROM trace_summaries, unnest(agents) AS a WHERE ${w.sql} GROUP BY a ORDER BY a`,
      w.params,
    );
  }

  /**
   * Violations by agent and severity, from the policy module's table
   * (read-only); the time range applies to the offending event's time.
   */
  agentViolations(tenant: string, f: ReportFilter): Promise<{ agent: string; severity: string; n: string }[]> {
    const w = new Where(tenant, 'v.tenant_id');
    w.add(`v.agent IS NOT NULL`);
    if (f.agent) w.add(`v.agent = ?`, f.agent);
    if (f.from) w.add(`e.event_time >= ?::timestamptz`, f.from);
    if (f.to) w.add(`e.event_time < ?::timestamptz`, f.to);
    const join = f.from || f.to ? `JOIN query_events e ON e.tenant_id = v.tenant_id AND e.seq = v.seq` : '';
    return this.ds.query(
      `SELECT v.agent, v.severity, count(*) AS n FROM violations v ${join} WHERE ${w.sql} GROUP BY 1, 2`,
      w.params,
    );
  }
}

export interface ToolStatsRow {
  tool: string;
  calls: string;
  errors: string;
  /** p50, p95, p99; null without any duration */
  p: (number | null)[] | null;
}

export interface SlowCallRow {
  tool: string;
  trace_id: string;
  seq: string;
  duration_ms: number;
}

const PERCENTILES = [0.5, 0.95, 0.99];

/** Per tool, one percentile_cont over the calls in range (index-only on tool_calls_agent_time or tool_calls_time). */
function aggregateStats(tx: EntityManager, tenant: string, f: ReportFilter): Promise<ToolStatsRow[]> {
  const { sql, params } = aggregateStatsSql(tenant, f);
  return tx.query(sql, params);
}

/** The SQL of aggregateStats (exported for the benchmark's EXPLAIN). */
export function aggregateStatsSql(tenant: string, f: ReportFilter) {
  const w = reportWhere(tenant, f, 'event_time', 'agent');
  const sql = `SELECT tool, count(*) AS calls, count(*) FILTER (WHERE error) AS errors,
            percentile_cont(${w.param(PERCENTILES)}::float8[]) WITHIN GROUP (ORDER BY duration_ms) AS p
     FROM tool_calls WHERE ${w.sql} GROUP BY tool ORDER BY tool COLLATE "C"`;
  return { sql, params: w.params };
}

/**
 * Every call of the tenant: the counts from tool_call_days; each percentile
 * as percentile_cont computes it (pos = p * (n - 1) in float8, the values at
 * ranks floor(pos) and ceil(pos), linear between them), the two values read
 * from index tool_calls_tool by OFFSET from the nearer end of the tool's
 * durations: about 0.56 of the calls read, none sorted.
 */
function ranksStats(tx: EntityManager, tenant: string): Promise<ToolStatsRow[]> {
  const { sql, params } = ranksStatsSql(tenant);
  return tx.query(sql, params);
}

/** The SQL of ranksStats (exported for the benchmark's EXPLAIN). */
export function ranksStatsSql(tenant: string) {
  const sql = `WITH c AS (
       SELECT tool, sum(calls) AS calls, sum(errors) AS errors, sum(timed)::bigint AS timed
       FROM tool_call_days WHERE tenant_id = $1 GROUP BY tool HAVING sum(calls) > 0
     ),
     r AS (
       SELECT c.tool, p.i, c.timed, p.p * (c.timed - 1)::float8 AS pos
       FROM c CROSS JOIN unnest($2::float8[]) WITH ORDINALITY AS p(p, i) WHERE c.timed > 0
     ),
     -- MATERIALIZED: each rank's values read once (inlined, every reference to vals would repeat the index walk)
     v AS MATERIALIZED (
       SELECT r.tool, r.i, r.pos, floor(r.pos)::bigint AS lo, ceil(r.pos)::bigint AS hi,
              CASE WHEN floor(r.pos) < r.timed / 2
                THEN ARRAY(SELECT t.duration_ms FROM tool_calls t WHERE t.tenant_id = $1 AND t.tool = r.tool AND t.duration_ms IS NOT NULL
                           ORDER BY t.duration_ms OFFSET floor(r.pos)::bigint LIMIT 2)
                ELSE ARRAY(SELECT t.duration_ms FROM tool_calls t WHERE t.tenant_id = $1 AND t.tool = r.tool AND t.duration_ms IS NOT NULL
                           ORDER BY t.duration_ms DESC OFFSET r.timed - 1 - ceil(r.pos)::bigint LIMIT 2)
              END AS vals,
              floor(r.pos) < r.timed / 2 AS ascending
       FROM r
     ),
     q AS (
       SELECT tool, i,
              CASE WHEN ascending THEN vals[1] ELSE CASE WHEN hi = lo THEN vals[1] ELSE vals[2] END END AS v_lo,
              CASE WHEN ascending THEN CASE WHEN hi = lo THEN vals[1] ELSE vals[2] END ELSE vals[1] END AS v_hi,
              pos - lo AS frac, hi = lo AS exact
       FROM v
     )
     SELECT c.tool, c.calls, c.errors,
            CASE WHEN c.timed = 0 THEN NULL ELSE
              ARRAY(SELECT CASE WHEN q.exact THEN q.v_lo ELSE q.v_lo + q.frac * (q.v_hi - q.v_lo) END
                    FROM q WHERE q.tool = c.tool ORDER BY q.i) END AS p
     FROM c ORDER BY c.tool COLLATE "C"`;
  return { sql, params: [tenant, PERCENTILES] as unknown[] };
}

/** The slowest calls of each tool, for its slowest traces (index tool_calls_tool backwards, index-only). */
function slowestCalls(tx: EntityManager, tenant: string, f: ReportFilter, tools: string[], perTool: number): Promise<SlowCallRow[]> {
  const w = reportWhere(tenant, f, 'c.event_time', 'c.agent', 'c.tenant_id');
  const toolsParam = w.param(tools);
  return tx.query(
    `SELECT t.tool, s.trace_id, s.seq, s.duration_ms
     FROM unnest(${toolsParam}::text[]) AS t(tool)
     CROSS JOIN LATERAL (
       SELECT c.trace_id, c.seq, c.duration_ms FROM tool_calls c
       WHERE ${w.sql} AND c.tool = t.tool AND c.duration_ms IS NOT NULL
       ORDER BY c.duration_ms DESC LIMIT ${w.param(perTool)}
     ) s`,
    w.params,
  );
}

/** The SQL of repeatedCalls (exported for the benchmark's EXPLAIN). */
export function repeatedCallsSql(tenant: string, f: ReportFilter, minRepeats: number, limit: number) {
  const w = new Where(tenant, 'r.tenant_id');
  const min = w.param(minRepeats);
  w.add(`r.calls >= ${min}`);
  // `whole`: every call of the group passes the filter; `calls`: the filter on one call
  const whole: string[] = [];
  const calls = ['t.tenant_id = $1'];
  if (f.agent) {
    const agent = w.param(f.agent);
    w.add(`r.agents @> ARRAY[${agent}]::text[]`);
    whole.push(`r.agents = ARRAY[${agent}]::text[]`);
    calls.push(`t.agent = ${agent}`);
  }
  if (f.from) {
    const from = w.param(f.from);
    w.add(`r.last_time >= ${from}::timestamptz`);
    whole.push(`r.first_time >= ${from}::timestamptz`);
    calls.push(`t.event_time >= ${from}::timestamptz`);
  }
  if (f.to) {
    const to = w.param(f.to);
    w.add(`r.first_time < ${to}::timestamptz`);
    whole.push(`r.last_time < ${to}::timestamptz`);
    calls.push(`t.event_time < ${to}::timestamptz`);
  }
  const lim = w.param(limit);
  const loops = whole.length
    ? `SELECT r.trace_id, r.tool, r.calls AS n, r.first_seq, r.last_seq FROM candidates r WHERE ${whole.join(' AND ')}
       UNION ALL
       SELECT r.trace_id, r.tool, c.n, c.first_seq, c.last_seq FROM candidates r
       CROSS JOIN LATERAL (
         SELECT count(*) AS n, min(t.seq) AS first_seq, max(t.seq) AS last_seq FROM tool_calls t
         WHERE ${calls.join(' AND ')} AND t.trace_id = r.trace_id AND t.tool = r.tool AND t.args_digest = r.args_digest
       ) c
       WHERE NOT (${whole.join(' AND ')}) AND c.n >= ${min}`
    : `SELECT r.trace_id, r.tool, r.calls AS n, r.first_seq, r.last_seq FROM candidates r`;
  const sql = `WITH candidates AS (SELECT * FROM tool_call_repeats r WHERE ${w.sql}),
     loops AS (${loops} ORDER BY n DESC, first_seq LIMIT ${lim})
     SELECT l.trace_id, l.tool, l.n, l.first_seq, l.last_seq, e.attributes -> 'args' AS args
     FROM loops l LEFT JOIN query_events e ON e.tenant_id = $1 AND e.seq = l.first_seq
     ORDER BY l.n DESC, l.first_seq`;
  return { sql, params: w.params };
}

function traceWhere(tenant: string, f: TraceFilter): Where {
  const w = new Where(tenant);
  if (f.agent) w.add(`agents @> ARRAY[?]::text[]`, f.agent);
  if (f.tool) w.add(`tools @> ARRAY[?]::text[]`, f.tool);
  if (f.status) w.add(`status = ?`, f.status);
  if (f.session_id) w.add(`session_id = ?`, f.session_id);
  if (f.has_violations !== undefined) w.add(f.has_violations ? `violation_count > 0` : `violation_count = 0`);
  // runs with an event in [from, to)
  if (f.from) w.add(`last_time >= ?::timestamptz`, f.from);
  if (f.to) w.add(`first_time < ?::timestamptz`, f.to);
  return w;
}

function reportWhere(tenant: string, f: ReportFilter, timeCol: string, agentCol: string, tenantCol = 'tenant_id'): Where {
  const w = new Where(tenant, tenantCol);
  if (f.agent) w.add(`${agentCol} = ?`, f.agent);
  if (f.from) w.add(`${timeCol} >= ?::timestamptz`, f.from);
  if (f.to) w.add(`${timeCol} < ?::timestamptz`, f.to);
  return w;
}

/** The SQL of one events page (exported for the benchmark's EXPLAIN: docs/query-plans.md shows exactly what the API runs). */
export function eventsSql(tenant: string, f: EventFilter, order: 'asc' | 'desc', after: number | undefined, limit: number) {
  const w = new Where(tenant);
  for (const col of ['trace_id', 'session_id', 'agent', 'type', 'name', 'status'] as const) {
    if (f[col] !== undefined) w.add(`${col} = ?`, f[col]);
  }
  if (f.from) w.add(`event_time >= ?::timestamptz`, f.from);
  if (f.to) w.add(`event_time < ?::timestamptz`, f.to);
  for (const a of f.attr) {
    w.add(`(${containmentCandidates(a).map((c) => `attributes @> ${w.param(c)}::jsonb`).join(' OR ')})`);
  }
  if (after !== undefined) w.add(order === 'asc' ? `seq > ?` : `seq < ?`, after);
  const dir = order === 'asc' ? 'ASC' : 'DESC';
  const sql = `WITH page AS (SELECT seq FROM query_events WHERE ${w.sql} ORDER BY seq ${dir} LIMIT ${w.param(limit)})
     SELECT e.seq, e.event_id::text AS event_id, e.received_at, e.leaf_hash, e.chain_hash, b.body
     FROM page p
     JOIN ledger_entries e ON e.tenant_id = $1 AND e.seq = p.seq
     LEFT JOIN ledger_bodies b ON b.tenant_id = $1 AND b.seq = p.seq
     ORDER BY e.seq ${dir}`;
  return { sql, params: w.params };
}

/** The SQL of one runs page (exported for the benchmark's EXPLAIN). */
export function tracesSql(tenant: string, f: TraceFilter, order: 'asc' | 'desc', after: number | undefined, limit: number) {
  const w = traceWhere(tenant, f);
  if (after !== undefined) w.add(order === 'asc' ? `first_seq > ?` : `first_seq < ?`, after);
  const dir = order === 'asc' ? 'ASC' : 'DESC';
  const sql = `SELECT trace_id, session_id, agents, tools, first_time, last_time, status, counts, event_count, error_count,
            violation_count, violations_by_severity, first_seq, last_seq
     FROM trace_summaries WHERE ${w.sql} ORDER BY first_seq ${dir} LIMIT ${w.param(limit)}`;
  return { sql, params: w.params };
}
