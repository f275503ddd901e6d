import type { Client } from 'pg';

/**
 * The benchmarks' fast path to a big ledger: rows written by PostgreSQL
 * itself (INSERT … SELECT over generate_series, SHA-256 in SQL), as the
 * owner, in the bench's scratch database. Each entry's record is a short
 * placeholder text; its leaf hash is the real H(0x00 || record), and every
 * complete Merkle node is the real H(0x01 || left || right) of its children,
 * stored as the service stores them (level 0 in ledger_entries.leaf_hash,
 * levels ≥ 1 in merkle_nodes). So the service's proofs over it are real
 * RFC 9162 proofs (the bench checks them), without signing 10M events.
 *
 * Bodies, batches and chain hashes are not real: only the Merkle paths may
 * read this tenant. The bench keeps the background workers off it (its
 * projector cursor is set to the end, the policy evaluator is off).
 */
export async function growSyntheticLedger(owner: Client, tenant: string, fromSize: number, toSize: number, chunk = 1_000_000): Promise<void> {
  for (let a = fromSize + 1; a <= toSize; a += chunk) {
    const b = Math.min(toSize, a + chunk - 1);
    await owner.query(
      `INSERT INTO ledger_entries (tenant_id, seq, event_id, record, leaf_hash, chain_hash, trace_id, span_id, type, agent,
                                   event_time, received_at, kid, batch, digest)
       SELECT $1, s, md5($1 || s)::uuid, r, sha256('\\x00'::bytea || convert_to(r, 'UTF8')), '\\x'::bytea,
              'synthetic', 'synthetic', 'synthetic', 'synthetic', now(), now(), 'synthetic', 'synthetic', 'synthetic'
       FROM generate_series($2::bigint, $3::bigint) AS s, LATERAL (SELECT 'synthetic entry ' || s AS r) AS rec`,
      [tenant, a, b],
    );
  }
  // Level 1 from the leaves, then each level from the one below: node idx i of level L covers leaves
  // [i·2^L, (i+1)·2^L), complete (stored) once (i+1)·2^L <= size; the new ones are i in [⌊from/2^L⌋, ⌊to/2^L⌋).
  for (let level = 1; 2 ** level <= toSize; level++) {
    const first = Math.floor(fromSize / 2 ** level);
    const end = Math.floor(toSize / 2 ** level);
    if (end <= first) continue;
    // One ordered pass over the level below (its primary key), each even node paired with the next by lead():
    // no join for the planner to misjudge on a table it has no statistics of yet.
    const below =
      level === 1
        ? `SELECT seq - 1 AS idx, leaf_hash AS hash, lead(leaf_hash) OVER (ORDER BY seq) AS next
           FROM ledger_entries WHERE tenant_id = $1 AND seq BETWEEN $3::bigint * 2 + 1 AND $4::bigint * 2 + 2`
        : `SELECT idx, hash, lead(hash) OVER (ORDER BY idx) AS next
           FROM merkle_nodes WHERE tenant_id = $1 AND level = $2::smallint - 1 AND idx BETWEEN $3::bigint * 2 AND $4::bigint * 2 + 1`;
    await owner.query(
      `INSERT INTO merkle_nodes (tenant_id, level, idx, hash)
       SELECT $1, $2::smallint, b.idx / 2, sha256('\\x01'::bytea || b.hash || b.next) FROM (${below}) AS b WHERE b.idx % 2 = 0`,
      [tenant, level, first, end - 1],
    );
  }
}
