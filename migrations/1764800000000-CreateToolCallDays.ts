import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The tools report's per-day rollup: per tenant, tool, UTC day of the call's
 * own time and agent, the calls, the failed ones and the ones with a
 * duration. The projector adds each page's calls and, when a tool.result
 * completes an earlier call (duration, error), the difference it makes, in
 * the page's transaction. With the rollup's counts, a report whose range
 * holds every call (all time, no agent) reads each tool's exact percentiles
 * as the values at their ranks in index tool_calls_tool (OFFSET into the
 * duration order, from the nearer end) instead of sorting every call.
 * Filtered reports aggregate the calls in range, as before.
 */
export class CreateToolCallDays1764800000000 implements MigrationInterface {
  name = 'CreateToolCallDays1764800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE tool_call_days (
        tenant_id text    NOT NULL,
        tool      text    NOT NULL,
        day       date    NOT NULL,
        agent     text    NOT NULL,
        calls     integer NOT NULL CHECK (calls >= 0),
        errors    integer NOT NULL CHECK (errors >= 0),
        -- calls with a duration (the percentiles' population)
        timed     integer NOT NULL CHECK (timed >= 0),
        PRIMARY KEY (tenant_id, tool, day, agent)
      )`);
    await q.query(`
      INSERT INTO tool_call_days (tenant_id, tool, day, agent, calls, errors, timed)
      SELECT tenant_id, tool, (event_time AT TIME ZONE 'UTC')::date, agent, count(*), count(*) FILTER (WHERE error), count(duration_ms)
      FROM tool_calls GROUP BY 1, 2, 3, 4`);
    await q.query(`
      DO $$ BEGIN
        IF current_setting('server_version_num')::int >= 170000 THEN
          EXECUTE 'GRANT MAINTAIN ON tool_call_days TO agent_ledger_app';
        END IF;
      END $$`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON tool_call_days TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE tool_call_days`);
  }
}
