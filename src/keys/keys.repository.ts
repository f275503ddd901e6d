import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { JWK } from 'jose';
import type { DataSource, EntityManager } from 'typeorm';

export interface KeyRow {
  tenant_id: string;
  kid: string;
  producer: string;
  alg: 'EdDSA' | 'ES256';
  jwk: JWK;
  created_at: Date;
  registered_seq: string;
  revoked_at: Date | null;
  revoked_seq: string | null;
}

const COLUMNS = 'tenant_id, kid, producer, alg, jwk, created_at, registered_seq, revoked_at, revoked_seq';

/** Owns producer_keys (the ledger module reads it for verification only). */
@Injectable()
export class KeysRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  async find(tenant: string, kid: string): Promise<KeyRow | undefined> {
    const rows: KeyRow[] = await this.ds.query(`SELECT ${COLUMNS} FROM producer_keys WHERE tenant_id = $1 AND kid = $2`, [
      tenant,
      kid,
    ]);
    return rows[0];
  }

  list(tenant: string): Promise<KeyRow[]> {
    return this.ds.query(`SELECT ${COLUMNS} FROM producer_keys WHERE tenant_id = $1 ORDER BY created_at, kid`, [tenant]);
  }

  /** Inside the ledger transaction that records the registration. */
  async insert(tx: EntityManager, row: Omit<KeyRow, 'created_at' | 'revoked_at' | 'revoked_seq'>): Promise<void> {
    await tx.query(
      `INSERT INTO producer_keys (tenant_id, kid, producer, alg, jwk, registered_seq) VALUES ($1, $2, $3, $4, $5, $6)`,
      [row.tenant_id, row.kid, row.producer, row.alg, JSON.stringify(row.jwk), row.registered_seq],
    );
  }

  /** Inside the ledger transaction that records the revocation; false if already revoked. */
  async revoke(tx: EntityManager, tenant: string, kid: string, seq: number): Promise<boolean> {
    const rows: unknown[] = await tx.query(
      `WITH u AS (UPDATE producer_keys SET revoked_at = now(), revoked_seq = $3
                  WHERE tenant_id = $1 AND kid = $2 AND revoked_at IS NULL RETURNING kid)
       SELECT kid FROM u`,
      [tenant, kid, seq],
    );
    return rows.length === 1;
  }
}
