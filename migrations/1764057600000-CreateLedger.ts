import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The ledger (DESIGN.md §3, §5): records, bodies kept apart from records,
 * batch signatures, stored Merkle nodes, producer keys. Ledger tables refuse
 * UPDATE, DELETE and TRUNCATE by trigger; the runtime role `agent_ledger_app`
 * may only INSERT and SELECT them. Every table is keyed by tenant first.
 */
export class CreateLedger1764057600000 implements MigrationInterface {
  name = 'CreateLedger1764057600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      DO $$ BEGIN
        CREATE ROLE agent_ledger_app NOLOGIN;
      EXCEPTION WHEN duplicate_object THEN NULL;
      END $$`);

    await q.query(`
      CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'agent-ledger: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
          USING ERRCODE = 'insufficient_privilege';
      END $$`);

    await q.query(`
      CREATE TABLE ledger_entries (
        tenant_id      text        NOT NULL,
        seq            bigint      NOT NULL CHECK (seq > 0),
        event_id       uuid        NOT NULL,
        record         text        NOT NULL,
        leaf_hash      bytea       NOT NULL,
        chain_hash     bytea       NOT NULL,
        -- copies of record and body fields for queries; the record text stays the source of truth
        trace_id       text        NOT NULL,
        span_id        text        NOT NULL,
        parent_span_id text,
        session_id     text,
        type           text        NOT NULL,
        name           text,
        agent          text        NOT NULL,
        status         text,
        duration_ms    double precision,
        event_time     timestamptz NOT NULL,
        received_at    timestamptz NOT NULL,
        kid            text        NOT NULL,
        batch          text        NOT NULL,
        digest         text        NOT NULL,
        PRIMARY KEY (tenant_id, seq)
      )`);
    // idempotency: one event id per tenant
    await q.query(`CREATE UNIQUE INDEX ledger_entries_event_id ON ledger_entries (tenant_id, event_id)`);
    // a run's events in ledger order (trace tree, policy replay)
    await q.query(`CREATE INDEX ledger_entries_trace ON ledger_entries (tenant_id, trace_id, seq)`);

    await q.query(`
      CREATE TABLE ledger_bodies (
        tenant_id text   NOT NULL,
        seq       bigint NOT NULL,
        body      text   NOT NULL,
        PRIMARY KEY (tenant_id, seq)
      )`);

    await q.query(`
      CREATE TABLE ledger_batches (
        tenant_id  text        NOT NULL,
        batch      text        NOT NULL,
        kid        text        NOT NULL,
        jws        text        NOT NULL,
        first_seq  bigint      NOT NULL,
        -- entries this batch appended, at first_seq .. first_seq + entry_count - 1 (replayed events are not counted)
        entry_count integer    NOT NULL CHECK (entry_count > 0),
        PRIMARY KEY (tenant_id, batch)
      )`);
    // the newest batch, for verify's truncation check
    await q.query(`CREATE INDEX ledger_batches_first_seq ON ledger_batches (tenant_id, first_seq)`);

    await q.query(`
      CREATE TABLE merkle_nodes (
        tenant_id text     NOT NULL,
        level     smallint NOT NULL CHECK (level > 0),
        idx       bigint   NOT NULL,
        hash      bytea    NOT NULL,
        PRIMARY KEY (tenant_id, level, idx)
      )`);

    for (const t of ['ledger_entries', 'ledger_bodies', 'ledger_batches', 'merkle_nodes']) {
      await q.query(
        `CREATE TRIGGER ${t}_append_only BEFORE UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()`,
      );
      await q.query(
        `CREATE TRIGGER ${t}_no_truncate BEFORE TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()`,
      );
      await q.query(`GRANT SELECT, INSERT ON ${t} TO agent_ledger_app`);
    }

    await q.query(`
      CREATE TABLE producer_keys (
        tenant_id      text        NOT NULL,
        kid            text        NOT NULL,
        producer       text        NOT NULL,
        alg            text        NOT NULL,
        jwk            jsonb       NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        registered_seq bigint      NOT NULL,
        revoked_at     timestamptz,
        revoked_seq    bigint,
        PRIMARY KEY (tenant_id, kid)
      )`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON producer_keys TO agent_ledger_app`);
    await q.query(`GRANT USAGE ON SCHEMA public TO agent_ledger_app`);
    await q.query(`GRANT SELECT ON migrations TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE producer_keys`);
    for (const t of ['merkle_nodes', 'ledger_batches', 'ledger_bodies', 'ledger_entries']) {
      await q.query(`DROP TABLE ${t}`);
    }
    await q.query(`DROP FUNCTION ledger_refuse_change()`);
    await q.query(`REVOKE ALL ON migrations FROM agent_ledger_app`);
    await q.query(`REVOKE USAGE ON SCHEMA public FROM agent_ledger_app`);
  }
}
