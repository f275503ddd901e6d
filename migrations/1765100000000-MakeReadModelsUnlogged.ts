import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The query module's read models: projections of the ledger, rebuilt from it (query_cursors first: see up). */
const READ_MODELS = ['query_cursors', 'query_events', 'trace_summaries', 'tool_calls', 'tool_call_days', 'tool_call_repeats'];

/**
 * The read models become UNLOGGED tables: their writes (the projection of
 * every entry into a dozen indexes) no longer go through the write-ahead
 * log, which halves the WAL that ingest makes PostgreSQL write and flush.
 *
 * They are projections, rebuilt from the ledger by the projector. PostgreSQL
 * keeps unlogged tables across clean restarts and empties them after a crash
 * (crash recovery resets them). All six are unlogged together, the cursors
 * included, so after a crash they are empty together: every cursor is back
 * at 0 and the projector rebuilds everything from the ledger, as after a
 * reset by hand; they are never out of step. Answers meanwhile carry the
 * `projected_seq` they were computed at. The ledger, checkpoints, keys,
 * policy cursors and violations (which hold reviewers' acknowledgements)
 * stay logged. Unlogged tables are not copied to streaming replicas: an
 * operator who queries a standby, or prefers to keep the read models through
 * a crash at the price of ingest speed, runs `ALTER TABLE … SET LOGGED` on
 * the six (README, "Operating").
 *
 * SET UNLOGGED rewrites each table under an exclusive lock: on a large
 * deployment, run this migration in a maintenance window.
 */
export class MakeReadModelsUnlogged1765100000000 implements MigrationInterface {
  name = 'MakeReadModelsUnlogged1765100000000';

  async up(q: QueryRunner): Promise<void> {
    for (const t of READ_MODELS) await q.query(`ALTER TABLE ${t} SET UNLOGGED`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of READ_MODELS) await q.query(`ALTER TABLE ${t} SET LOGGED`);
  }
}
