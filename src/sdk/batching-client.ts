import { LedgerApiError, LedgerClient, type ClientOptions, type Receipt } from '../client/ledger-client';
import { MAX_BATCH_BYTES, MAX_EVENTS_PER_BATCH, type TraceEvent } from '../core/event';

/**
 * A batching, background-flushing client for agent runtimes: `record()` is
 * synchronous and cheap; events are signed and sent in batches by size and
 * by time, in the order they were recorded (the ledger's order is what
 * policies read: an approval recorded before a tool call must land before it).
 *
 * Delivery: one batch in flight at a time. A batch that fails with a
 * retryable error (network, 429, 5xx) is retried by the underlying
 * LedgerClient with backoff, then stays at the head of the queue and is
 * tried again at the next flush, with the same event ids and content, so a
 * resend is idempotent (the ledger returns the original receipts). A batch
 * the ledger refuses for good (400/401/403/409/422) is handed to `onError`
 * and dropped: sending it again cannot succeed.
 *
 * Bounded queue: at most `maxQueueEvents` events wait. When it is full,
 * `whenFull` decides: "throw" (the default) makes `record()` throw a
 * `LedgerQueueFullError`, so an agent that must not act unrecorded can stop;
 * "drop" drops the new event, counts it in `stats.dropped` and calls `onDrop`.
 */

export interface BatchingOptions extends ClientOptions {
  /** Events per batch (default 100, at most 1000). A full batch is sent at once. */
  maxBatchEvents?: number;
  /** Approximate JSON bytes per batch (default 4 MiB, under the 5 MiB limit). */
  maxBatchBytes?: number;
  /** A partial batch is sent after this long (default 1000 ms). */
  flushIntervalMs?: number;
  /** Events that may wait (default 10 000). */
  maxQueueEvents?: number;
  /** What `record()` does when the queue is full (default "throw"). */
  whenFull?: 'throw' | 'drop';
  /** A batch the ledger refused for good; its events are not retried. */
  onError?: (err: Error, events: TraceEvent[]) => void;
  /** An event dropped because the queue was full (whenFull "drop"). */
  onDrop?: (event: TraceEvent) => void;
  /** Receipts of each delivered batch. */
  onReceipts?: (receipts: Receipt[]) => void;
}

export class LedgerQueueFullError extends Error {
  constructor(readonly capacity: number) {
    super(`the ledger queue is full (${capacity} events waiting); the event was not recorded`);
  }
}

export interface BatchingStats {
  queued: number;
  sent: number;
  batches: number;
  dropped: number;
  refused: number;
  /** Flushes that failed with a retryable error and will be tried again. */
  deferred: number;
}

interface Queued {
  event: TraceEvent;
  bytes: number;
}

const PERMANENT = (status: number) => status >= 400 && status < 500 && status !== 408 && status !== 429;

export class BatchingLedgerClient {
  readonly client: LedgerClient;
  private readonly queue: Queued[] = [];
  private readonly maxBatchEvents: number;
  private readonly maxBatchBytes: number;
  private readonly maxQueueEvents: number;
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private closed = false;
  private lastError: Error | null = null;
  private readonly counters = { sent: 0, batches: 0, dropped: 0, refused: 0, deferred: 0 };

  constructor(private readonly opts: BatchingOptions) {
    this.client = new LedgerClient(opts);
    this.maxBatchEvents = Math.min(opts.maxBatchEvents ?? 100, MAX_EVENTS_PER_BATCH);
    this.maxBatchBytes = Math.min(opts.maxBatchBytes ?? 4 * 1024 * 1024, MAX_BATCH_BYTES - 64 * 1024);
    this.maxQueueEvents = opts.maxQueueEvents ?? 10_000;
    this.timer = setInterval(() => {
      if (this.queue.length > 0) this.kick();
    }, opts.flushIntervalMs ?? 1000);
    // the timer alone must not keep the process alive: shutdown() delivers what is left
    this.timer.unref();
  }

  get stats(): BatchingStats {
    return { queued: this.queue.length, ...this.counters };
  }

  /**
   * Queues an event for delivery. Returns false if it was dropped (queue
   * full, whenFull "drop"); throws LedgerQueueFullError (whenFull "throw").
   */
  record(event: TraceEvent): boolean {
    if (this.closed) throw new Error('the ledger client is shut down');
    if (this.queue.length >= this.maxQueueEvents) {
      if ((this.opts.whenFull ?? 'throw') === 'throw') throw new LedgerQueueFullError(this.maxQueueEvents);
      this.counters.dropped++;
      this.opts.onDrop?.(event);
      return false;
    }
    this.queue.push({ event, bytes: Buffer.byteLength(JSON.stringify(event)) + 1 });
    if (this.queue.length >= this.maxBatchEvents) this.kick();
    return true;
  }

  /**
   * Sends everything queued so far, batch after batch. Rejects with the
   * error of a batch that could not be delivered (it stays queued).
   */
  flush(): Promise<void> {
    if (this.flushing) {
      // after the running flush, whatever arrived meanwhile
      return this.flushing.catch(() => undefined).then(() => (this.queue.length > 0 ? this.flush() : undefined));
    }
    const run = (async () => {
      while (this.queue.length > 0) await this.sendOne();
    })().finally(() => {
      this.flushing = null;
    });
    this.flushing = run;
    return run;
  }

  /** A background flush, unless one is running (it drains the queue anyway). */
  private kick(): void {
    if (!this.flushing) this.flush().catch(() => undefined);
  }

  /**
   * Stops the timer and delivers what is queued. Rejects (listing how many
   * events are undelivered) if the ledger cannot be reached within the
   * client's retries.
   */
  async shutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    try {
      await this.flush();
    } catch (err) {
      throw new Error(`shutdown: ${this.queue.length} event(s) could not be delivered: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The last delivery error that left events queued, if any. */
  get error(): Error | null {
    return this.lastError;
  }

  private async sendOne(): Promise<void> {
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < this.maxBatchEvents && (n === 0 || bytes + this.queue[n].bytes <= this.maxBatchBytes)) {
      bytes += this.queue[n].bytes;
      n++;
    }
    const events = this.queue.slice(0, n).map((q) => q.event);
    try {
      const receipts = await this.client.send(events);
      this.queue.splice(0, n);
      this.counters.sent += n;
      this.counters.batches++;
      this.lastError = null;
      this.opts.onReceipts?.(receipts);
    } catch (err) {
      if (err instanceof LedgerApiError && PERMANENT(err.status)) {
        this.queue.splice(0, n);
        this.counters.refused += n;
        this.opts.onError?.(err, events);
        return;
      }
      this.counters.deferred++;
      this.lastError = err as Error;
      throw err;
    }
  }
}
