import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Read models of the query module (audit trail, runs, reports). They are
 * projections of the ledger, not ledger tables: the projector
 * (src/query/projector.service.ts) follows each tenant's ledger from a stored
 * cursor and writes them in the transaction that advances the cursor, so
 * every entry is projected exactly once and the projected entries are always
 * a gap-free prefix of the ledger (seq 1..query_cursors.seq). The ledger's
 * append path and its indexes are untouched: no index here slows ingest.
 * Everything can be rebuilt from the ledger (drop the rows, reset the cursor).
 *
 * (Timestamp 1764600000000, not 1764500000000: that one is CreateExportIndexes.)
 */
export class CreateQueryModels1764600000000 implements MigrationInterface {
  name = 'CreateQueryModels1764600000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE query_cursors (
        tenant_id  text        NOT NULL PRIMARY KEY,
        -- every entry up to and including this seq is in the read models
        seq        bigint      NOT NULL DEFAULT 0 CHECK (seq >= 0),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);

    // One row per ledger entry: the query columns and the event's attributes as jsonb.
    await q.query(`
      CREATE TABLE query_events (
        tenant_id      text             NOT NULL,
        seq            bigint           NOT NULL,
        trace_id       text             NOT NULL,
        span_id        text             NOT NULL,
        parent_span_id text,
        session_id     text,
        type           text             NOT NULL,
        name           text,
        agent          text             NOT NULL,
        status         text,
        duration_ms    double precision,
        event_time     timestamptz      NOT NULL,
        attributes     jsonb            NOT NULL,
        PRIMARY KEY (tenant_id, seq)
      )`);
    // GET /v1/events keyset pages: one index per equality filter, each ending in seq
    for (const col of ['trace_id', 'session_id', 'agent', 'type', 'name', 'status']) {
      const partial = col === 'trace_id' || col === 'agent' || col === 'type' ? '' : ` WHERE ${col} IS NOT NULL`;
      await q.query(`CREATE INDEX query_events_${col} ON query_events (tenant_id, ${col}, seq)${partial}`);
    }
    await q.query(`CREATE INDEX query_events_time ON query_events (tenant_id, event_time)`);
    // attribute filters (attr.args.order_id=A-1009 → attributes @> '{"args":{"order_id":"A-1009"}}')
    await q.query(`CREATE INDEX query_events_attributes ON query_events USING gin (attributes jsonb_path_ops)`);
    // the projector matches a tool.call with the tool.result of its span
    await q.query(
      `CREATE INDEX query_events_tool_spans ON query_events (tenant_id, (trace_id || span_id)) WHERE type IN ('tool.call', 'tool.result')`,
    );

    // One row per tenant and trace (a run): GET /v1/traces and the agents and loops reports.
    await q.query(`
      CREATE TABLE trace_summaries (
        tenant_id              text        NOT NULL,
        trace_id               text        NOT NULL,
        session_id             text,
        agents                 text[]      NOT NULL DEFAULT '{}',
        tools                  text[]      NOT NULL DEFAULT '{}',
        first_time             timestamptz,
        last_time              timestamptz,
        -- running | completed | failed | interrupted | unknown: the newest run.* event (by seq) decides
        status                 text        NOT NULL,
        status_seq             bigint,
        counts                 jsonb       NOT NULL DEFAULT '{}',
        event_count            integer     NOT NULL DEFAULT 0,
        error_count            integer     NOT NULL DEFAULT 0,
        violation_count        integer     NOT NULL DEFAULT 0,
        violations_by_severity jsonb       NOT NULL DEFAULT '{}',
        -- the seq of the run's first entry: never changes, so it is the list's keyset
        first_seq              bigint      NOT NULL,
        last_seq               bigint      NOT NULL,
        PRIMARY KEY (tenant_id, trace_id)
      )`);
    await q.query(`CREATE UNIQUE INDEX trace_summaries_first_seq ON trace_summaries (tenant_id, first_seq)`);
    await q.query(`CREATE INDEX trace_summaries_agents ON trace_summaries USING gin (agents)`);
    await q.query(`CREATE INDEX trace_summaries_tools ON trace_summaries USING gin (tools)`);
    await q.query(`CREATE INDEX trace_summaries_time ON trace_summaries (tenant_id, first_time)`);

    // One row per tool.call event, completed by the tool.result of its span: the tools and loops reports.
    await q.query(`
      CREATE TABLE tool_calls (
        tenant_id   text             NOT NULL,
        seq         bigint           NOT NULL,
        trace_id    text             NOT NULL,
        span_id     text             NOT NULL,
        tool        text             NOT NULL,
        agent       text             NOT NULL,
        event_time  timestamptz      NOT NULL,
        -- md5 of the jsonb text of attributes.args (jsonb text is normalised: equal args, equal digest)
        args_digest text             NOT NULL,
        duration_ms double precision,
        error       boolean          NOT NULL,
        PRIMARY KEY (tenant_id, seq)
      )`);
    await q.query(`CREATE INDEX tool_calls_repeats ON tool_calls (tenant_id, trace_id, tool, args_digest)`);
    await q.query(`CREATE INDEX tool_calls_tool ON tool_calls (tenant_id, tool, duration_ms)`);

    // {"a": 1} + {"a": 2, "b": 1} = {"a": 3, "b": 1}: merges per-page counts into a summary
    await q.query(`
      CREATE FUNCTION query_add_counts(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT COALESCE(jsonb_object_agg(k, n), '{}'::jsonb)
        FROM (SELECT k, sum(v::bigint) AS n
              FROM (SELECT key AS k, value AS v FROM jsonb_each_text(a)
                    UNION ALL SELECT key, value FROM jsonb_each_text(b)) x
              GROUP BY k) y
      $$`);
    await q.query(`GRANT EXECUTE ON FUNCTION query_add_counts(jsonb, jsonb) TO agent_ledger_app`);

    // The projector runs ANALYZE on its tables during bulk loads: MAINTAIN exists from PostgreSQL 17 on
    // (before, ANALYZE by the runtime role only warns and autovacuum keeps the statistics).
    await q.query(`
      DO $$ BEGIN
        IF current_setting('server_version_num')::int >= 170000 THEN
          EXECUTE 'GRANT MAINTAIN ON query_events, tool_calls, trace_summaries TO agent_ledger_app';
        END IF;
      END $$`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON query_cursors TO agent_ledger_app`);
    await q.query(`GRANT SELECT, INSERT ON query_events TO agent_ledger_app`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON trace_summaries TO agent_ledger_app`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON tool_calls TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION query_add_counts(jsonb, jsonb)`);
    await q.query(`DROP TABLE tool_calls`);
    await q.query(`DROP TABLE trace_summaries`);
    await q.query(`DROP TABLE query_events`);
    await q.query(`DROP TABLE query_cursors`);
  }
}
