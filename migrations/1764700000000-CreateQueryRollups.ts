import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Speed of the query module at a million events (issue 5): the loops
 * report's rollup and the indexes that make the filtered lists and the tools
 * report exact index lookups. Plans: docs/query-plans.md.
 *
 * tool_call_repeats holds, per run, tool and args digest, the calls seen so
 * far, once there are two or more (the only groups the loops report can
 * list: min_repeats >= 2). The projector recomputes a group's row from
 * tool_calls whenever a page adds a call to it, so the row is exact whatever
 * the order in which events arrive; the report reads it directly when every
 * call of the group is inside the filter, and recounts the group from
 * tool_calls (index tool_calls_repeats) when the time range or agent filter
 * cuts it. Like the other read models it is rebuilt from the ledger (the
 * backfill below fills it from tool_calls projected before this migration).
 */
export class CreateQueryRollups1764700000000 implements MigrationInterface {
  name = 'CreateQueryRollups1764700000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE tool_call_repeats (
        tenant_id   text        NOT NULL,
        trace_id    text        NOT NULL,
        tool        text        NOT NULL,
        args_digest text        NOT NULL,
        calls       integer     NOT NULL CHECK (calls >= 2),
        first_seq   bigint      NOT NULL,
        last_seq    bigint      NOT NULL,
        first_time  timestamptz NOT NULL,
        last_time   timestamptz NOT NULL,
        -- the agents of the calls, sorted (COLLATE "C"): with an agent filter, {agent} means every call counts
        agents      text[]      NOT NULL,
        PRIMARY KEY (tenant_id, trace_id, tool, args_digest)
      )`);
    // the report: the biggest groups first
    await q.query(`CREATE INDEX tool_call_repeats_calls ON tool_call_repeats (tenant_id, calls DESC, first_seq)`);
    await q.query(`
      INSERT INTO tool_call_repeats (tenant_id, trace_id, tool, args_digest, calls, first_seq, last_seq, first_time, last_time, agents)
      SELECT tenant_id, trace_id, tool, args_digest, count(*), min(seq), max(seq), min(event_time), max(event_time),
             array_agg(DISTINCT agent COLLATE "C" ORDER BY agent COLLATE "C")
      FROM tool_calls GROUP BY tenant_id, trace_id, tool, args_digest HAVING count(*) >= 2`);

    // GET /v1/events?name&status (a tool's failed results): one range of one index instead of filtering a tool's events
    await q.query(
      `CREATE INDEX query_events_name_status ON query_events (tenant_id, name, status, seq) WHERE name IS NOT NULL AND status IS NOT NULL`,
    );
    // GET /v1/events?agent&type&from&to: the rows of one agent and type in the time range, then the newest by seq
    await q.query(`CREATE INDEX query_events_agent_type_time ON query_events (tenant_id, agent, type, event_time)`);

    // the tools report: each tool's calls in duration order, index-only (percentiles over presorted input,
    // the slowest calls from the end), replacing tool_calls_tool
    await q.query(`DROP INDEX tool_calls_tool`);
    await q.query(
      `CREATE INDEX tool_calls_tool ON tool_calls (tenant_id, tool, duration_ms) INCLUDE (error, agent, event_time, trace_id, seq)`,
    );
    // …with an agent and/or a time range: the calls in range, index-only
    await q.query(`CREATE INDEX tool_calls_agent_time ON tool_calls (tenant_id, agent, event_time) INCLUDE (tool, duration_ms, error)`);
    await q.query(`CREATE INDEX tool_calls_time ON tool_calls (tenant_id, event_time) INCLUDE (tool, duration_ms, error)`);

    await q.query(`
      DO $$ BEGIN
        IF current_setting('server_version_num')::int >= 170000 THEN
          EXECUTE 'GRANT MAINTAIN ON tool_call_repeats TO agent_ledger_app';
        END IF;
      END $$`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON tool_call_repeats TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX tool_calls_time`);
    await q.query(`DROP INDEX tool_calls_agent_time`);
    await q.query(`DROP INDEX tool_calls_tool`);
    await q.query(`CREATE INDEX tool_calls_tool ON tool_calls (tenant_id, tool, duration_ms)`);
    await q.query(`DROP INDEX query_events_agent_type_time`);
    await q.query(`DROP INDEX query_events_name_status`);
    await q.query(`DROP TABLE tool_call_repeats`);
  }
}
