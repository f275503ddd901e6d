import type { BatchOutcome } from './ledger.repository';
import type { AppendBatch, Receipt } from './ledger.types';

interface Pending {
  batch: AppendBatch;
  resolve: (r: Receipt[]) => void;
  reject: (e: Error) => void;
}

export interface SequencerHooks {
  /** Commits one group for one tenant in one transaction. */
  commit(tenant: string, batches: AppendBatch[]): Promise<BatchOutcome[]>;
  /** After a commit: the number of entries it appended (replays excluded). */
  onCommitted?(tenant: string, appended: number, batches: number, seconds: number): void;
}

/**
 * Group commit, one writer per tenant: while a tenant's transaction is in
 * flight, arriving batches queue; when it commits, everything queued (up to
 * `maxGroupEvents`) goes into the next transaction. Under load this turns
 * many small commits into few large ones; idle, a batch commits at once.
 * A batch with extra writes (`inTransaction`) commits in a group of its own,
 * so its failure cannot take other producers' batches down with it.
 * A receipt is handed out only after its transaction has committed.
 */
export class Sequencer {
  private readonly queues = new Map<string, Pending[]>();
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
    });
  }

  private takeGroup(q: Pending[]): Pending[] {
    if (q[0].batch.inTransaction) return q.splice(0, 1);
    let events = 0;
    let n = 0;
    while (n < q.length && !q[n].batch.inTransaction) {
      if (n > 0 && events + q[n].batch.events.length > this.maxGroupEvents) break;
      events += q[n].batch.events.length;
      n++;
    }
    return q.splice(0, n);
  }

  /**
   * Commits a group and settles its promises. If the transaction itself
   * fails (not a refusal of one batch, which comes back as an outcome), the
   * batches are retried one by one, so one batch the database rejects cannot
   * take other producers' batches down with it.
   */
  private async commitGroup(tenant: string, group: Pending[]): Promise<void> {
    const started = process.hrtime.bigint();
    let outcomes: BatchOutcome[];
    try {
      outcomes = await this.hooks.commit(
        tenant,
        group.map((p) => p.batch),
      );
    } catch (err) {
      if (group.length === 1) {
        group[0].reject(err as Error);
        return;
      }
      for (const p of group) await this.commitGroup(tenant, [p]);
      return;
    }
    const appended = outcomes.reduce((n, o) => n + (o.ok ? o.appended : 0), 0);
    this.hooks.onCommitted?.(tenant, appended, group.length, Number(process.hrtime.bigint() - started) / 1e9);
    group.forEach((p, i) => {
      const o = outcomes[i];
      if (o.ok) p.resolve(o.receipts);
      else p.reject(o.error);
    });
  }

  private async drain(tenant: string): Promise<void> {
    this.running.add(tenant);
    try {
      for (;;) {
        const q = this.queues.get(tenant);
        if (!q || q.length === 0) {
          this.queues.delete(tenant);
          return;
        }
        const group = this.takeGroup(q);
        const events = group.reduce((s, p) => s + p.batch.events.length, 0);
        try {
          await this.commitGroup(tenant, group);
        } finally {
          this.queuedEvents -= events;
        }
      }
    } finally {
      this.running.delete(tenant);
    }
  }
}
