/**
 * Ingest first, for the policy evaluator. The evaluator follows the ledger
 * on this process's event loop (it reads bodies, parses them, evaluates
 * rules: ~30 µs an entry), the same loop that parses, checks and commits
 * producers' batches. So while ingest is saturated, the evaluator postpones
 * its walk, within bounds: it runs anyway once it is `maxLag` entries behind
 * the head or has waited `maxMs`. Nothing is skipped, only moved: it catches
 * up as soon as ingest leaves the CPU. Under sustained saturation the lag
 * bound makes it run, and ingest slows to what the machine can also follow.
 *
 * The query projector does not give way: its work runs inside PostgreSQL,
 * mostly on CPU that the ingest chain leaves idle, and postponed it caught
 * up alone afterwards, so a burst took longer in all (bench:ingest, three
 * configurations alternated, BENCHMARKS.md).
 *
 * "Saturated" is measured, not guessed: the share of the last
 * WINDOW_SAMPLES × SAMPLE_MS during which the sequencer had events waiting
 * for or inside a transaction (Sequencer.busyMs) is at least BUSY_SHARE.
 * Producers that leave the sequencer idle between their batches (single
 * events at 50 requests/s keep it busy about a quarter of the time) never
 * delay the evaluator.
 */

export const SAMPLE_MS = 50;
export const WINDOW_SAMPLES = 6;
export const BUSY_SHARE = 0.9;
/** How often a deferred follower looks again. */
const RECHECK_MS = 20;

export interface PrioritySettings {
  /** A follower this many entries behind the head runs whatever ingest does; 0 turns deferral off. */
  maxLag: number;
  /** The longest one deferral lasts, in milliseconds. */
  maxMs: number;
}

export interface YieldOptions {
  /** Entries the follower is behind the head (an estimate is fine: `maxMs` bounds the wait anyway). */
  lag(): number;
  /** True when the follower is shutting down. */
  stopped?(): boolean;
}

/** Busy shares of the last few sampling periods, from a monotonic busy-time counter. */
export class BusyWindow {
  private readonly shares: number[] = [];
  private lastAt: number;
  private lastBusy: number;

  constructor(
    private readonly busyMs: (now: number) => number,
    now: number,
    private readonly samples = WINDOW_SAMPLES,
  ) {
    this.lastAt = now;
    this.lastBusy = busyMs(now);
  }

  /** Records the share of the time since the previous sample during which ingest was busy. */
  sample(now: number): void {
    const busy = this.busyMs(now);
    const elapsed = now - this.lastAt;
    if (elapsed <= 0) return;
    this.shares.push(Math.min(1, Math.max(0, (busy - this.lastBusy) / elapsed)));
    if (this.shares.length > this.samples) this.shares.shift();
    this.lastAt = now;
    this.lastBusy = busy;
  }

  /** Busy for at least `share` of a full window. */
  busy(share = BUSY_SHARE): boolean {
    if (this.shares.length < this.samples) return false;
    let sum = 0;
    for (const s of this.shares) sum += s;
    return sum / this.shares.length >= share;
  }
}

export class IngestPriority {
  private readonly window: BusyWindow;
  private timer: NodeJS.Timeout | undefined;
  private deferredMs = 0;

  constructor(
    busyMs: (now: number) => number,
    private readonly settings: PrioritySettings,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.window = new BusyWindow(busyMs, now());
  }

  /** Starts sampling (a timer that does not keep the process alive). */
  start(): void {
    if (this.timer || this.settings.maxLag <= 0) return;
    this.timer = setInterval(() => this.window.sample(this.now()), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Whether ingest has kept the sequencer busy over the whole recent window. */
  get saturated(): boolean {
    return this.timer !== undefined && this.window.busy();
  }

  /** Milliseconds followers have spent deferred in this process (a metric). */
  get totalDeferredMs(): number {
    return this.deferredMs;
  }

  /**
   * Resolves when the follower should run its next page: at once unless
   * ingest is saturated, else when it no longer is, or the follower is
   * `maxLag` behind, or after `maxMs`, or when it stops.
   * Returns the milliseconds it waited.
   */
  async yield(o: YieldOptions): Promise<number> {
    const start = this.now();
    const mustRun = () =>
      !this.saturated ||
      o.lag() >= this.settings.maxLag ||
      this.now() - start >= this.settings.maxMs ||
      (o.stopped?.() ?? false);
    if (mustRun()) return 0;
    do await new Promise((r) => setTimeout(r, RECHECK_MS));
    while (!mustRun());
    const waited = this.now() - start;
    this.deferredMs += waited;
    return waited;
  }
}
