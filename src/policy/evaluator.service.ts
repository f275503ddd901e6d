import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import {
  parseScopeKey,
  PolicyEngine,
  type LedgerEventForPolicy,
  type PolicySet,
  type ScopeKey,
  type Violation,
} from '../core/policy';
import { Counter } from 'prom-client';
import { LedgerService, type ServiceEvent } from '../ledger/ledger.service';
import { MetricsService } from '../metrics/metrics.service';
import { Semaphore } from '../common/semaphore';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { PolicySetStore, type LoadedPolicySet } from './policy-set.store';
import { PolicyRepository, type PageRow } from './policy.repository';
import { ViolationSinks, type ViolationRecord } from './violation-sink';

/** A violation found, with the span of the offending event (the violation entry nests under it). */
interface Found {
  violation: Violation;
  spanId: string;
}

interface TenantEngine {
  engine: PolicyEngine;
  types: string[] | null;
  /** The cursor when this engine started: it has seen every relevant event after it. */
  origin: number;
  hash: string;
  /** The cursor this engine's state corresponds to; any other cursor means start over. */
  seq: number;
}

export interface RetroResult {
  policy_set_hash: string;
  from_seq: number;
  to_seq: number;
  evaluated: number;
  violations: ViolationRecord[];
}

const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** Pages evaluated without violations before the cursor is written anyway. */
const CURSOR_LAG = 10;
/** Most violation entries written in one ledger batch by retro-evaluation. */
const RETRO_CHUNK = 500;

/**
 * The policy evaluator (DESIGN.md §6). Per tenant, it walks the ledger in seq
 * order from a stored cursor, one page at a time, and commits the violations
 * it finds (ledger entries, rows, sink outbox rows) together with the cursor
 * advance in one transaction: each violation exactly once, across crashes and
 * processes. Engine state lives in memory and is rebuilt from the ledger
 * (replay of a scope's earlier events) whenever it is missing or stale.
 *
 * Concurrency: one walk per tenant in this process (a running flag), one
 * across processes (a session advisory lock `agent-ledger-policy:<tenant>`,
 * taken on its own connection with pg_try_advisory_lock, so it never waits
 * while holding the ledger's own transaction lock), and the cursor update is
 * guarded by the seq it moves from.
 */
@Injectable()
export class EvaluatorService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('PolicyEvaluator');
  private readonly engines = new Map<string, TenantEngine>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly enabled: boolean;
  private readonly evaluated: Counter;
  private readonly raised: Counter<'severity' | 'retro'>;
  private readonly deferred: MetricsService['followerDeferred'];
  /** Tenant walks at once: a quarter of the pool (each takes two connections, and its violations a commit's). */
  private readonly walks: Semaphore;

  constructor(
    private readonly repo: PolicyRepository,
    private readonly ledger: LedgerService,
    private readonly store: PolicySetStore,
    private readonly sinks: ViolationSinks,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.enabled = config.env.POLICY_EVALUATOR ?? config.env.NODE_ENV !== 'test';
    this.evaluated = new Counter({
      name: 'agent_ledger_policy_entries_evaluated_total',
      help: 'Ledger entries the policy evaluator has walked past (live)',
      registers: [metrics.registry],
    });
    this.deferred = metrics.followerDeferred;
    this.walks = new Semaphore(Math.max(1, Math.floor(config.env.DATABASE_POOL_SIZE / 4)));
    this.raised = new Counter({
      name: 'agent_ledger_policy_violations_total',
      help: 'Policy violations recorded, by severity and whether retro-evaluation found them',
      labelNames: ['severity', 'retro'] as const,
      registers: [metrics.registry],
    });
  }

  onApplicationBootstrap(): void {
    if (!this.enabled) return;
    this.ledger.onAppended((tenant) => this.wake(tenant));
    this.store.onLoaded(() => {
      this.engines.clear();
      void this.poll(true);
    });
    this.timer = setInterval(() => void this.poll(), this.config.env.POLICY_POLL_MS);
    this.timer.unref();
    void this.poll();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.running.values()]);
  }

  /** Evaluates the tenant's new entries soon (coalesced: one walk at a time per tenant). */
  wake(tenant: string): void {
    if (this.stopped || !this.enabled) return;
    if (this.running.has(tenant)) {
      this.again.add(tenant);
      return;
    }
    const run = this.run(tenant)
      .catch((err: unknown) => {
        this.engines.delete(tenant);
        this.logger.error(`policy evaluation of tenant ${tenant} failed (retried on the next wake or poll): ${String((err as Error)?.stack ?? err)}`);
      })
      .finally(() => {
        this.running.delete(tenant);
        if (this.again.delete(tenant)) this.wake(tenant);
      });
    this.running.set(tenant, run);
  }

  /** Resolves when no walk is running or pending in this process (tests, the benchmark). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  /** Wakes the tenants with unevaluated entries; with `all`, every tenant seen (to record a new set). */
  private async poll(all = false): Promise<void> {
    if (this.stopped || !this.store.current) return;
    try {
      const tenants = new Set(await this.repo.tenantsBehind());
      if (all) for (const t of await this.repo.knownTenants()) tenants.add(t);
      for (const tenant of tenants) this.wake(tenant);
    } catch (err) {
      if (!this.stopped) this.logger.warn(`policy poll failed: ${String(err)}`);
    }
  }

  /** Runs `fn` holding the tenant's evaluation lock; with `wait` false, skips (returns undefined) when another holds it. */
  private async withLock<T>(tenant: string, wait: boolean, fn: () => Promise<T>): Promise<T | undefined> {
    const session = await this.repo.session();
    const key = `agent-ledger-policy:${tenant}`;
    try {
      if (wait) {
        await session.query(`SELECT pg_advisory_lock(hashtextextended($1, 0))`, [key]);
      } else {
        const [{ locked }] = (await session.query(`SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked`, [key])) as {
          locked: boolean;
        }[];
        if (!locked) return undefined;
      }
      try {
        return await fn();
      } finally {
        await session.query(`SELECT pg_advisory_unlock(hashtextextended($1, 0))`, [key]);
      }
    } finally {
      await session.release();
    }
  }

  /**
   * Walks the tenant's ledger from its cursor to the head, page by page,
   * after giving way to saturated ingest (bounded: see IngestPriority). The
   * wait comes before the walk takes its lock session: a deferred walk holds
   * no pool connection (one per waiting tenant would starve ingest's own
   * commits of connections); once started, a walk runs to the head.
   */
  private async run(tenant: string): Promise<void> {
    const waited = await this.ledger.priority.yield({
      lag: () => this.ledger.lagBehind(tenant, this.engines.get(tenant)?.seq ?? 0),
      stopped: () => this.stopped,
    });
    if (waited) this.deferred.inc({ follower: 'evaluator' }, waited / 1000);
    // A walk holds its lock session and needs another connection for its reads and writes: walks without a
    // bound (one per tenant, all starting as a deferral ends) could take every connection of the pool and wait
    // for one more, for ever.
    await this.walks.run(async () => {
      const loaded = this.store.current;
      if (!loaded || this.stopped) return;
      // When another process holds the lock it walks these entries; the poll covers a lock released meanwhile.
      await this.withLock(tenant, false, () => this.walk(tenant, loaded));
    });
  }

  /**
   * From the cursor to the head. The cursor is read once (the lock is held
   * and every advance is guarded by the seq it moves from); the next page is
   * read while this one is evaluated and written.
   */
  private async walk(tenant: string, loaded: LoadedPolicySet): Promise<true> {
    const pageSize = this.config.env.POLICY_PAGE_SIZE;
    const cursor = await this.repo.cursor(tenant);
    let state = this.engines.get(tenant);
    if (!state || state.hash !== loaded.set.hash || state.seq !== cursor.seq) {
      state = { engine: this.newEngine(loaded), types: relevantTypes(loaded.set), origin: cursor.seq, hash: loaded.set.hash, seq: cursor.seq };
      this.engines.set(tenant, state);
    }
    let announce = cursor.policySetHash !== loaded.set.hash;
    const read = (after: number) => {
      const p = this.repo.page(tenant, after, MAX_SEQ, pageSize, state.types);
      p.catch(() => undefined); // awaited below, or abandoned when the walk stops
      return p;
    };
    let next = read(state.seq);
    // The committed cursor; pages without violations move it lazily (at most every CURSOR_LAG pages, and at the end).
    let committed = cursor.seq;
    let lag = 0;
    const flush = async () => {
      if (committed < state.seq) await this.repo.advanceOnly(tenant, committed, state.seq);
      committed = state.seq;
      lag = 0;
    };
    try {
      while (!this.stopped && this.store.current === loaded) {
        const from = state.seq;
        const page = await next;
        if (!page.length && !announce) {
          await flush();
          return true;
        }
        const to = page.length ? page[page.length - 1].seq : from;
        if (page.length === pageSize) next = read(to);
        const found = await this.evaluatePage(tenant, state.engine, state.types, page, from, state.origin);
        this.reportCelErrors(tenant, state.engine);
        if (found.length || announce) {
          const ids = found.map(() => randomUUID());
          const events: ServiceEvent[] = [
            ...(announce ? [setLoadedEvent(loaded)] : []),
            ...found.map((f, i) => violationEvent(f, ids[i], false)),
          ];
          const offset = announce ? 1 : 0;
          await this.ledger.appendServiceEvents(tenant, events, async (tx, receipts) => {
            const records = found.map((f, i) => toRecord(tenant, f.violation, ids[i], receipts[i + offset].seq, false));
            await this.repo.insertViolations(tx, records);
            await this.repo.advance(tx, tenant, committed, to, loaded.set.hash);
            await this.sinks.deliver(tx, records);
          });
          announce = false;
          for (const f of found) this.raised.inc({ severity: f.violation.severity, retro: 'false' });
          state.seq = committed = to;
          lag = 0;
        } else {
          state.seq = to;
          if (++lag >= CURSOR_LAG) await flush();
        }
        this.evaluated.inc(page.length);
        if (page.length < pageSize) break;
      }
      await flush();
      return true;
    } catch (err) {
      this.engines.delete(tenant);
      throw err;
    }
  }

  private newEngine(loaded: LoadedPolicySet): PolicyEngine {
    return new PolicyEngine(loaded.set, { maxScopes: this.config.env.POLICY_MAX_SCOPES });
  }

  private reportCelErrors(tenant: string, engine: PolicyEngine): void {
    const errors = engine.takeErrors();
    if (!errors.length) return;
    const first = errors[0];
    this.logger.warn(
      `tenant ${tenant}: ${errors.length} CEL evaluation error(s) counted as no match, first: rule ${first.ruleId} at seq ${first.seq} (${first.expression}): ${first.message}`,
    );
  }

  /**
   * Evaluates one page with `engine`, whose state covers every entry up to
   * `afterSeq`, or is rebuilt here: before an event, each of its scopes the
   * engine does not hold is replayed from the scope's earlier events (from
   * the database up to `afterSeq`, then from this page). One query finds
   * which scopes have earlier events at all, so a new run costs no query.
   */
  private async evaluatePage(
    tenant: string,
    engine: PolicyEngine,
    types: string[] | null,
    page: PageRow[],
    afterSeq: number,
    origin?: number,
  ): Promise<Found[]> {
    const events = page.map((p) => p.event).filter((e): e is LedgerEventForPolicy => e !== null);
    const byKey = new Map<ScopeKey, LedgerEventForPolicy[]>();
    const notHeld = { trace: new Set<string>(), session: new Set<string>() };
    for (const e of events) {
      for (const key of engine.scopeKeys(e)) {
        let list = byKey.get(key);
        if (!list) byKey.set(key, (list = []));
        list.push(e);
        if (!engine.hasScope(key)) {
          const { scope, id } = parseScopeKey(key);
          notHeld[scope].add(id);
        }
      }
    }
    // An engine that never evicted has seen every relevant event after its origin: only older ones can be missing.
    const upTo = origin !== undefined && engine.scopeCount < this.config.env.POLICY_MAX_SCOPES ? Math.min(origin, afterSeq) : afterSeq;
    const [tracesBefore, sessionsBefore] = await Promise.all([
      this.repo.scopesWithEventsUpTo(tenant, 'trace_id', [...notHeld.trace], upTo, types),
      this.repo.scopesWithEventsUpTo(tenant, 'session_id', [...notHeld.session], upTo, types),
    ]);
    const found: Found[] = [];
    for (const e of events) {
      for (const key of engine.missingScopes(e)) {
        const { scope, id } = parseScopeKey(key);
        // held at the page's start and evicted since: not covered by the query above
        const evictedHere = !notHeld[scope].has(id);
        const earlier = evictedHere || (scope === 'trace' ? tracesBefore : sessionsBefore).has(id)
          ? await this.repo.scopeEvents(tenant, scope === 'trace' ? 'trace_id' : 'session_id', id, afterSeq, types)
          : [];
        for (const x of earlier) engine.replay(x, [key]);
        for (const x of byKey.get(key) ?? []) {
          if (x.seq >= e.seq) break;
          engine.replay(x, [key]);
        }
      }
      for (const violation of engine.evaluate(e)) found.push({ violation, spanId: e.span_id });
    }
    return found;
  }

  /**
   * Retro-evaluation: runs the current set over [fromSeq, toSeq] (clamped to
   * what the live evaluator has covered) with a fresh engine, and records,
   * marked retro, the violations no existing violation names (same rule and
   * offending seq). Holds the tenant's evaluation lock, so it never races the
   * live walk nor another retro run.
   */
  async retro(tenant: string, loaded: LoadedPolicySet, fromSeq: number, toSeq: number): Promise<RetroResult> {
    const result = await this.withLock(tenant, true, async () => {
      const cursor = await this.repo.cursor(tenant);
      const to = Math.min(toSeq, cursor.seq);
      const out: RetroResult = { policy_set_hash: loaded.set.hash, from_seq: fromSeq, to_seq: to, evaluated: 0, violations: [] };
      if (fromSeq > to) return out;
      const engine = this.newEngine(loaded);
      const types = relevantTypes(loaded.set);
      const missed: Found[] = [];
      let after = fromSeq - 1;
      while (after < to) {
        const page = await this.repo.page(tenant, after, to, this.config.env.POLICY_PAGE_SIZE, types);
        if (!page.length) break;
        const found = await this.evaluatePage(tenant, engine, types, page, after);
        out.evaluated += page.filter((p) => p.producer).length;
        const existing = await this.repo.existingViolationKeys(tenant, [...new Set(found.map((f) => f.violation.seq))]);
        missed.push(...found.filter((f) => !existing.has(`${f.violation.ruleId}@${f.violation.seq}`)));
        after = page[page.length - 1].seq;
      }
      this.reportCelErrors(tenant, engine);
      for (let i = 0; i < missed.length; i += RETRO_CHUNK) {
        const chunk = missed.slice(i, i + RETRO_CHUNK);
        const ids = chunk.map(() => randomUUID());
        let written: ViolationRecord[] = [];
        await this.ledger.appendServiceEvents(
          tenant,
          chunk.map((f, j) => violationEvent(f, ids[j], true)),
          async (tx, receipts) => {
            const records = chunk.map((f, j) => toRecord(tenant, f.violation, ids[j], receipts[j].seq, true));
            await this.repo.insertViolations(tx, records);
            await this.sinks.deliver(tx, records);
            written = records;
          },
        );
        out.violations.push(...written);
        for (const v of written) this.raised.inc({ severity: v.severity, retro: 'true' });
      }
      return out;
    });
    return result!;
  }
}

/**
 * The event types any rule's match or prior accepts, or null when some
 * matcher has no type filter. Other events change no rule state (the engine
 * applies a rule only to events passing its static filters), so the
 * evaluator neither reads nor replays them.
 */
export function relevantTypes(set: PolicySet): string[] | null {
  const types = new Set<string>();
  for (const rule of set.rules) {
    for (const m of rule.prior === undefined ? [rule.match] : [rule.match, rule.prior]) {
      if (m.types === undefined) return null;
      for (const t of m.types) types.add(t);
    }
  }
  return [...types].sort();
}

function setLoadedEvent(loaded: LoadedPolicySet): ServiceEvent {
  return {
    type: 'policy.set_loaded',
    name: loaded.set.hash,
    attributes: {
      policy_set_hash: loaded.set.hash,
      content_digest: loaded.contentDigest,
      rules: loaded.set.rules.map((r) => r.id),
      files: [...loaded.set.files],
    },
  };
}

function violationEvent(f: Found, id: string, retro: boolean): ServiceEvent {
  const v = f.violation;
  return {
    type: 'policy.violation',
    name: v.ruleId,
    trace_id: v.traceId,
    session_id: v.sessionId,
    parent_span_id: f.spanId,
    attributes: {
      violation_id: id,
      rule: v.ruleId,
      severity: v.severity,
      kind: v.kind,
      scope: v.scope,
      policy_set_hash: v.policySetHash,
      seq: v.seq,
      related_seqs: [...v.relatedSeqs],
      agent: v.agent,
      message: v.message,
      retro,
    },
  };
}

function toRecord(tenant: string, v: Violation, id: string, ledgerSeq: number, retro: boolean): ViolationRecord {
  return {
    id,
    tenant,
    rule_id: v.ruleId,
    severity: v.severity,
    kind: v.kind,
    policy_set_hash: v.policySetHash,
    seq: v.seq,
    related_seqs: [...v.relatedSeqs],
    trace_id: v.traceId,
    session_id: v.sessionId,
    agent: v.agent,
    message: v.message,
    retro,
    ledger_seq: ledgerSeq,
    created_at: new Date().toISOString(),
  };
}
