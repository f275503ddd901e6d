import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * ledger_lock_head: takes a tenant's writer lock (the transaction-scoped
 * advisory lock every ledger commit holds), then reads, under it, the
 * tenant's head and which of the given producer kids are revoked. One round
 * trip where a commit used to need three; a single-event batch's commit is
 * mostly round trips.
 *
 * It must be a VOLATILE function: in READ COMMITTED a volatile function takes
 * a fresh snapshot for each statement it runs, so the head is read after the
 * lock was granted and sees the commit of whoever held it before. (One plain
 * SELECT that locked and read would read from a snapshot taken before it
 * waited for the lock: a stale head.) The lock key is the caller's, so the
 * service keeps one definition of it (LedgerRepository).
 *
 * ledger_append: a whole small commit in one statement, for a group the
 * service built ahead on the head it last saw. Under the lock it checks that
 * the head is still that one and that no kid is revoked; then it writes the
 * entries, bodies, Merkle nodes and batch rows and reports `appended`; else it
 * writes nothing and reports the real head and the revoked kids (the service
 * then commits the ordinary way). Called outside a transaction block, the
 * statement is its own transaction: one round trip for a single-event batch
 * instead of four. A repeated event id fails it on the unique index, as a
 * COPY would.
 */
export class CreateLedgerAppendFunctions1765000000000 implements MigrationInterface {
  name = 'CreateLedgerAppendFunctions1765000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION ledger_lock_head(lock_key text, tenant text, kids text[])
      RETURNS TABLE (seq bigint, chain_hash bytea, revoked text[])
      LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
        RETURN QUERY
          SELECT h.seq, h.chain_hash,
                 ARRAY(SELECT k.kid FROM producer_keys k
                       WHERE k.tenant_id = tenant AND k.kid = ANY(kids) AND k.revoked_at IS NOT NULL)
          FROM (SELECT 1) one
          LEFT JOIN LATERAL (SELECT e.seq, e.chain_hash FROM ledger_entries e
                             WHERE e.tenant_id = tenant ORDER BY e.seq DESC LIMIT 1) h ON true;
      END $$`);
    await q.query(`REVOKE ALL ON FUNCTION ledger_lock_head(text, text, text[]) FROM PUBLIC`);
    await q.query(`GRANT EXECUTE ON FUNCTION ledger_lock_head(text, text, text[]) TO agent_ledger_app`);

    await q.query(`
      CREATE FUNCTION ledger_append(
        lock_key text, tenant text, kids text[], base_seq bigint, base_chain bytea,
        e_seq bigint[], e_event_id uuid[], e_record text[], e_leaf_hash bytea[], e_chain_hash bytea[], e_trace_id text[],
        e_span_id text[], e_parent_span_id text[], e_session_id text[], e_type text[], e_name text[], e_agent text[],
        e_status text[], e_duration_ms float8[], e_event_time timestamptz[], e_received_at timestamptz[], e_kid text[],
        e_batch text[], e_digest text[],
        b_seq bigint[], b_body text[],
        n_level smallint[], n_idx bigint[], n_hash bytea[],
        t_batch text[], t_kid text[], t_jws text[], t_first_seq bigint[], t_entry_count int[])
      RETURNS TABLE (appended boolean, head_seq bigint, head_chain bytea, revoked text[])
      LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        h_seq bigint;
        h_chain bytea;
        r text[];
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
        SELECT e.seq, e.chain_hash INTO h_seq, h_chain FROM ledger_entries e WHERE e.tenant_id = tenant ORDER BY e.seq DESC LIMIT 1;
        r := ARRAY(SELECT k.kid FROM producer_keys k WHERE k.tenant_id = tenant AND k.kid = ANY(kids) AND k.revoked_at IS NOT NULL);
        IF COALESCE(h_seq, 0) <> base_seq OR (h_seq IS NOT NULL AND h_chain <> base_chain) OR cardinality(r) > 0 THEN
          RETURN QUERY SELECT false, h_seq, h_chain, r;
          RETURN;
        END IF;
        INSERT INTO ledger_entries (tenant_id, seq, event_id, record, leaf_hash, chain_hash, trace_id, span_id, parent_span_id,
                                    session_id, type, name, agent, status, duration_ms, event_time, received_at, kid, batch, digest)
        SELECT tenant, * FROM unnest(e_seq, e_event_id, e_record, e_leaf_hash, e_chain_hash, e_trace_id, e_span_id, e_parent_span_id,
                                     e_session_id, e_type, e_name, e_agent, e_status, e_duration_ms, e_event_time, e_received_at,
                                     e_kid, e_batch, e_digest);
        INSERT INTO ledger_bodies (tenant_id, seq, body) SELECT tenant, * FROM unnest(b_seq, b_body);
        INSERT INTO merkle_nodes (tenant_id, level, idx, hash) SELECT tenant, * FROM unnest(n_level, n_idx, n_hash);
        INSERT INTO ledger_batches (tenant_id, batch, kid, jws, first_seq, entry_count)
        SELECT tenant, * FROM unnest(t_batch, t_kid, t_jws, t_first_seq, t_entry_count) ON CONFLICT DO NOTHING;
        RETURN QUERY SELECT true, h_seq, h_chain, r;
      END $$`);
    await q.query(`REVOKE ALL ON FUNCTION ledger_append FROM PUBLIC`);
    await q.query(`GRANT EXECUTE ON FUNCTION ledger_append TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION ledger_append`);
    await q.query(`DROP FUNCTION ledger_lock_head(text, text, text[])`);
  }
}
