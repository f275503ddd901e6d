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
 */
export class CreateLedgerLockFunction1765000000000 implements MigrationInterface {
  name = 'CreateLedgerLockFunction1765000000000';

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
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION ledger_lock_head(text, text, text[])`);
  }
}
