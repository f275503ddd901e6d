import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';

type Queryable = Pick<EntityManager, 'query'>;

export interface CheckpointRow {
  size: number;
  rootHash: Buffer;
  note: string;
  createdAt: Date;
}

export interface Cosignature {
  witness: string;
  /** Note signature lines, each ending in a newline. */
  lines: string;
}

/** Checkpoints and cosignatures: append-only, keyed (tenant_id, size). */
@Injectable()
export class CheckpointRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * Runs `fn` in a transaction holding the tenant's checkpoint lock, so that
   * two service processes never sign from the same previous checkpoint.
   */
  withTenantLock<T>(tenant: string, fn: (tx: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`agent-ledger:checkpoint:${tenant}`]);
      return fn(tx);
    });
  }

  /** The newest checkpoint (primary key, backwards). */
  async latest(tenant: string, q: Queryable = this.ds): Promise<CheckpointRow | undefined> {
    const rows: RawCheckpoint[] = await q.query(
      `SELECT size, root_hash, note, created_at FROM checkpoints WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1`,
      [tenant],
    );
    return rows.length ? toRow(rows[0]) : undefined;
  }

  /** Checkpoints with from <= size <= to, ascending (primary key). */
  async page(tenant: string, fromSize: number, toSize: number, limit: number): Promise<CheckpointRow[]> {
    const rows: RawCheckpoint[] = await this.ds.query(
      `SELECT size, root_hash, note, created_at FROM checkpoints
       WHERE tenant_id = $1 AND size >= $2 AND size <= $3 ORDER BY size LIMIT $4`,
      [tenant, fromSize, toSize, limit],
    );
    return rows.map(toRow);
  }

  /** Inserts a signed checkpoint; false when one of that size exists already. */
  async insert(q: Queryable, tenant: string, cp: { size: number; rootHash: Buffer; note: string }): Promise<boolean> {
    const rows: unknown[] = await q.query(
      `INSERT INTO checkpoints (tenant_id, size, root_hash, note) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id, size) DO NOTHING RETURNING size`,
      [tenant, cp.size, cp.rootHash, cp.note],
    );
    return rows.length === 1;
  }

  /**
   * Tenants whose ledger has grown past their newest checkpoint (after a
   * restart: entries committed but not yet checkpointed). A loose index scan
   * over the primary keys: one probe per tenant, not per entry.
   */
  async tenantsBehind(): Promise<string[]> {
    const rows: { tenant_id: string }[] = await this.ds.query(
      `WITH RECURSIVE t(tenant_id) AS (
         (SELECT tenant_id FROM ledger_entries ORDER BY tenant_id LIMIT 1)
         UNION ALL
         SELECT (SELECT e.tenant_id FROM ledger_entries e WHERE e.tenant_id > t.tenant_id ORDER BY e.tenant_id LIMIT 1)
         FROM t WHERE t.tenant_id IS NOT NULL
       )
       SELECT t.tenant_id FROM t
       WHERE t.tenant_id IS NOT NULL
         AND (SELECT max(seq) FROM ledger_entries e WHERE e.tenant_id = t.tenant_id)
             > coalesce((SELECT max(size) FROM checkpoints c WHERE c.tenant_id = t.tenant_id), 0)`,
    );
    return rows.map((r) => r.tenant_id);
  }

  /** Number of entries in the ledger (ledger_entries primary key, backwards). */
  async ledgerSize(tenant: string, q: Queryable = this.ds): Promise<number> {
    const rows: { seq: string }[] = await q.query(
      `SELECT seq FROM ledger_entries WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`,
      [tenant],
    );
    return rows.length ? Number(rows[0].seq) : 0;
  }

  /** Leaf hashes of seqs in (afterSeq, toSeq], ascending (ledger_entries primary key). */
  async leafPage(tenant: string, afterSeq: number, toSeq: number, limit: number): Promise<{ seq: number; leafHash: Buffer }[]> {
    const rows: { seq: string; leaf_hash: Buffer }[] = await this.ds.query(
      `SELECT seq, leaf_hash FROM ledger_entries WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
      [tenant, afterSeq, toSeq, limit],
    );
    return rows.map((r) => ({ seq: Number(r.seq), leafHash: r.leaf_hash }));
  }

  /** Cosignatures of the given checkpoint sizes, by size (primary key prefix). */
  async cosignatures(tenant: string, sizes: readonly number[]): Promise<Map<number, Cosignature[]>> {
    const out = new Map<number, Cosignature[]>();
    if (!sizes.length) return out;
    const rows: { size: string; witness: string; lines: string }[] = await this.ds.query(
      `SELECT size, witness, lines FROM checkpoint_cosignatures
       WHERE tenant_id = $1 AND size = ANY($2::bigint[]) ORDER BY size, witness`,
      [tenant, sizes],
    );
    for (const r of rows) {
      const size = Number(r.size);
      out.set(size, [...(out.get(size) ?? []), { witness: r.witness, lines: r.lines }]);
    }
    return out;
  }

  async insertCosignature(tenant: string, size: number, witness: string, lines: string): Promise<void> {
    await this.ds.query(
      `INSERT INTO checkpoint_cosignatures (tenant_id, size, witness, lines) VALUES ($1, $2, $3, $4)
       ON CONFLICT DO NOTHING`,
      [tenant, size, witness, lines],
    );
  }

  /** The largest size this witness cosigned for the tenant, 0 if none (index checkpoint_cosignatures_witness). */
  async lastCosignedSize(tenant: string, witness: string): Promise<number> {
    const rows: { size: string }[] = await this.ds.query(
      `SELECT size FROM checkpoint_cosignatures WHERE tenant_id = $1 AND witness = $2 ORDER BY size DESC LIMIT 1`,
      [tenant, witness],
    );
    return rows.length ? Number(rows[0].size) : 0;
  }
}

interface RawCheckpoint {
  size: string;
  root_hash: Buffer;
  note: string;
  created_at: Date;
}

function toRow(r: RawCheckpoint): CheckpointRow {
  return { size: Number(r.size), rootHash: r.root_hash, note: r.note, createdAt: r.created_at };
}
