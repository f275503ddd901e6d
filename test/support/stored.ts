import { hashChildren } from '../../src/core/merkle';
import { asSuperuser, type TestDatabase } from './db';

/** One stored entry as the superuser reads it back. */
export interface StoredRow {
  seq: number;
  event_id: string;
  type: string;
  batch: string;
  leaf: string;
  chain: string;
  /** The inserting transaction (xmin): shows which entries were group-committed together. */
  tx: string;
  has_body: boolean;
}

/** A tenant's entries and its stored Merkle nodes ("level:idx:hash"), read as the superuser. */
export async function readStoredLedger(db: TestDatabase, tenant: string): Promise<{ rows: StoredRow[]; nodes: string[] }> {
  return asSuperuser(db, async (c) => {
    const rows = (
      await c.query<StoredRow>(
        `SELECT e.seq::int AS seq, e.event_id::text AS event_id, e.type, e.batch, encode(e.leaf_hash, 'hex') AS leaf,
                encode(e.chain_hash, 'hex') AS chain, e.xmin::text AS tx, b.seq IS NOT NULL AS has_body
         FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
         WHERE e.tenant_id = $1 ORDER BY e.seq`,
        [tenant],
      )
    ).rows;
    const nodes = (
      await c.query<{ level: number; idx: string; hash: string }>(
        `SELECT level, idx, encode(hash, 'hex') AS hash FROM merkle_nodes WHERE tenant_id = $1 ORDER BY level, idx`,
        [tenant],
      )
    ).rows.map((n) => `${n.level}:${n.idx}:${n.hash}`);
    return { rows, nodes };
  });
}

/** Every complete RFC 9162 subtree of level >= 1 over the leaves, computed level by level ("level:idx:hash"). */
export function completeMerkleNodes(leaves: Buffer[]): string[] {
  const out: string[] = [];
  let level = leaves;
  for (let l = 1; level.length >= 2; l++) {
    const up: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) up.push(hashChildren(level[i], level[i + 1]));
    up.forEach((h, i) => out.push(`${l}:${i}:${h.toString('hex')}`));
    level = up;
  }
  return out;
}
