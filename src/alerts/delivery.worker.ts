import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { Webhook } from 'standardwebhooks';
import { MetricsService } from '../metrics/metrics.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { postWebhook, type PostOutcome } from './webhook-http';
import { envelopeSchema, parseRetryAfter, renderBody, responseExcerpt, retryDelay } from './webhook-message';
import { AllowList, checkWebhookUrl, UrlRefusedError, type CheckedUrl } from './webhook-url';
import { WebhooksRepository, type AttemptResult, type ClaimedDelivery } from './webhooks.repository';

/** Deliveries sent at once by one process. */
const MAX_IN_FLIGHT = 16;
/** Bytes of a response body kept with the attempt. */
export const EXCERPT_BYTES = 1024;
const USER_AGENT = 'agent-ledger-webhooks/1';

/**
 * Sends due outbox rows per Standard Webhooks. Polls every WEBHOOK_POLL_MS
 * (and at once when woken after an enqueue); claims rows with SKIP LOCKED so
 * several processes share the work; checks the URL again before each attempt
 * and connects only to the addresses it approved; retries on the configured
 * schedule, honouring Retry-After; a 410 disables the endpoint. On shutdown it
 * stops its timer and cuts in-flight requests short, giving their claims back.
 */
@Injectable()
export class DeliveryWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('DeliveryWorker');
  private readonly allow: AllowList;
  private readonly inFlight = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private timer?: NodeJS.Timeout;
  private tick?: Promise<void>;
  private again = false;
  private running = false;
  private readonly attempts: Counter<'outcome'>;
  private readonly latency: Histogram;

  constructor(
    private readonly repo: WebhooksRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.allow = new AllowList(config.env.WEBHOOK_ALLOWED_HOSTS);
    this.attempts = new Counter({
      name: 'agent_ledger_webhook_attempts_total',
      help: 'Webhook delivery attempts by the state they left the delivery in (delivered, failed, dead)',
      labelNames: ['outcome'] as const,
      registers: [metrics.registry],
    });
    this.latency = new Histogram({
      name: 'agent_ledger_webhook_attempt_duration_seconds',
      help: 'Duration of webhook delivery attempts that reached the receiver',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [metrics.registry],
    });
  }

  onApplicationBootstrap(): void {
    if (!this.config.env.WEBHOOK_WORKER) return;
    this.running = true;
    this.schedule(0);
  }

  async onModuleDestroy(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    for (const f of this.inFlight.values()) f.abort.abort();
    await this.tick;
    await Promise.allSettled([...this.inFlight.values()].map((f) => f.done));
  }

  /** Looks for due deliveries now (after an enqueue commits, after a replay). */
  wake(): void {
    if (!this.running) return;
    if (this.tick) this.again = true;
    else this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.tick = this.poll().finally(() => {
        this.tick = undefined;
        this.schedule(this.again ? 0 : this.config.env.WEBHOOK_POLL_MS);
        this.again = false;
      });
    }, delayMs);
  }

  private async poll(): Promise<void> {
    const leaseS = Math.ceil(this.config.env.WEBHOOK_TIMEOUT_MS / 1000) + 30;
    try {
      for (;;) {
        this.again = false;
        const free = MAX_IN_FLIGHT - this.inFlight.size;
        if (free <= 0 || !this.running) return;
        const claimed = await this.repo.claimDue(free, leaseS);
        for (const d of claimed) this.launch(d);
        if (claimed.length < free && !this.again) return;
      }
    } catch (err) {
      this.logger.warn({ err }, 'webhook worker: polling for due deliveries failed');
    }
  }

  private launch(d: ClaimedDelivery): void {
    const abort = new AbortController();
    const done = this.attempt(d, abort.signal)
      .catch((err: unknown) => this.logger.error({ err, delivery: d.id }, 'webhook worker: recording an attempt failed'))
      .finally(() => {
        this.inFlight.delete(d.id);
        this.wake();
      });
    this.inFlight.set(d.id, { abort, done });
  }

  private async attempt(d: ClaimedDelivery, signal: AbortSignal): Promise<void> {
    if (!this.running) return this.repo.release(d);
    if (d.endpoint_disabled) return this.repo.abandon(d);
    const payload = envelopeSchema.safeParse(d.payload);
    if (!payload.success) {
      const error = 'the stored payload is malformed; not sent';
      return this.record(d, { statusCode: null, latencyMs: null, excerpt: null, error, status: 'dead', nextAttemptAt: null });
    }
    let target: CheckedUrl;
    try {
      target = await checkWebhookUrl(d.url, this.allow);
    } catch (err) {
      if (!(err instanceof UrlRefusedError)) throw err;
      return this.record(d, this.retryOrDie(d, { error: `refused before connecting: ${err.message}`, latencyMs: 0 }));
    }

    const body = renderBody(d.format, payload.data);
    const now = new Date();
    const signature = new Webhook(d.secret).sign(d.webhook_id, now, body);
    const out = await postWebhook(
      target,
      {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        'webhook-id': d.webhook_id,
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': signature,
      },
      body,
      { timeoutMs: this.config.env.WEBHOOK_TIMEOUT_MS, maxBody: EXCERPT_BYTES, signal },
    );
    if (signal.aborted) return this.repo.release(d);

    const excerpt = out.body.length ? responseExcerpt(out.body, EXCERPT_BYTES, [d.secret, d.secret.replace(/^whsec_/, ''), signature]) : null;
    let result: AttemptResult;
    if (out.status !== undefined && out.status >= 200 && out.status < 300) {
      result = { statusCode: out.status, latencyMs: out.latencyMs, excerpt, error: null, status: 'delivered', nextAttemptAt: null };
    } else if (out.status === 410) {
      result = {
        statusCode: 410,
        latencyMs: out.latencyMs,
        excerpt,
        error: 'the receiver answered 410 Gone: endpoint disabled',
        status: 'dead',
        nextAttemptAt: null,
        disableEndpoint: `the receiver answered 410 Gone at ${new Date().toISOString()} (delivery ${d.id})`,
      };
    } else {
      result = this.retryOrDie(d, {
        ...out,
        excerpt,
        error: out.error ?? (out.status !== undefined ? `HTTP ${out.status}` : 'no response'),
      });
    }
    this.logger.log(
      { delivery: d.id, webhook_id: d.webhook_id, endpoint: d.endpoint_id, attempt: d.attempt, status: out.status, outcome: result.status },
      'webhook attempt',
    );
    return this.record(d, result);
  }

  private record(d: ClaimedDelivery, result: AttemptResult): Promise<void> {
    this.attempts.inc({ outcome: result.status });
    if (result.statusCode !== null && result.latencyMs !== null) this.latency.observe(result.latencyMs / 1000);
    return this.repo.recordAttempt(d, result);
  }

  /** A failed attempt: the next one per the schedule (or Retry-After if longer), or dead when the schedule is spent. */
  private retryOrDie(d: ClaimedDelivery, out: Partial<PostOutcome> & { excerpt?: string | null; error: string }): AttemptResult {
    const n = d.attempt - d.cycle_start;
    const delay = retryDelay(this.config.env.WEBHOOK_RETRY_SCHEDULE, n, parseRetryAfter(out.retryAfter));
    const base = {
      statusCode: out.status ?? null,
      latencyMs: out.latencyMs ?? null,
      excerpt: out.excerpt ?? null,
    };
    if (delay === undefined) {
      return { ...base, error: `${out.error}; retries exhausted after ${n} attempts`, status: 'dead', nextAttemptAt: null };
    }
    return { ...base, error: out.error, status: 'failed', nextAttemptAt: new Date(Date.now() + delay) };
  }
}
