import type { BatchOutcome, GroupBuilder, TenantState } from './group-builder';
import type { AppendBatch, Receipt } from './ledger.types';

interface Pending {
  batch: AppendBatch;
  resolve: (r: Receipt[]) => void;
  reject: (e: Error) => void;
}

export interface SequencerHooks {
  /** A builder for the group after `after` (or after the last commit); undefined if unknown. */
  builder(tenant: string, after?: TenantState): GroupBuilder | undefined;
  /** Commits one group in one transaction (rebuilding it if `prepared` does not start at the real head). */
  commit(tenant: string, batches: AppendBatch[], prepared?: GroupBuilder): Promise<{ outcomes: BatchOutcome[]; end: TenantState }>;
  /** After a commit: the number of entries it appended (replays excluded). */
  onCommitted?(tenant: string, appended: number, batches: number, seconds: number): void;
}

interface Group {
  items: Pending[];
  events: number;
  /** Built ahead (seqs, hashes, COPY text), or built in the transaction. */
  builder?: GroupBuilder;
  /** A group of one batch with its own writes: never joined by others. */
  sealed: boolean;
}

/**
 * Group commit, one writer per tenant, pipelined: while a tenant's
 * transaction is in flight, arriving batches are built into the next group
 * (seqs, records, hashes, Merkle nodes, COPY text) on the state that
 * transaction will leave, so the database never waits for this process's
 * CPU; when it commits, the next group's transaction starts at once and only
 * streams rows. Under load this turns many small commits into few large ones;
 * idle, a batch commits at once. A batch with extra writes (`inTransaction`)
 * commits in a group of its own. A receipt is handed out only after its
 * transaction has committed.
 */
export class Sequencer {
  private readonly queues = new Map<string, Pending[]>();
  private readonly wakers = new Map<string, () => void>();
  private readonly running = new Set<string>();
  private queuedEvents = 0;

  constructor(
    private readonly hooks: SequencerHooks,
    private readonly maxGroupEvents: number,
    private readonly maxQueuedEvents: number,
  ) {}

  /** Events waiting for a transaction, over all tenants. */
  get depth(): number {
    return this.queuedEvents;
  }

  /** Whether `n` more events fit in the queue (back-pressure: 503 otherwise). */
  hasRoom(n: number): boolean {
    return this.queuedEvents + n <= this.maxQueuedEvents;
  }

  submit(batch: AppendBatch): Promise<Receipt[]> {
    return new Promise((resolve, reject) => {
      let q = this.queues.get(batch.tenant);
      if (!q) this.queues.set(batch.tenant, (q = []));
      q.push({ batch, resolve, reject });
      this.queuedEvents += batch.events.length;
      if (!this.running.has(batch.tenant)) void this.drain(batch.tenant);
      else this.wakers.get(batch.tenant)?.();
    });
  }

  /** Moves queued batches into the group being built, as far as it may grow. */
  private fill(tenant: string, next: Group | undefined, after: TenantState | null | undefined): Group | undefined {
    const q = this.queues.get(tenant);
    while (q && q.length) {
      const p = q[0];
      if (next && (next.sealed || p.batch.inTransaction || next.events + p.batch.events.length > this.maxGroupEvents)) break;
      q.shift();
      next ??= {
        items: [],
        events: 0,
        sealed: !!p.batch.inTransaction,
        // null: the commit in flight is being built in its transaction, so its end is not known here
        builder: after === null ? undefined : this.hooks.builder(tenant, after),
      };
      next.items.push(p);
      next.events += p.batch.events.length;
      next.builder?.add(p.batch);
    }
    return next;
  }

  private async drain(tenant: string): Promise<void> {
    this.running.add(tenant);
    let inflight: { group: Group; done: Promise<TenantState | undefined> } | undefined;
    let next: Group | undefined;
    try {
      for (;;) {
        next = this.fill(tenant, next, inflight ? (inflight.group.builder?.end ?? null) : undefined);
        if (inflight) {
          // build arrivals into the next group until the transaction in flight settles
          const arrived = new Promise<'arrived'>((r) => this.wakers.set(tenant, () => r('arrived')));
          const settled = await Promise.race([inflight.done.then(() => 'settled' as const), arrived]);
          this.wakers.delete(tenant);
          if (settled === 'arrived') continue;
          const end = await inflight.done;
          // the next group was built on the state the commit promised; if it failed, build it in its transaction
          if (!end && next) next.builder = undefined;
          inflight = undefined;
          continue;
        }
        if (!next) return;
        inflight = { group: next, done: this.commit(tenant, next) };
        next = undefined;
      }
    } finally {
      this.wakers.delete(tenant);
      this.running.delete(tenant);
      if (this.queues.get(tenant)?.length) void this.drain(tenant);
      else this.queues.delete(tenant);
    }
  }

  /**
   * Commits a group and settles its promises; resolves with the state it left
   * (undefined on failure). If the transaction itself fails (not a refusal of
   * one batch, which comes back as an outcome), its batches are retried one
   * by one, so one batch the database rejects cannot take other producers'
   * batches down with it.
   */
  private async commit(tenant: string, group: Group, retry = false): Promise<TenantState | undefined> {
    const started = process.hrtime.bigint();
    try {
      const { outcomes, end } = await this.hooks.commit(
        tenant,
        group.items.map((p) => p.batch),
        group.builder,
      );
      const appended = outcomes.reduce((n, o) => n + (o.ok ? o.appended : 0), 0);
      try {
        this.hooks.onCommitted?.(tenant, appended, group.items.length, Number(process.hrtime.bigint() - started) / 1e9);
      } catch {
        // observers must not undo a commit
      }
      group.items.forEach((p, i) => {
        const o = outcomes[i];
        if (o.ok) p.resolve(o.receipts);
        else p.reject(o.error);
      });
      return end;
    } catch (err) {
      if (group.items.length === 1) group.items[0].reject(err as Error);
      else for (const p of group.items) await this.commit(tenant, { items: [p], events: p.batch.events.length, sealed: true }, true);
      return undefined;
    } finally {
      if (!retry) this.queuedEvents -= group.events;
    }
  }
}
