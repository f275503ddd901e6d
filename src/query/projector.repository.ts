import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import { tenantsPastCursorSql } from '../ledger/tenants-behind';

interface ToolRow {
  seq: string;
  k: string;
  type: string;
  name: string;
  duration_ms: number | null;
  status: string | null;
}

/** A call's duration and error before a page completed it. */
interface CallBefore {
  seq: string;
  duration_ms: number | null;
  error: boolean;
}

/** Types the service writes itself (ledger.*, policy.*): producers cannot send them. */
const SERVICE = `(type LIKE 'ledger.%' OR type LIKE 'policy.%')`;

/**
 * Owns the query read models (query_cursors, query_events, trace_summaries,
 * tool_calls, tool_call_days, tool_call_repeats) and writes them. Reads ledger_entries and ledger_bodies, never
 * writes them. Each page is projected by a handful of set-based statements
 * that run inside PostgreSQL (no row travels to Node), in the transaction
 * that moves the tenant's cursor.
 */
@Injectable()
export class ProjectorRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  async cursor(tenant: string): Promise<number> {
    const rows: { seq: string }[] = await this.ds.query(`SELECT seq FROM query_cursors WHERE tenant_id = $1`, [tenant]);
    return rows.length ? Number(rows[0].seq) : 0;
  }

  /** Tenants whose ledger goes past their cursor (skip scan over the ledger's primary key). */
  async tenantsBehind(): Promise<string[]> {
    const rows: { tenant_id: string }[] = await this.ds.query(tenantsPastCursorSql('query_cursors'));
    return rows.map((r) => r.tenant_id);
  }

  /**
   * Projects the entries after the tenant's cursor, at most `pageSize` of
   * them, and moves the cursor, in one transaction. The cursor row is locked
   * first (FOR UPDATE), so two processes never project the same page: the
   * second one waits, then starts from the moved cursor. Seqs are gap-free
   * and committed in order, so (cursor, cursor + pageSize] is exactly the
   * next page. Returns the new cursor and how many entries were projected.
   */
  async projectPage(tenant: string, pageSize: number): Promise<{ seq: number; projected: number }> {
    return this.ds.transaction(async (tx) => {
      // Every statement below reads one page by primary key and joins by index. The read models grow by
      // millions of rows between autovacuum's ANALYZE runs; with stale statistics the planner picks hash
      // joins over whole tables and each page costs O(table). Pin the nested-loop, index plans.
      await tx.query(`SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_seqscan = off`);
      await tx.query(`INSERT INTO query_cursors (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING`, [tenant]);
      const [{ seq: cur }] = (await tx.query(`SELECT seq FROM query_cursors WHERE tenant_id = $1 FOR UPDATE`, [tenant])) as {
        seq: string;
      }[];
      const from = Number(cur);
      const [{ to }] = (await tx.query(
        `SELECT max(seq) AS to FROM ledger_entries WHERE tenant_id = $1 AND seq > $2 AND seq <= $3`,
        [tenant, from, from + pageSize],
      )) as { to: string | null }[];
      if (to === null) return { seq: from, projected: 0 };
      const end = Number(to);
      await this.projectRange(tx, tenant, from, end);
      await tx.query(`UPDATE query_cursors SET seq = $2, updated_at = now() WHERE tenant_id = $1`, [tenant, end]);
      return { seq: end, projected: end - from };
    });
  }

  /**
   * Completes the tool calls of the spans with a tool.call or tool.result in
   * (from, to]: duration = the call's own, else its first result's; error =
   * either has status error. The matching runs here, with lookups the planner
   * cannot get wrong (primary key ranges and `= ANY` on an index), not as a
   * join whose plan depends on statistics of tables growing under it.
   */
  private async completeToolCalls(tx: EntityManager, tenant: string, from: number, to: number): Promise<CallBefore[]> {
    const cols = `seq, trace_id || span_id AS k, type, name, duration_ms, status`;
    const page: ToolRow[] = await tx.query(
      `SELECT ${cols} FROM query_events
       WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 AND type IN ('tool.call', 'tool.result') AND name IS NOT NULL`,
      [tenant, from, to],
    );
    if (!page.some((r) => r.type === 'tool.result')) return [];
    // the same spans' earlier tool events (index query_events_tool_spans)
    const earlier: ToolRow[] = await tx.query(
      `SELECT ${cols} FROM query_events
       WHERE tenant_id = $1 AND (trace_id || span_id) = ANY($2::text[]) AND type IN ('tool.call', 'tool.result')
         AND name IS NOT NULL AND seq <= $3`,
      [tenant, [...new Set(page.map((r) => r.k))], from],
    );
    const spans = new Map<string, ToolRow[]>();
    for (const r of [...earlier, ...page]) {
      const key = `${r.k}\u0000${r.name}`;
      const list = spans.get(key);
      if (list) list.push(r);
      else spans.set(key, [r]);
    }
    const seqs: string[] = [];
    const durations: (number | null)[] = [];
    const errors: boolean[] = [];
    for (const rows of spans.values()) {
      const results = rows.filter((r) => r.type === 'tool.result').sort((a, b) => Number(a.seq) - Number(b.seq));
      if (!results.length) continue;
      const resultDuration = results.find((r) => r.duration_ms !== null)?.duration_ms ?? null;
      const resultError = results.some((r) => r.status === 'error');
      for (const c of rows) {
        if (c.type !== 'tool.call') continue;
        seqs.push(c.seq);
        durations.push(c.duration_ms ?? resultDuration);
        errors.push(c.status === 'error' || resultError);
      }
    }
    if (!seqs.length) return [];
    // one statement: `before` reads the snapshot the UPDATE starts from
    return tx.query(
      `WITH u AS (SELECT * FROM unnest($2::bigint[], $3::float8[], $4::boolean[]) AS u(seq, d, e)),
       before AS (
         SELECT t.seq, t.duration_ms, t.error FROM u JOIN tool_calls t ON t.tenant_id = $1 AND t.seq = u.seq WHERE t.seq <= $5
       ),
       updated AS (
         UPDATE tool_calls t SET duration_ms = u.d, error = u.e FROM u WHERE t.tenant_id = $1 AND t.seq = u.seq RETURNING t.seq
       )
       SELECT seq, duration_ms, error FROM before`,
      [tenant, seqs, durations, errors, from],
    );
  }

  /**
   * The tools report's per-day rollup: this page's calls as they are now,
   * plus, for the earlier calls that this page completed, the difference
   * between now and `before`.
   */
  private async rollUpToolCalls(tx: EntityManager, tenant: string, from: number, to: number, before: CallBefore[]): Promise<void> {
    await tx.query(
      `INSERT INTO tool_call_days AS d (tenant_id, tool, day, agent, calls, errors, timed)
       SELECT $1, tool, day, agent, sum(dc), sum(de), sum(dt)
       FROM (
         SELECT tool, (event_time AT TIME ZONE 'UTC')::date AS day, agent, 1 AS dc, error::int AS de, (duration_ms IS NOT NULL)::int AS dt
         FROM tool_calls WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
         UNION ALL
         SELECT t.tool, (t.event_time AT TIME ZONE 'UTC')::date, t.agent, 0, t.error::int - b.e::int,
                (t.duration_ms IS NOT NULL)::int - (b.d IS NOT NULL)::int
         FROM unnest($4::bigint[], $5::float8[], $6::boolean[]) AS b(seq, d, e)
         JOIN tool_calls t ON t.tenant_id = $1 AND t.seq = b.seq
       ) x
       GROUP BY tool, day, agent
       ON CONFLICT (tenant_id, tool, day, agent) DO UPDATE SET
         calls = d.calls + excluded.calls, errors = d.errors + excluded.errors, timed = d.timed + excluded.timed`,
      [tenant, from, to, before.map((b) => b.seq), before.map((b) => b.duration_ms), before.map((b) => b.error)],
    );
  }

  /**
   * Fresh planner statistics for the read models. During a bulk load they
   * grow far faster than autovacuum analyzes them, and stale estimates (one
   * row) turn the per-page index lookups into scans of whole tables. The
   * columns the projector's lookups filter on, not the jsonb and array ones
   * (attributes, counts, agents, tools): a third less time (0.6-0.8 s
   * instead of 1.1-1.2 s at 60k events; the row sample is most of the rest)
   * and autovacuum keeps their statistics for the queries.
   */
  async analyze(): Promise<void> {
    await this.ds.query(
      `ANALYZE query_events (tenant_id, seq, trace_id, span_id, session_id, type, name, agent, status, event_time),
               tool_calls, tool_call_days, tool_call_repeats,
               trace_summaries (tenant_id, trace_id, session_id, first_seq, first_time, status)`,
    );
  }

  /** The read-model rows of entries (from, to]. */
  private async projectRange(tx: EntityManager, tenant: string, from: number, to: number): Promise<void> {
    const range = [tenant, from, to];
    // 1. the events, attributes parsed from the stored body (primary keys of both ledger tables)
    await tx.query(
      `INSERT INTO query_events (tenant_id, seq, trace_id, span_id, parent_span_id, session_id, type, name, agent,
                                 status, duration_ms, event_time, attributes)
       SELECT e.tenant_id, e.seq, e.trace_id, e.span_id, e.parent_span_id, e.session_id, e.type, e.name, e.agent,
              e.status, e.duration_ms, e.event_time, COALESCE(b.body::jsonb -> 'attributes', '{}'::jsonb)
       FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $3`,
      range,
    );
    // 2. tool calls of this page
    await tx.query(
      `INSERT INTO tool_calls (tenant_id, seq, trace_id, span_id, tool, agent, event_time, args_digest, duration_ms, error)
       SELECT tenant_id, seq, trace_id, span_id, name, agent, event_time, md5(COALESCE(attributes -> 'args', 'null'::jsonb)::text),
              duration_ms, status IS NOT DISTINCT FROM 'error'
       FROM query_events
       WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 AND type = 'tool.call' AND name IS NOT NULL`,
      range,
    );
    // 3. a call's duration and error come from its result, which may be in this page or an earlier one;
    //    the tools report's per-day rollup follows both
    const before = await this.completeToolCalls(tx, tenant, from, to);
    await this.rollUpToolCalls(tx, tenant, from, to, before);
    // 4. the loops report's rollup: this page's calls added to their (run, tool, args) group's row, through its
    //    primary key (every group has a row, also with one call: no recount, no plan to get wrong)
    await tx.query(
      `INSERT INTO tool_call_repeats AS r (tenant_id, trace_id, tool, args_digest, calls, first_seq, last_seq, first_time,
                                           last_time, agents)
       SELECT $1, trace_id, tool, args_digest, count(*), min(seq), max(seq), min(event_time), max(event_time),
              array_agg(DISTINCT agent COLLATE "C" ORDER BY agent COLLATE "C")
       FROM tool_calls WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
       GROUP BY trace_id, tool, args_digest
       ON CONFLICT (tenant_id, trace_id, tool, args_digest) DO UPDATE SET
         calls = r.calls + excluded.calls,
         first_seq = LEAST(r.first_seq, excluded.first_seq), last_seq = GREATEST(r.last_seq, excluded.last_seq),
         first_time = LEAST(r.first_time, excluded.first_time), last_time = GREATEST(r.last_time, excluded.last_time),
         agents = ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(r.agents || excluded.agents) x ORDER BY 1)`,
      range,
    );
    // 5. run summaries: this page's producer events and violation entries, merged into each run's row
    await tx.query(
      `WITH page AS (
         SELECT trace_id, seq, session_id, agent, type, name, status, event_time, attributes,
                type = 'policy.violation' AS violation
         FROM query_events
         WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 AND (NOT ${SERVICE} OR type = 'policy.violation')
       ),
       counts AS (
         SELECT trace_id, jsonb_object_agg(type, n) AS counts
         FROM (SELECT trace_id, type, count(*) AS n FROM page WHERE NOT violation GROUP BY 1, 2) x GROUP BY 1
       ),
       severities AS (
         SELECT trace_id, jsonb_object_agg(severity, n) AS by_severity
         FROM (SELECT trace_id, attributes ->> 'severity' AS severity, count(*) AS n
               FROM page WHERE violation AND attributes ->> 'severity' IS NOT NULL GROUP BY 1, 2) x GROUP BY 1
       ),
       runs AS (
         SELECT trace_id,
                min(seq) AS first_seq,
                max(seq) AS last_seq,
                (array_agg(session_id ORDER BY seq) FILTER (WHERE session_id IS NOT NULL AND NOT violation))[1] AS session_id,
                COALESCE(array_agg(DISTINCT agent COLLATE "C" ORDER BY agent COLLATE "C") FILTER (WHERE NOT violation), '{}') AS agents,
                COALESCE(array_agg(DISTINCT name COLLATE "C" ORDER BY name COLLATE "C") FILTER (WHERE type = 'tool.call' AND name IS NOT NULL), '{}') AS tools,
                min(event_time) FILTER (WHERE NOT violation) AS first_time,
                max(event_time) FILTER (WHERE NOT violation) AS last_time,
                (array_agg(type ORDER BY seq DESC) FILTER (WHERE type LIKE 'run.%'))[1] AS run_type,
                max(seq) FILTER (WHERE type LIKE 'run.%') AS status_seq,
                count(*) FILTER (WHERE NOT violation) AS event_count,
                count(*) FILTER (WHERE NOT violation AND status = 'error') AS error_count,
                count(*) FILTER (WHERE violation) AS violation_count
         FROM page GROUP BY trace_id
       )
       INSERT INTO trace_summaries AS s (tenant_id, trace_id, session_id, agents, tools, first_time, last_time, status,
                                         status_seq, counts, event_count, error_count, violation_count,
                                         violations_by_severity, first_seq, last_seq)
       SELECT $1, r.trace_id, r.session_id, r.agents, r.tools, r.first_time, r.last_time,
              CASE r.run_type WHEN 'run.completed' THEN 'completed' WHEN 'run.failed' THEN 'failed'
                              WHEN 'run.interrupted' THEN 'interrupted' WHEN 'run.started' THEN 'running'
                              WHEN 'run.resumed' THEN 'running' ELSE 'unknown' END,
              r.status_seq, COALESCE(c.counts, '{}'), r.event_count, r.error_count, r.violation_count,
              COALESCE(v.by_severity, '{}'), r.first_seq, r.last_seq
       FROM runs r LEFT JOIN counts c USING (trace_id) LEFT JOIN severities v USING (trace_id)
       ON CONFLICT (tenant_id, trace_id) DO UPDATE SET
         session_id = COALESCE(s.session_id, excluded.session_id),
         agents = ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(s.agents || excluded.agents) x ORDER BY 1),
         tools = ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(s.tools || excluded.tools) x ORDER BY 1),
         first_time = LEAST(s.first_time, excluded.first_time),
         last_time = GREATEST(s.last_time, excluded.last_time),
         status = CASE WHEN excluded.status_seq IS NOT NULL THEN excluded.status ELSE s.status END,
         status_seq = COALESCE(excluded.status_seq, s.status_seq),
         counts = query_add_counts(s.counts, excluded.counts),
         event_count = s.event_count + excluded.event_count,
         error_count = s.error_count + excluded.error_count,
         violation_count = s.violation_count + excluded.violation_count,
         violations_by_severity = query_add_counts(s.violations_by_severity, excluded.violations_by_severity),
         last_seq = excluded.last_seq`,
      range,
    );
  }
}
