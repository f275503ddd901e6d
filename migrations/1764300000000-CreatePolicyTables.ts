import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Policy evaluation state (DESIGN.md §6). Mutable working state, not ledger
 * tables: the evaluator's cursor per tenant, and the queryable violations
 * whose source of truth is the `policy.violation` ledger entries. Both are
 * written in the same transaction as those entries.
 */
export class CreatePolicyTables1764300000000 implements MigrationInterface {
  name = 'CreatePolicyTables1764300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE policy_cursors (
        tenant_id       text        NOT NULL PRIMARY KEY,
        -- every entry up to and including this seq has been evaluated
        seq             bigint      NOT NULL DEFAULT 0 CHECK (seq >= 0),
        -- the set whose policy.set_loaded entry this tenant's ledger holds last
        policy_set_hash text        NOT NULL DEFAULT '',
        updated_at      timestamptz NOT NULL DEFAULT now()
      )`);

    await q.query(`
      CREATE TABLE violations (
        tenant_id       text        NOT NULL,
        id              uuid        NOT NULL,
        rule_id         text        NOT NULL,
        severity        text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
        kind            text        NOT NULL,
        policy_set_hash text        NOT NULL,
        seq             bigint      NOT NULL,
        related_seqs    bigint[]    NOT NULL DEFAULT '{}',
        trace_id        text        NOT NULL,
        session_id      text,
        agent           text,
        message         text        NOT NULL,
        retro           boolean     NOT NULL DEFAULT false,
        status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged')),
        ack_note        text,
        ack_by          text,
        ack_at          timestamptz,
        ack_seq         bigint,
        ledger_seq      bigint      NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id)
      )`);
    // one violation per rule and offending event, live or retro
    await q.query(`CREATE UNIQUE INDEX violations_rule_seq ON violations (tenant_id, rule_id, seq)`);
    // the list, newest first, is keyed by the violation's ledger seq
    await q.query(`CREATE UNIQUE INDEX violations_ledger_seq ON violations (tenant_id, ledger_seq)`);
    await q.query(`CREATE INDEX violations_status ON violations (tenant_id, status, ledger_seq)`);
    await q.query(`CREATE INDEX violations_agent ON violations (tenant_id, agent, ledger_seq)`);
    await q.query(`CREATE INDEX violations_trace ON violations (tenant_id, trace_id, ledger_seq)`);
    await q.query(`CREATE INDEX violations_created ON violations (tenant_id, created_at)`);

    // a session's events in ledger order (policy replay of session scopes)
    await q.query(
      `CREATE INDEX ledger_entries_session ON ledger_entries (tenant_id, session_id, seq) WHERE session_id IS NOT NULL`,
    );
    // the approvals report and time-range retro-evaluation
    await q.query(`CREATE INDEX ledger_entries_time ON ledger_entries (tenant_id, event_time)`);
    await q.query(`CREATE INDEX ledger_entries_received ON ledger_entries (tenant_id, received_at)`);

    await q.query(`GRANT SELECT, INSERT, UPDATE ON policy_cursors TO agent_ledger_app`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON violations TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX ledger_entries_received`);
    await q.query(`DROP INDEX ledger_entries_time`);
    await q.query(`DROP INDEX ledger_entries_session`);
    await q.query(`DROP TABLE violations`);
    await q.query(`DROP TABLE policy_cursors`);
  }
}
