import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, type OnModuleInit, Optional } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { NotFoundError, ValidationError } from '../common/problem';
import { LedgerService } from '../ledger/ledger.service';
import { ViolationSinks, type ViolationRecord, type ViolationSink } from '../policy/violation-sink';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { AlertsError } from './alerts.errors';
import { DeliveryWorker } from './delivery.worker';
import type { CreateWebhook, DeliveryView, WebhookView } from './dto/webhooks.dto';
import { envelope, severityRank, type ViolationData } from './webhook-message';
import { AllowList, checkWebhookUrl, UrlRefusedError } from './webhook-url';
import { WebhooksRepository, type AttemptRow, type DeliveryRow, type EndpointRow } from './webhooks.repository';

function endpointView(r: EndpointRow): WebhookView {
  return {
    id: r.id,
    url: r.url,
    event_types: r.event_types,
    min_severity: r.min_severity,
    format: r.format,
    created_at: r.created_at.toISOString(),
    disabled_at: r.disabled_at ? r.disabled_at.toISOString() : null,
    disabled_reason: r.disabled_reason,
  };
}

function deliveryView(r: DeliveryRow, attempts: AttemptRow[]): DeliveryView {
  return {
    id: r.id,
    endpoint_id: r.endpoint_id,
    webhook_id: r.webhook_id,
    event_type: r.event_type,
    status: r.status,
    attempts: r.attempts,
    next_attempt_at: r.next_attempt_at ? r.next_attempt_at.toISOString() : null,
    last_status: r.last_status,
    created_at: r.created_at.toISOString(),
    delivered_at: r.delivered_at ? r.delivered_at.toISOString() : null,
    payload: r.payload,
    attempt_log: attempts.map((a) => ({
      attempt: a.attempt,
      at: a.at.toISOString(),
      status_code: a.status_code,
      latency_ms: a.latency_ms,
      response_excerpt: a.response_excerpt,
      error: a.error,
    })),
  };
}

/** Keyset cursor of the delivery log: the last row's created_at and id. */
const encodeCursor = (r: DeliveryRow) => Buffer.from(`${r.created_at.toISOString()}|${r.id}`).toString('base64url');
function decodeCursor(cursor: string): { created_at: string; id: string } {
  const [created_at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (!id || Number.isNaN(Date.parse(created_at)) || !/^[0-9a-f-]{36}$/.test(id)) {
    throw new ValidationError([{ field: 'query.cursor', message: 'not a next_cursor of this list' }]);
  }
  return { created_at, id };
}

/**
 * Webhook endpoints and the outbox. Registered as a violation sink: the
 * policy evaluator calls it inside the transaction that writes violations, so
 * a violation and its deliveries commit together or not at all.
 */
@Injectable()
export class AlertsService implements OnModuleInit, ViolationSink {
  private readonly logger = new Logger('AlertsService');
  private readonly allow: AllowList;
  private readonly traceBase: string;
  /** An enqueue happened since the worker was last woken: wake it when the ledger commits. */
  private enqueued = false;

  constructor(
    private readonly repo: WebhooksRepository,
    private readonly worker: DeliveryWorker,
    private readonly ledger: LedgerService,
    @Inject(APP_CONFIG) config: AppConfig,
    @Optional() private readonly sinks?: ViolationSinks,
  ) {
    this.allow = new AllowList(config.env.WEBHOOK_ALLOWED_HOSTS);
    const base = config.env.PUBLIC_BASE_URL ?? `http://${config.env.HOST.includes(':') ? `[${config.env.HOST}]` : config.env.HOST}:${config.env.PORT}`;
    this.traceBase = `${base.replace(/\/+$/, '')}/v1/traces/`;
  }

  onModuleInit(): void {
    if (this.sinks) this.sinks.register(this);
    else this.logger.warn('no ViolationSinks registry: violations will not raise webhooks');
    // violations are ledger entries: their transaction has committed when the ledger says so
    this.ledger.onAppended(() => {
      if (!this.enqueued) return;
      this.enqueued = false;
      this.worker.wake();
    });
  }

  async create(tenant: string, body: CreateWebhook): Promise<WebhookView & { secret: string }> {
    let url: URL;
    try {
      ({ url } = await checkWebhookUrl(body.url, this.allow));
    } catch (err) {
      if (err instanceof UrlRefusedError) throw AlertsError.urlRefused(err.message);
      throw err;
    }
    // Standard Webhooks: whsec_ and base64 of 24-64 random bytes
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    const row = await this.repo.insertEndpoint({
      tenant_id: tenant,
      id: randomUUID(),
      url: url.href,
      event_types: body.event_types,
      min_severity: body.min_severity,
      format: body.format,
      secret,
    });
    return { ...endpointView(row), secret };
  }

  async list(tenant: string): Promise<WebhookView[]> {
    return (await this.repo.listEndpoints(tenant)).map(endpointView);
  }

  async deliveries(tenant: string, endpointId: string, limit: number, cursor?: string) {
    if (!(await this.repo.findEndpoint(tenant, endpointId))) throw new NotFoundError(`webhook ${endpointId}`);
    const { rows, attempts } = await this.repo.listDeliveries(tenant, endpointId, limit + 1, cursor ? decodeCursor(cursor) : undefined);
    const page = rows.slice(0, limit);
    return {
      deliveries: page.map((r) => deliveryView(r, attempts.filter((a) => a.delivery_id === r.id))),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]) : null,
    };
  }

  /** Replays a delivered or dead delivery with the same webhook-id. */
  async retry(tenant: string, deliveryId: string): Promise<DeliveryView> {
    const replayed = await this.repo.replay(tenant, deliveryId);
    if (!replayed) {
      const existing = await this.repo.findDelivery(tenant, deliveryId);
      if (!existing) throw new NotFoundError(`delivery ${deliveryId}`);
      if (existing.next_attempt_at) throw AlertsError.deliveryScheduled(deliveryId, existing.next_attempt_at);
      const endpoint = (await this.repo.findEndpoint(tenant, existing.endpoint_id))!;
      throw AlertsError.endpointDisabled(endpoint.id, endpoint.disabled_reason);
    }
    this.worker.wake();
    return deliveryView(replayed, await this.repo.attemptsOf(tenant, [replayed.id]));
  }

  /**
   * The outbox: inside the caller's transaction, one delivery of
   * `{type, timestamp, data}` per enabled endpoint of the tenant that wants
   * this event type and whose minimum severity `severity` reaches (no
   * severity: every endpoint). Returns the number of deliveries written.
   */
  async enqueue(
    tx: EntityManager,
    tenant: string,
    eventType: string,
    data: Record<string, unknown>,
    severity?: string | null,
  ): Promise<number> {
    const n = await this.repo.enqueue(tx, tenant, eventType, [{ payload: envelope(eventType, data), severityRank: severityRank(severity) }]);
    this.nudge(n);
    return n;
  }

  /** ViolationSink: `violation.created` deliveries for each violation, in the violation's transaction. */
  async onViolations(tx: EntityManager, violations: ViolationRecord[]): Promise<void> {
    const byTenant = new Map<string, ViolationRecord[]>();
    for (const v of violations) byTenant.set(v.tenant, [...(byTenant.get(v.tenant) ?? []), v]);
    for (const [tenant, list] of byTenant) {
      if (!(await this.repo.hasSubscribers(tx, tenant, 'violation.created'))) continue;
      const actions = await this.repo.entryActions(
        tx,
        tenant,
        list.map((v) => v.seq),
      );
      const items = list.map((v) => {
        const action = actions.get(v.seq);
        const data: ViolationData = {
          tenant,
          violation: {
            id: v.id,
            rule_id: v.rule_id,
            severity: v.severity,
            kind: v.kind,
            message: v.message,
            policy_set_hash: v.policy_set_hash,
            seq: v.seq,
            related_seqs: v.related_seqs,
            trace_id: v.trace_id,
            session_id: v.session_id,
            agent: v.agent,
            retro: v.retro,
            ledger_seq: v.ledger_seq,
            created_at: v.created_at,
          },
          action: action ? { seq: v.seq, ...action } : null,
          trace_url: v.trace_id ? this.traceBase + encodeURIComponent(v.trace_id) : null,
        };
        return { payload: envelope('violation.created', data), severityRank: severityRank(v.severity) };
      });
      this.nudge(await this.repo.enqueue(tx, tenant, 'violation.created', items));
    }
  }

  private nudge(enqueued: number): void {
    if (enqueued === 0) return;
    this.enqueued = true;
    // the caller's transaction commits shortly; the ledger listener or this timer wakes the worker then
    setTimeout(() => this.worker.wake(), 50).unref();
  }
}
