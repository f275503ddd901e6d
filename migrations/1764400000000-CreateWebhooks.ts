import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Webhook alerts (DESIGN.md §7): endpoints, the delivery outbox (rows are
 * written in the same transaction as the violation that causes them) and one
 * row per delivery attempt. Working state, not ledger tables: the runtime role
 * may update them. Keyed by tenant first; foreign keys stay within a tenant.
 */
export class CreateWebhooks1764400000000 implements MigrationInterface {
  name = 'CreateWebhooks1764400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE webhook_endpoints (
        tenant_id       text        NOT NULL,
        id              uuid        NOT NULL,
        url             text        NOT NULL,
        event_types     text[]      NOT NULL CHECK (cardinality(event_types) > 0),
        min_severity    text        NOT NULL CHECK (min_severity IN ('low', 'medium', 'high', 'critical')),
        format          text        NOT NULL CHECK (format IN ('standard', 'slack')),
        -- the whsec_ signing secret: returned once at creation, never listed or logged
        secret          text        NOT NULL,
        disabled_at     timestamptz,
        disabled_reason text,
        created_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id)
      )`);

    await q.query(`
      CREATE TABLE webhook_deliveries (
        tenant_id       text        NOT NULL,
        id              uuid        NOT NULL,
        endpoint_id     uuid        NOT NULL,
        -- the Standard Webhooks message id: the same on every attempt and replay
        webhook_id      text        NOT NULL,
        event_type      text        NOT NULL,
        payload         jsonb       NOT NULL,
        status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
        attempts        integer     NOT NULL DEFAULT 0,
        -- attempts made before the current retry cycle (a manual replay starts a new one)
        cycle_start     integer     NOT NULL DEFAULT 0,
        next_attempt_at timestamptz,
        last_status     integer,
        created_at      timestamptz NOT NULL DEFAULT now(),
        delivered_at    timestamptz,
        PRIMARY KEY (tenant_id, id),
        FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id),
        -- a delivery is due exactly while it waits for an attempt
        CHECK ((status IN ('pending', 'failed')) = (next_attempt_at IS NOT NULL))
      )`);
    await q.query(`CREATE UNIQUE INDEX webhook_deliveries_webhook_id ON webhook_deliveries (tenant_id, webhook_id)`);
    // the worker's due-deliveries query: WHERE next_attempt_at <= now() ORDER BY next_attempt_at (only waiting rows are indexed)
    await q.query(
      `CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL`,
    );
    // an endpoint's delivery log, newest first
    await q.query(`CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at DESC, id DESC)`);

    await q.query(`
      CREATE TABLE webhook_attempts (
        tenant_id        text        NOT NULL,
        delivery_id      uuid        NOT NULL,
        attempt          integer     NOT NULL CHECK (attempt > 0),
        at               timestamptz NOT NULL DEFAULT now(),
        status_code      integer,
        latency_ms       integer,
        response_excerpt text,
        error            text,
        PRIMARY KEY (tenant_id, delivery_id, attempt),
        FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id)
      )`);

    await q.query(`GRANT SELECT, INSERT, UPDATE ON webhook_endpoints TO agent_ledger_app`);
    await q.query(`GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO agent_ledger_app`);
    await q.query(`GRANT SELECT, INSERT ON webhook_attempts TO agent_ledger_app`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE webhook_attempts`);
    await q.query(`DROP TABLE webhook_deliveries`);
    await q.query(`DROP TABLE webhook_endpoints`);
  }
}
