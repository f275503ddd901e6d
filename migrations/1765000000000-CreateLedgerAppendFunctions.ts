import type { MigrationInterface, QueryRunner } from 'typeorm';

/** A group's rows as arrays, one per column, the tenant apart: entries (e_), bodies (b_), Merkle nodes (n_). */
const ROWS = [
  ['e_seq', 'bigint'], ['e_event_id', 'uuid'], ['e_record', 'text'], ['e_leaf_hash', 'bytea'], ['e_chain_hash', 'bytea'],
  ['e_trace_id', 'text'], ['e_span_id', 'text'], ['e_parent_span_id', 'text'], ['e_session_id', 'text'], ['e_type', 'text'],
  ['e_name', 'text'], ['e_agent', 'text'], ['e_status', 'text'], ['e_duration_ms', 'float8'], ['e_event_time', 'timestamptz'],
  ['e_received_at', 'timestamptz'], ['e_kid', 'text'], ['e_batch', 'text'], ['e_digest', 'text'],
  ['b_seq', 'bigint'], ['b_body', 'text'],
  ['n_level', 'smallint'], ['n_idx', 'bigint'], ['n_hash', 'bytea'],
] as const;
/** A group's batch rows, likewise. */
const BATCHES = [['t_batch', 'text'], ['t_kid', 'text'], ['t_jws', 'text'], ['t_first_seq', 'bigint'], ['t_entry_count', 'int']] as const;

const params = (cols: readonly (readonly [string, string])[]) => cols.map(([n, t]) => `${n} ${t}[]`).join(', ');
const names = (cols: readonly (readonly [string, string])[]) => cols.map(([n]) => n).join(', ');
const types = (cols: readonly (readonly [string, string])[]) => cols.map(([, t]) => `${t}[]`).join(', ');

/**
 * The ledger's small writes as functions: one round trip each, where a
 * single-event batch's commit used to need ten (on this project's test
 * machine each costs 0.3-0.6 ms). Large groups are still written with COPY.
 *
 * - ledger_write_rows / ledger_write_batches: a group's entries, bodies and
 *   Merkle nodes, and its batch rows (a batch id repeats only when a producer
 *   resends a batch whose events were partly stored: DO NOTHING). The one
 *   definition of these INSERTs; the caller holds the tenant lock or, on the
 *   pipelined path, claims its seqs behind a group that does.
 * - ledger_lock_head: takes the tenant's writer lock (the transaction-scoped
 *   advisory lock every ledger commit holds), then reads, under it, the head
 *   and which of the given producer kids are revoked. It must be VOLATILE: in
 *   READ COMMITTED a volatile function takes a fresh snapshot for each
 *   statement it runs, so the head is read after the lock was granted and
 *   sees the commit of whoever held it before. (One plain SELECT that locked
 *   and read would read from a snapshot taken before it waited: a stale
 *   head.) The lock key is the caller's, so the service keeps one definition
 *   of it (LedgerRepository).
 * - ledger_append: a whole small commit in one statement, for a group the
 *   service built ahead on the head it last saw: under the lock, if the head
 *   is still that one and no kid is revoked, it writes the rows and reports
 *   `appended`; else it writes nothing (the service then commits the
 *   ordinary way). Called outside a transaction block, the statement is its
 *   own transaction. A repeated event id fails it on the unique index, as a
 *   COPY would.
 */
export class CreateLedgerAppendFunctions1765000000000 implements MigrationInterface {
  name = 'CreateLedgerAppendFunctions1765000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION ledger_write_rows(tenant text, ${params(ROWS)}) RETURNS void LANGUAGE sql VOLATILE AS $$
        INSERT INTO ledger_entries (tenant_id, seq, event_id, record, leaf_hash, chain_hash, trace_id, span_id, parent_span_id,
                                    session_id, type, name, agent, status, duration_ms, event_time, received_at, kid, batch, digest)
        SELECT tenant, * FROM unnest(${names(ROWS.filter(([n]) => n.startsWith('e_')))});
        INSERT INTO ledger_bodies (tenant_id, seq, body) SELECT tenant, * FROM unnest(b_seq, b_body);
        INSERT INTO merkle_nodes (tenant_id, level, idx, hash) SELECT tenant, * FROM unnest(n_level, n_idx, n_hash);
      $$`);
    await q.query(`
      CREATE FUNCTION ledger_write_batches(tenant text, ${params(BATCHES)}) RETURNS void LANGUAGE sql VOLATILE AS $$
        INSERT INTO ledger_batches (tenant_id, batch, kid, jws, first_seq, entry_count)
        SELECT tenant, * FROM unnest(${names(BATCHES)}) ON CONFLICT DO NOTHING;
      $$`);
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
    await q.query(`
      CREATE FUNCTION ledger_append(lock_key text, tenant text, kids text[], base_seq bigint, base_chain bytea,
                                    ${params(ROWS)}, ${params(BATCHES)})
      RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        h record;
      BEGIN
        SELECT * INTO h FROM ledger_lock_head(lock_key, tenant, kids);
        IF COALESCE(h.seq, 0) <> base_seq OR (h.seq IS NOT NULL AND h.chain_hash <> base_chain) OR cardinality(h.revoked) > 0 THEN
          RETURN false;
        END IF;
        PERFORM ledger_write_rows(tenant, ${names(ROWS)});
        PERFORM ledger_write_batches(tenant, ${names(BATCHES)});
        RETURN true;
      END $$`);
    for (const fn of this.signatures()) {
      await q.query(`REVOKE ALL ON FUNCTION ${fn} FROM PUBLIC`);
      await q.query(`GRANT EXECUTE ON FUNCTION ${fn} TO agent_ledger_app`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const fn of this.signatures().reverse()) await q.query(`DROP FUNCTION ${fn}`);
  }

  private signatures(): string[] {
    return [
      `ledger_write_rows(text, ${types(ROWS)})`,
      `ledger_write_batches(text, ${types(BATCHES)})`,
      `ledger_lock_head(text, text, text[])`,
      `ledger_append(text, text, text[], bigint, bytea, ${types(ROWS)}, ${types(BATCHES)})`,
    ];
  }
}
