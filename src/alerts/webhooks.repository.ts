import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager } from 'typeorm';
import type { WebhookEnvelope } from './webhook-message';

export type WebhookFormat = 'standard' | 'slack';
export type DeliveryStatus = 'pending' | 'delivered' | 'failed' | 'dead';

export interface EndpointRow {
  tenant_id: string;
  id: string;
  url: string;
  event_types: string[];
  min_severity: 'low' | 'medium' | 'high' | 'critical';
  format: WebhookFormat;
  disabled_at: Date | null;
  disabled_reason: string | null;
  created_at: Date;
}

export interface DeliveryRow {
  tenant_id: string;
  id: string;
  endpoint_id: string;
  webhook_id: string;
  event_type: string;
  payload: WebhookEnvelope;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date | null;
  last_status: number | null;
  created_at: Date;
  delivered_at: Date | null;
}

export interface AttemptRow {
  delivery_id: string;
  attempt: number;
  at: Date;
  status_code: number | null;
  latency_ms: number | null;
  response_excerpt: string | null;
  error: string | null;
}

/** A delivery the worker has claimed, with what it needs to send it. */
export interface ClaimedDelivery {
  tenant_id: string;
  id: string;
  endpoint_id: string;
  webhook_id: string;
  payload: WebhookEnvelope;
  /** The number of this attempt (1-based, over the delivery's life). */
  attempt: number;
  /** Attempts made before the current retry cycle. */
  cycle_start: number;
  url: string;
  format: WebhookFormat;
  secret: string;
  endpoint_disabled: boolean;
}

/** One attempt's result and what it decides for the delivery. */
export interface AttemptResult {
  statusCode: number | null;
  latencyMs: number | null;
  excerpt: string | null;
  error: string | null;
  /** The delivery's state after this attempt. */
  status: Exclude<DeliveryStatus, 'pending'>;
  /** Set when status is `failed`. */
  nextAttemptAt: Date | null;
  /** Disable the endpoint with this reason (a 410). */
  disableEndpoint?: string;
}

const ENDPOINT_COLUMNS = 'tenant_id, id, url, event_types, min_severity, format, disabled_at, disabled_reason, created_at';
const DELIVERY_COLUMNS =
  'tenant_id, id, endpoint_id, webhook_id, event_type, payload, status, attempts, next_attempt_at, last_status, created_at, delivered_at';

/**
 * Owns webhook_endpoints, webhook_deliveries and webhook_attempts. Reads
 * ledger_entries (never writes it) for the type and name of an offending
 * entry, inside the violation transaction: a second connection there could
 * wait on a pool the transactions themselves exhaust.
 */
@Injectable()
export class WebhooksRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  async insertEndpoint(row: Omit<EndpointRow, 'created_at' | 'disabled_at' | 'disabled_reason'> & { secret: string }): Promise<EndpointRow> {
    const rows: EndpointRow[] = await this.ds.query(
      `INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, min_severity, format, secret)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${ENDPOINT_COLUMNS}`,
      [row.tenant_id, row.id, row.url, row.event_types, row.min_severity, row.format, row.secret],
    );
    return rows[0];
  }

  listEndpoints(tenant: string): Promise<EndpointRow[]> {
    return this.ds.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id`, [tenant]);
  }

  async findEndpoint(tenant: string, id: string): Promise<EndpointRow | undefined> {
    const rows: EndpointRow[] = await this.ds.query(`SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2`, [
      tenant,
      id,
    ]);
    return rows[0];
  }

  /**
   * The outbox write, inside the caller's transaction: one delivery per
   * enabled endpoint of the tenant that subscribes to the event type, for
   * each payload whose severity rank reaches the endpoint's minimum.
   */
  async enqueue(
    tx: EntityManager,
    tenant: string,
    eventType: string,
    items: readonly { payload: WebhookEnvelope; severityRank: number }[],
  ): Promise<number> {
    if (items.length === 0) return 0;
    const rows: unknown[] = await tx.query(
      `INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, webhook_id, event_type, payload, status, next_attempt_at)
       SELECT e.tenant_id, gen_random_uuid(), e.id, 'msg_' || replace(gen_random_uuid()::text, '-', ''), $2, i.payload::jsonb,
              'pending', now()
       FROM webhook_endpoints e
       JOIN unnest($3::text[], $4::int[]) AS i(payload, rank)
         ON array_position(ARRAY['low', 'medium', 'high', 'critical'], e.min_severity) <= i.rank
       WHERE e.tenant_id = $1 AND e.disabled_at IS NULL AND $2 = ANY (e.event_types)
       RETURNING id`,
      [tenant, eventType, items.map((i) => JSON.stringify(i.payload)), items.map((i) => i.severityRank)],
    );
    return rows.length;
  }

  /** Whether any enabled endpoint of the tenant wants this event type (inside the caller's transaction). */
  async hasSubscribers(tx: EntityManager, tenant: string, eventType: string): Promise<boolean> {
    const rows: unknown[] = await tx.query(
      `SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1 AND disabled_at IS NULL AND $2 = ANY (event_types) LIMIT 1`,
      [tenant, eventType],
    );
    return rows.length > 0;
  }

  /** Type and name of these entries by seq (primary key of ledger_entries). */
  async entryActions(tx: EntityManager, tenant: string, seqs: readonly number[]): Promise<Map<number, { type: string; name: string | null }>> {
    const rows: { seq: string; type: string; name: string | null }[] = await tx.query(
      `SELECT seq, type, name FROM ledger_entries WHERE tenant_id = $1 AND seq = ANY ($2::bigint[])`,
      [tenant, seqs],
    );
    return new Map(rows.map((r) => [Number(r.seq), { type: r.type, name: r.name }]));
  }

  /**
   * An endpoint's deliveries, newest first, after the keyset cursor (index
   * webhook_deliveries_endpoint), with their attempts, read from one snapshot
   * so a delivery and its attempts agree.
   */
  listDeliveries(
    tenant: string,
    endpointId: string,
    limit: number,
    after?: { created_at: string; id: string },
  ): Promise<{ rows: DeliveryRow[]; attempts: AttemptRow[] }> {
    const params: unknown[] = [tenant, endpointId, limit];
    let keyset = '';
    if (after) {
      params.push(after.created_at, after.id);
      keyset = 'AND (created_at, id) < ($4::timestamptz, $5::uuid)';
    }
    return this.ds.transaction('REPEATABLE READ', async (tx) => {
      const rows: DeliveryRow[] = await tx.query(
        `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE tenant_id = $1 AND endpoint_id = $2 ${keyset}
         ORDER BY created_at DESC, id DESC LIMIT $3`,
        params,
      );
      return { rows, attempts: await this.attempts(tx, tenant, rows.map((r) => r.id)) };
    });
  }

  async findDelivery(tenant: string, id: string): Promise<DeliveryRow | undefined> {
    const rows: DeliveryRow[] = await this.ds.query(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2`, [
      tenant,
      id,
    ]);
    return rows[0];
  }

  attemptsOf(tenant: string, deliveryIds: readonly string[]): Promise<AttemptRow[]> {
    return this.attempts(this.ds, tenant, deliveryIds);
  }

  private attempts(q: Pick<EntityManager, 'query'>, tenant: string, deliveryIds: readonly string[]): Promise<AttemptRow[]> {
    if (deliveryIds.length === 0) return Promise.resolve([]);
    return q.query(
      `SELECT delivery_id, attempt, at, status_code, latency_ms, response_excerpt, error FROM webhook_attempts
       WHERE tenant_id = $1 AND delivery_id = ANY ($2::uuid[]) ORDER BY delivery_id, attempt`,
      [tenant, deliveryIds],
    );
  }

  /**
   * A manual replay: the delivery is due now, with its webhook-id, in a new
   * retry cycle. Only a delivered or dead delivery of an enabled endpoint;
   * undefined otherwise (the caller says why).
   */
  async replay(tenant: string, id: string): Promise<DeliveryRow | undefined> {
    const rows: DeliveryRow[] = await this.ds.query(
      // UPDATE inside a CTE: the query returns plain rows
      `WITH replayed AS (
         UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(), cycle_start = d.attempts
         FROM webhook_endpoints e
         WHERE d.tenant_id = $1 AND d.id = $2 AND d.next_attempt_at IS NULL
           AND e.tenant_id = d.tenant_id AND e.id = d.endpoint_id AND e.disabled_at IS NULL
         RETURNING ${DELIVERY_COLUMNS.split(', ').map((c) => `d.${c}`).join(', ')}
       )
       SELECT * FROM replayed`,
      [tenant, id],
    );
    return rows[0];
  }

  /**
   * Claims up to `limit` due deliveries of any tenant (index
   * webhook_deliveries_due): SKIP LOCKED lets several workers claim at once
   * without taking the same row; the claim counts the attempt and leases the
   * row until `leaseS` from now, so a worker that dies mid-send leaves it due
   * again after the lease.
   */
  claimDue(limit: number, leaseS: number): Promise<ClaimedDelivery[]> {
    return this.ds.query(
      `WITH due AS (
         SELECT tenant_id, id FROM webhook_deliveries
         WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= now()
         ORDER BY next_attempt_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED
       ),
       claimed AS (
         UPDATE webhook_deliveries d
         SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
         FROM due, webhook_endpoints e
         WHERE d.tenant_id = due.tenant_id AND d.id = due.id AND e.tenant_id = d.tenant_id AND e.id = d.endpoint_id
         RETURNING d.tenant_id, d.id, d.endpoint_id, d.webhook_id, d.payload, d.attempts AS attempt, d.cycle_start,
                   e.url, e.format, e.secret, e.disabled_at IS NOT NULL AS endpoint_disabled
       )
       SELECT * FROM claimed`,
      [limit, leaseS],
    );
  }

  /**
   * Gives a claimed attempt back without counting it (the service is stopping
   * and the request was cut short): the delivery is due again at once.
   */
  async release(d: ClaimedDelivery): Promise<void> {
    await this.ds.query(
      `UPDATE webhook_deliveries SET attempts = attempts - 1, next_attempt_at = now()
       WHERE tenant_id = $1 AND id = $2 AND attempts = $3 AND next_attempt_at IS NOT NULL`,
      [d.tenant_id, d.id, d.attempt],
    );
  }

  /** A claimed delivery whose endpoint was disabled meanwhile: dead, without counting an attempt. */
  async abandon(d: ClaimedDelivery): Promise<void> {
    await this.ds.query(
      `UPDATE webhook_deliveries SET attempts = attempts - 1, status = 'dead', next_attempt_at = NULL
       WHERE tenant_id = $1 AND id = $2 AND attempts = $3`,
      [d.tenant_id, d.id, d.attempt],
    );
  }

  /**
   * Records an attempt and its outcome in one transaction. The delivery is
   * updated only if no other worker claimed it since (the lease expired).
   */
  async recordAttempt(d: ClaimedDelivery, r: AttemptResult): Promise<void> {
    await this.ds.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, status_code, latency_ms, response_excerpt, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
        [d.tenant_id, d.id, d.attempt, r.statusCode, r.latencyMs, r.excerpt, r.error],
      );
      await tx.query(
        `UPDATE webhook_deliveries
         SET status = $4, next_attempt_at = $5, last_status = $6,
             delivered_at = CASE WHEN $4 = 'delivered' THEN now() ELSE delivered_at END
         WHERE tenant_id = $1 AND id = $2 AND attempts = $3`,
        [d.tenant_id, d.id, d.attempt, r.status, r.nextAttemptAt, r.statusCode],
      );
      if (r.disableEndpoint !== undefined) {
        await tx.query(
          `UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $3
           WHERE tenant_id = $1 AND id = $2 AND disabled_at IS NULL`,
          [d.tenant_id, d.endpoint_id, r.disableEndpoint],
        );
        // nothing more goes to a disabled endpoint
        await tx.query(
          `UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL
           WHERE tenant_id = $1 AND endpoint_id = $2 AND next_attempt_at IS NOT NULL AND id <> $3`,
          [d.tenant_id, d.endpoint_id, d.id],
        );
      }
    });
  }
}
