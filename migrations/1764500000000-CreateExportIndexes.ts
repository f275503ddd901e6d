import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Evidence export by agent (DESIGN.md §8): the export streams an agent's
 * entries in seq order with keyset pagination, so it needs (tenant, agent,
 * seq). Trace and session exports use ledger_entries_trace and
 * ledger_entries_session; a time range alone scans the primary key in seq
 * order, filtered.
 */
export class CreateExportIndexes1764500000000 implements MigrationInterface {
  name = 'CreateExportIndexes1764500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX ledger_entries_agent ON ledger_entries (tenant_id, agent, seq)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX ledger_entries_agent`);
  }
}
