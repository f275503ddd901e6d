import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Signed checkpoints (DESIGN.md §4) and the witnesses' cosignatures on them.
 * Both tables are append-only like the ledger (trigger `ledger_refuse_change`,
 * INSERT and SELECT only for `agent_ledger_app`) and keyed by tenant first.
 */
export class CreateCheckpoints1764100000000 implements MigrationInterface {
  name = 'CreateCheckpoints1764100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE checkpoints (
        tenant_id  text        NOT NULL,
        size       bigint      NOT NULL CHECK (size > 0),
        root_hash  bytea       NOT NULL CHECK (length(root_hash) = 32),
        -- the C2SP signed note exactly as signed (body, blank line, the ledger's signature line)
        note       text        NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, size)
      )`);

    await q.query(`
      CREATE TABLE checkpoint_cosignatures (
        tenant_id  text        NOT NULL,
        size       bigint      NOT NULL,
        -- the witness's submission prefix, as configured in WITNESS_URLS
        witness    text        NOT NULL,
        -- the note signature lines the witness returned, each ending in a newline
        lines      text        NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, size, witness),
        FOREIGN KEY (tenant_id, size) REFERENCES checkpoints (tenant_id, size)
      )`);
    // the newest size each witness cosigned (the witness's "old size")
    await q.query(`CREATE INDEX checkpoint_cosignatures_witness ON checkpoint_cosignatures (tenant_id, witness, size)`);

    for (const t of ['checkpoints', 'checkpoint_cosignatures']) {
      await q.query(
        `CREATE TRIGGER ${t}_append_only BEFORE UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()`,
      );
      await q.query(
        `CREATE TRIGGER ${t}_no_truncate BEFORE TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()`,
      );
      await q.query(`GRANT SELECT, INSERT ON ${t} TO agent_ledger_app`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE checkpoint_cosignatures`);
    await q.query(`DROP TABLE checkpoints`);
  }
}
