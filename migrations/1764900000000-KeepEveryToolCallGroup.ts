import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * tool_call_repeats keeps every (run, tool, args digest) group, also the ones
 * with one call so far, so that the projector maintains it by upsert alone:
 * a page's calls are added to their group's row through the primary key. It
 * used to keep only groups of two or more and recount a group from
 * tool_calls whenever a page added a call to it; the planner, on statistics
 * that had not yet seen a new tenant (or a young table), served that recount
 * from index tool_calls_tool, reading every call of the tool per group: ~50 to
 * ~700 µs an event instead of ~5. The loops report already asks for
 * `calls >= min_repeats` (at least 2), so it lists what it listed before.
 */
export class KeepEveryToolCallGroup1764900000000 implements MigrationInterface {
  name = 'KeepEveryToolCallGroup1764900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tool_call_repeats DROP CONSTRAINT tool_call_repeats_calls_check`);
    await q.query(`ALTER TABLE tool_call_repeats ADD CONSTRAINT tool_call_repeats_calls_check CHECK (calls >= 1)`);
    await q.query(`
      INSERT INTO tool_call_repeats (tenant_id, trace_id, tool, args_digest, calls, first_seq, last_seq, first_time, last_time, agents)
      SELECT tenant_id, trace_id, tool, args_digest, 1, min(seq), min(seq), min(event_time), min(event_time), array_agg(agent)
      FROM tool_calls GROUP BY tenant_id, trace_id, tool, args_digest HAVING count(*) = 1`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM tool_call_repeats WHERE calls < 2`);
    await q.query(`ALTER TABLE tool_call_repeats DROP CONSTRAINT tool_call_repeats_calls_check`);
    await q.query(`ALTER TABLE tool_call_repeats ADD CONSTRAINT tool_call_repeats_calls_check CHECK (calls >= 2)`);
  }
}
