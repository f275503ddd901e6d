import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { LedgerService } from '../ledger/ledger.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { ProjectorRepository } from './projector.repository';

/** Entries projected per transaction. */
export const PROJECTION_PAGE = 5000;
/** The slow poll: picks up entries appended by other processes (their commits fire no listener here). */
const POLL_MS = 2000;
/**
 * A query waits for the projection to reach the ledger head it saw when the
 * projection is at most this many entries behind (read-your-writes for
 * normal traffic); further behind (a bulk load, a rebuild), it answers from
 * the projection as it is and says so (`projected_seq`).
 */
export const SYNC_CATCH_UP_MAX = 20_000;
const SYNC_CATCH_UP_TIMEOUT_MS = 5000;
/** ANALYZE the read models after this many entries projected by this process, then after twice as many… */
const FIRST_ANALYZE = 10_000;
const MAX_ANALYZE_STEP = 1_000_000;

/**
 * Keeps the query read models up to date without touching ingest: the
 * ledger's append path is unchanged; after each commit `ledger.onAppended`
 * wakes this projector, which follows the tenant's ledger from its stored
 * cursor, page by page (a CQRS projection). Exactly once: each page's rows
 * and the cursor advance commit in one transaction, the cursor row locked.
 * One walk per tenant at a time in this process (wakes are coalesced); across
 * processes the cursor row lock serialises them. With `QUERY_PROJECTOR=false`
 * this process projects nothing and reads the read models as another process
 * (a projection worker) leaves them.
 */
@Injectable()
export class ProjectorService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('QueryProjector');
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private sinceAnalyze = 0;
  private analyzeStep = FIRST_ANALYZE;
  /** Whether this process projects (QUERY_PROJECTOR); when not, it only reads the cursor. */
  readonly enabled: boolean;

  constructor(
    private readonly repo: ProjectorRepository,
    private readonly ledger: LedgerService,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.enabled = config.env.QUERY_PROJECTOR;
  }

  onApplicationBootstrap(): void {
    if (!this.enabled) return;
    this.ledger.onAppended((tenant) => this.wake(tenant));
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.timer.unref();
    void this.poll();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.running.values()]);
  }

  /** Projects the tenant's new entries soon (coalesced: one walk at a time per tenant). */
  wake(tenant: string): void {
    if (this.stopped || !this.enabled) return;
    if (this.running.has(tenant)) {
      this.again.add(tenant);
      return;
    }
    const run = this.walk(tenant)
      .catch((err: unknown) => {
        if (!this.stopped) {
          this.logger.error(`projection of tenant ${tenant} failed (retried on the next wake or poll): ${String((err as Error)?.stack ?? err)}`);
        }
      })
      .finally(() => {
        this.running.delete(tenant);
        if (this.again.delete(tenant)) this.wake(tenant);
      });
    this.running.set(tenant, run);
  }

  /**
   * The seq up to which the read models hold the tenant's ledger, after
   * waiting (bounded) for the projection to reach the head as it is now, when
   * it is at most SYNC_CATCH_UP_MAX entries behind. Costs two primary-key
   * lookups when the projection is current. The stored cursor is read every
   * time, never remembered: the read models are unlogged, and after a crash
   * of PostgreSQL they and their cursors are empty again while this process
   * may still be running (migration 1765100000000).
   */
  async catchUp(tenant: string, maxLag = SYNC_CATCH_UP_MAX): Promise<number> {
    const head = await this.ledger.size(tenant);
    let seq = await this.cursor(tenant);
    if (seq >= head || head - seq > maxLag || !this.enabled) return seq;
    const deadline = Date.now() + SYNC_CATCH_UP_TIMEOUT_MS;
    while (seq < head && !this.stopped && Date.now() < deadline) {
      this.wake(tenant);
      await this.running.get(tenant);
      seq = await this.cursor(tenant);
      // another process holds the cursor row: let it finish its page
      if (seq < head) await new Promise((r) => setTimeout(r, 5));
    }
    return seq;
  }

  /** The stored cursor (also moved by other processes). */
  cursor(tenant: string): Promise<number> {
    return this.repo.cursor(tenant);
  }

  /** Resolves when no walk is running in this process (the benchmark). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  private async walk(tenant: string): Promise<void> {
    while (!this.stopped) {
      const { projected } = await this.repo.projectPage(tenant, PROJECTION_PAGE);
      this.sinceAnalyze += projected;
      if (this.sinceAnalyze >= this.analyzeStep) {
        this.sinceAnalyze = 0;
        this.analyzeStep = Math.min(this.analyzeStep * 2, MAX_ANALYZE_STEP);
        await this.repo.analyze();
      }
      if (projected < PROJECTION_PAGE) return;
    }
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    try {
      for (const tenant of await this.repo.tenantsBehind()) this.wake(tenant);
    } catch (err) {
      if (!this.stopped) this.logger.warn(`projection poll failed: ${String(err)}`);
    }
  }
}
