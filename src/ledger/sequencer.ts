import type { BatchOutcome, GroupBuilder } from './group-builder';
import type { AppendBatch, Receipt } from './ledger.types';

interface Pending {
  batch: AppendBatch;
  resolve: (r: Receipt[]) => void;
  reject: (e: Error) => void;
}

/**
 * What one group's transaction tells the group pipelined behind it. Each
 * promise settles once; `built(false)` also settles `onTrack` if it had not.
 */
export class Progress {
  private settleTrack!: (ok: boolean) => void;
  private settleBuilt!: (ok: boolean) => void;
  /**
   * True once the group is sure to write exactly the rows it was built with
   * on the head it was built for: its transaction holds the tenant lock on
   * that head, or (pipelined) it writes behind a group that is on track.
   */
  readonly onTrack = new Promise<boolean>((r) => (this.settleTrack = r));
  /** True once the group committed exactly as built; false as soon as it will not. */
  readonly asBuilt = new Promise<boolean>((r) => (this.settleBuilt = r));

  track(ok: boolean): void {
    this.settleTrack(ok);
  }

  built(ok: boolean): void {
    this.settleTrack(ok);
    this.settleBuilt(ok);
  }
}

export interface SequencerHooks {
  /** A builder for the group after `after` (or after the last commit); undefined if unknown. */
  builder(tenant: string, after?: GroupBuilder): GroupBuilder | undefined;
  /**
   * Commits one group in one transaction (rebuilding it if `prepared` does not
   * start at the real head), reporting on `progress`. With `after`, the group
   * is pipelined: it may write its rows while the group before it commits,
   * and commits only after that group committed as built.
   */
  commit(
    tenant: string,
    batches: AppendBatch[],
    prepared?: GroupBuilder,
    progress?: Progress,
    after?: Progress,
  ): Promise<{ outcomes: BatchOutcome[]; end: unknown }>;
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

interface Flight {
  group: Group;
  progress: Progress;
  done: Promise<void>;
}

/**
 * Group commit, one writer per tenant, pipelined: while a tenant's
 * transaction is in flight, arriving batches are built into the next group
 * (seqs, records, hashes, Merkle nodes, COPY text) on the state that
 * transaction will leave, so the database never waits for this process's
 * CPU; when it commits, the next group's transaction starts at once and only
 * streams rows. Under load this turns many small commits into few large ones;
 * idle, a batch commits at once (a small one in a single statement: see
 * LedgerRepository.commit). A batch with extra writes (`inTransaction`)
 * commits in a group of its own. A receipt is handed out only after its
 * transaction has committed.
 *
 * Two transactions per tenant may be in flight: the oldest one (`inflight`)
 * and, pipelined behind it on a second connection, the next group
 * (`staged`), which streams its rows while the oldest one still writes or
 * commits, and commits only after it (see LedgerRepository.commit for why
 * this keeps seqs gap-free and safe across processes). A third group builds
 * in memory meanwhile.
 */
export class Sequencer {
  private readonly queues = new Map<string, Pending[]>();
  private readonly wakers = new Map<string, () => void>();
  private readonly running = new Set<string>();
  private queuedEvents = 0;
  /** Milliseconds with events waiting or committing, up to `busySince` (see `busyMs`). */
  private busyTotal = 0;
  private busySince: number | undefined;

  constructor(
    private readonly hooks: SequencerHooks,
    private readonly maxGroupEvents: number,
    private readonly maxQueuedEvents: number,
  ) {}

  /** Events waiting for a transaction, over all tenants. */
  get depth(): number {
    return this.queuedEvents;
  }

  /**
   * Milliseconds so far (monotonic, from `performance.now`) during which some
   * event was waiting for or inside a transaction: sampled over a window it
   * is how busy ingest is (see IngestPriority).
   */
  busyMs(now = performance.now()): number {
    return this.busyTotal + (this.busySince === undefined ? 0 : now - this.busySince);
  }

  private addQueued(n: number): void {
    const was = this.queuedEvents;
    this.queuedEvents += n;
    if (was === 0 && this.queuedEvents > 0) this.busySince = performance.now();
    else if (was > 0 && this.queuedEvents === 0 && this.busySince !== undefined) {
      this.busyTotal += performance.now() - this.busySince;
      this.busySince = undefined;
    }
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
      this.addQueued(batch.events.length);
      if (!this.running.has(batch.tenant)) void this.drain(batch.tenant);
      else this.wakers.get(batch.tenant)?.();
    });
  }

  /** Moves queued batches into the group being built, as far as it may grow. */
  private fill(tenant: string, next: Group | undefined, after: GroupBuilder | null | undefined): Group | undefined {
    const q = this.queues.get(tenant);
    while (q && q.length) {
      const p = q[0];
      if (next && (next.sealed || p.batch.inTransaction || next.events + p.batch.events.length > this.maxGroupEvents)) break;
      q.shift();
      next ??= {
        items: [],
        events: 0,
        sealed: !!p.batch.inTransaction,
        // null: the last group in flight is built in its transaction, so its end is not known here
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
    let inflight: Flight | undefined;
    let staged: Flight | undefined;
    let next: Group | undefined;
    try {
      for (;;) {
        const tail = staged ?? inflight;
        next = this.fill(tenant, next, tail ? (tail.group.builder ?? null) : undefined);
        if (!inflight) {
          if (!next) return;
          inflight = this.start(tenant, next);
          next = undefined;
          continue;
        }
        if (!staged && next?.builder && !next.sealed) {
          // built on the state `inflight` promises: write it now on a second connection
          staged = this.start(tenant, next, inflight.progress);
          next = undefined;
          continue;
        }
        // build arrivals into the next group until the oldest transaction settles
        const arrived = new Promise<'arrived'>((r) => this.wakers.set(tenant, () => r('arrived')));
        const settled = await Promise.race([inflight.done.then(() => 'settled' as const), arrived]);
        this.wakers.delete(tenant);
        if (settled === 'arrived') continue;
        // `next` was built on the state the tail promised; if the oldest did not commit as built, neither will the tail
        if (next && !(await inflight.progress.asBuilt)) next.builder = undefined;
        inflight = staged;
        staged = undefined;
      }
    } finally {
      this.wakers.delete(tenant);
      this.running.delete(tenant);
      if (this.queues.get(tenant)?.length) void this.drain(tenant);
      else this.queues.delete(tenant);
    }
  }

  private start(tenant: string, group: Group, after?: Progress): Flight {
    const progress = new Progress();
    const done = this.commit(tenant, group, progress, after).finally(() => progress.built(false));
    return { group, progress, done };
  }

  /**
   * Commits a group and settles its promises. If the transaction itself
   * fails (not a refusal of one batch, which comes back as an outcome), its
   * batches are retried one by one, so one batch the database rejects cannot
   * take other producers' batches down with it.
   */
  private async commit(tenant: string, group: Group, progress?: Progress, after?: Progress, retry = false): Promise<void> {
    const started = process.hrtime.bigint();
    try {
      const { outcomes } = await this.hooks.commit(
        tenant,
        group.items.map((p) => p.batch),
        group.builder,
        progress,
        after,
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
    } catch (err) {
      // the group behind this one must not wait for these retries (their rows may lie where it wrote)
      progress?.built(false);
      if (group.items.length === 1) group.items[0].reject(err as Error);
      else for (const p of group.items) await this.commit(tenant, { items: [p], events: p.batch.events.length, sealed: true }, undefined, undefined, true);
    } finally {
      if (!retry) this.addQueued(-group.events);
    }
  }
}
