import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { jcs } from '../../src/core/jcs';
import { BusyWindow, IngestPriority, SAMPLE_MS, WINDOW_SAMPLES, type PrioritySettings } from '../../src/ledger/ingest-priority';
import type { AppendBatch } from '../../src/ledger/ledger.types';
import { Sequencer, type SequencerHooks } from '../../src/ledger/sequencer';
import { sleep, waitFor, watch } from '../support/async';
import { events } from '../support/factories';

/**
 * Ingest first (src/ledger/ingest-priority.ts): the busy window over a
 * busy-time counter, the bounded deferral the evaluator asks for before each
 * walk, and the counter itself as the sequencer keeps it.
 */

/** A timer may fire a little before performance.now() has moved on by its delay: lower bounds on sleeps allow this much. */
const TIMER_SLACK = 5;

/** Polls `cond` until it holds; fails after `timeoutMs`. */
const until = (cond: () => boolean, what: string, timeoutMs = 3000) => waitFor(cond, what, timeoutMs, 5);

/** `p`'s value, or a failure when it takes longer than `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** 'at once' when `p` settles before any timer could fire (no sleep on the way), else 'later'. */
function atOnce(p: Promise<unknown>): Promise<'at once' | 'later'> {
  return Promise.race([p.then(() => 'at once' as const), new Promise<'later'>((r) => setImmediate(() => r('later')))]);
}

describe('BusyWindow', () => {
  /** A window over a counter the test moves, on a clock the test moves. */
  function window(samples?: number) {
    let now = 1000;
    let busy = 0;
    const w = new BusyWindow(() => busy, now, samples);
    return {
      w,
      /** One sampling period of `elapsed` ms, `busyFor` of them busy. */
      period(busyFor: number, elapsed = SAMPLE_MS) {
        now += elapsed;
        busy += busyFor;
        w.sample(now);
      },
    };
  }

  test('not busy until a full window of samples, however busy each one was', () => {
    const { w, period } = window();
    assert.equal(w.busy(), false);
    for (let i = 1; i < WINDOW_SAMPLES; i++) {
      period(SAMPLE_MS);
      assert.equal(w.busy(), false, `${i} of ${WINDOW_SAMPLES} samples`);
    }
    period(SAMPLE_MS);
    assert.equal(w.busy(), true);
  });

  test('busy exactly at the threshold share, not just below it', () => {
    const at = window();
    for (let i = 1; i < WINDOW_SAMPLES; i++) at.period(SAMPLE_MS);
    at.period(20); // shares 1,1,1,1,1,0.4: an average of 0.9
    assert.equal(at.w.busy(), true);
    assert.equal(at.w.busy(0.91), false);

    const below = window();
    for (let i = 1; i < WINDOW_SAMPLES; i++) below.period(SAMPLE_MS);
    below.period(19); // 0.38: an average just under 0.9
    assert.equal(below.w.busy(), false);
    assert.equal(below.w.busy(0.89), true);
  });

  test('an idle period pulls the average down; only a full busy window brings it back', () => {
    const { w, period } = window();
    for (let i = 0; i < WINDOW_SAMPLES; i++) period(SAMPLE_MS);
    assert.equal(w.busy(), true);
    period(0);
    assert.equal(w.busy(), false, 'one idle period of six');
    for (let i = 1; i < WINDOW_SAMPLES; i++) {
      period(SAMPLE_MS);
      assert.equal(w.busy(), false, `the idle period is still in the window after ${i} busy ones`);
    }
    period(SAMPLE_MS);
    assert.equal(w.busy(), true, 'the idle period left the window');
  });

  test('half busy all along is half busy: a share is busy time over elapsed time, whatever the period length', () => {
    const { w, period } = window();
    for (let i = 0; i < WINDOW_SAMPLES; i++) period(i % 2 ? 10 : 100, i % 2 ? 20 : 200);
    assert.equal(w.busy(), false);
    assert.equal(w.busy(0.5), true);
    assert.equal(w.busy(0.51), false);
  });

  test('a sample at the same instant is ignored; a share never exceeds 1', () => {
    const { w, period } = window();
    for (let i = 1; i < WINDOW_SAMPLES; i++) period(SAMPLE_MS);
    period(SAMPLE_MS, 0);
    assert.equal(w.busy(), false, 'a zero-length period is not a sample');
    period(5 * SAMPLE_MS); // a counter that moved more than the clock counts as fully busy, not more
    assert.equal(w.busy(), true);
    period(0);
    assert.equal(w.busy(), false, 'the over-busy period did not outweigh an idle one');
  });
});

/** Ingest's busy-time counter, on the test's clock, switched on and off by the test (as Sequencer.busyMs). */
class Load {
  private total = 0;
  private since: number | undefined;
  calls = 0;

  constructor(private readonly clock: Clock) {}

  busyMs = (now: number): number => {
    this.calls++;
    return this.total + (this.since === undefined ? 0 : now - this.since);
  };

  on(): void {
    this.since ??= this.clock.now();
  }

  off(): void {
    if (this.since === undefined) return;
    this.total += this.clock.now() - this.since;
    this.since = undefined;
  }
}

/** Real time, which the test can push forward. */
class Clock {
  skew = 0;
  now = (): number => performance.now() + this.skew;
}

function priority(t: TestContext, settings: Partial<PrioritySettings> = {}, busy = true) {
  const clock = new Clock();
  const load = new Load(clock);
  if (busy) load.on();
  const p = new IngestPriority(load.busyMs, { maxLag: 1000, maxMs: 60_000, ...settings }, clock.now);
  t.after(() => p.stop());
  return { p, clock, load };
}

/** An IngestPriority whose ingest has been busy for a full window (a few hundred ms of real sampling). */
async function saturated(t: TestContext, settings: Partial<PrioritySettings> = {}) {
  const s = priority(t, settings);
  s.p.start();
  await until(() => s.p.saturated, 'a saturated window');
  return s;
}

describe('IngestPriority.yield', { concurrency: true }, () => {
  test('returns 0 at once while ingest is not saturated: not sampling, idle, or busy for less than a window', async (t) => {
    const notStarted = priority(t);
    await sleep(2 * SAMPLE_MS);
    assert.equal(notStarted.p.saturated, false, 'no sampling, no saturation');
    assert.equal(await atOnce(notStarted.p.yield({ lag: () => 0 })), 'at once');

    const idle = priority(t, {}, false);
    idle.p.start();
    const young = priority(t);
    young.p.start();
    assert.equal(young.p.saturated, false);
    assert.equal(await atOnce(young.p.yield({ lag: () => 0 })), 'at once', 'busy, but not for a whole window yet');
    await sleep((WINDOW_SAMPLES + 2) * SAMPLE_MS);
    assert.equal(idle.p.saturated, false);
    assert.equal(await atOnce(idle.p.yield({ lag: () => 0 })), 'at once');
    assert.equal(await idle.p.yield({ lag: () => 0 }), 0);
    assert.equal(idle.p.totalDeferredMs, 0);
  });

  test('while saturated, waits until ingest stops being busy', async (t) => {
    const { p, load } = await saturated(t);
    const y = watch(p.yield({ lag: () => 0, stopped: () => false }));
    await sleep(120);
    assert.equal(y.done, false, 'deferred while ingest stays busy');
    load.off();
    const waited = await within(y.promise, 2000, 'yield after ingest went idle');
    assert.ok(waited >= 120 - TIMER_SLACK, `waited ${waited} ms`);
    assert.equal(p.saturated, false);
    assert.equal(await atOnce(p.yield({ lag: () => 0 })), 'at once', 'the next page runs at once');
  });

  test('returns once the follower is maxLag entries behind (at the bound, not before)', async (t) => {
    const { p } = await saturated(t, { maxLag: 50 });
    assert.equal(await atOnce(p.yield({ lag: () => 50 })), 'at once', 'already at the bound: not deferred');
    assert.equal(await p.yield({ lag: () => 51 }), 0);
    let lag = 49;
    const y = watch(p.yield({ lag: () => lag }));
    await sleep(80);
    assert.equal(y.done, false, 'one entry short of the bound');
    lag = 50;
    const waited = await within(y.promise, 2000, 'yield at maxLag');
    assert.ok(waited >= 80 - TIMER_SLACK, `waited ${waited} ms`);
    assert.equal(p.saturated, true, 'ingest still saturated: the lag bound ended the deferral');
  });

  test('returns after maxMs on its clock, ingest still saturated', async (t) => {
    const { p, clock } = await saturated(t, { maxMs: 60_000 });
    const y = watch(p.yield({ lag: () => 0 }));
    await sleep(80);
    assert.equal(y.done, false);
    clock.skew += 60_000;
    const waited = await within(y.promise, 2000, 'yield after maxMs');
    assert.ok(waited >= 60_000 && waited < 62_000, `waited ${waited} ms`);
    assert.equal(p.saturated, true);
  });

  test('returns after maxMs of real time when nothing else ends the deferral', async (t) => {
    const { p } = await saturated(t, { maxMs: 150 });
    const waited = await within(p.yield({ lag: () => 0 }), 2000, 'yield after maxMs');
    assert.ok(waited >= 150, `waited ${waited} ms`);
    assert.equal(p.saturated, true);
  });

  test('returns when the follower stops', async (t) => {
    const { p } = await saturated(t);
    assert.equal(await atOnce(p.yield({ lag: () => 0, stopped: () => true })), 'at once');
    let stopped = false;
    const s = watch(p.yield({ lag: () => 0, stopped: () => stopped }));
    await sleep(80);
    assert.equal(s.done, false);
    stopped = true;
    assert.ok((await within(s.promise, 2000, 'yield once stopped')) >= 80 - TIMER_SLACK);
    assert.equal(p.saturated, true);
  });

  test('maxLag 0: start() never samples and nothing is ever deferred', async (t) => {
    const off = priority(t, { maxLag: 0 });
    const on = priority(t, { maxLag: 1 });
    off.p.start();
    on.p.start();
    await sleep((WINDOW_SAMPLES + 3) * SAMPLE_MS);
    assert.ok(on.load.calls > WINDOW_SAMPLES, `with maxLag 1 the counter was sampled ${on.load.calls} times`);
    assert.equal(on.p.saturated, true);
    assert.equal(off.load.calls, 1, 'read once, when constructed; never sampled');
    assert.equal(off.p.saturated, false);
    assert.equal(await atOnce(off.p.yield({ lag: () => 0 })), 'at once');
    assert.equal(off.p.totalDeferredMs, 0);
  });

  test('stop() ends sampling: no longer saturated, nothing deferred', async (t) => {
    const { p, load } = await saturated(t);
    p.stop();
    assert.equal(p.saturated, false);
    const calls = load.calls;
    await sleep(3 * SAMPLE_MS);
    assert.equal(load.calls, calls);
    assert.equal(await atOnce(p.yield({ lag: () => 0 })), 'at once');
  });

  test('totalDeferredMs adds up the deferrals; a page run at once adds nothing', async (t) => {
    const { p, clock } = await saturated(t, { maxMs: 10_000 });
    assert.equal(p.totalDeferredMs, 0);
    let behind = 0;
    const first = watch(p.yield({ lag: () => behind }));
    await sleep(60);
    behind = 1000;
    const w1 = await within(first.promise, 2000, 'first deferral');
    assert.ok(w1 >= 60 - TIMER_SLACK, `first deferral ${w1} ms`);
    assert.equal(p.totalDeferredMs, w1);
    assert.equal(await p.yield({ lag: () => 1000 }), 0, 'at the lag bound: at once');
    assert.equal(p.totalDeferredMs, w1);
    const second = watch(p.yield({ lag: () => 0 }));
    await sleep(40);
    clock.skew += 10_000;
    const w2 = await within(second.promise, 2000, 'second deferral');
    assert.ok(w2 >= 10_000, `second deferral ${w2} ms`);
    assert.equal(p.totalDeferredMs, w1 + w2);
  });
});

describe('Sequencer.busyMs', () => {
  /** A sequencer whose commits the test settles, one by one, in the order they started. */
  function sequencer() {
    const commits: { tenant: string; commit: () => void; fail: (e: Error) => void }[] = [];
    const hooks: SequencerHooks = {
      builder: () => undefined,
      commit: (tenant, batches) =>
        new Promise((resolve, reject) =>
          commits.push({
            tenant,
            commit: () => resolve({ outcomes: batches.map((b) => ({ ok: true, receipts: [], appended: b.events.length })), end: undefined }),
            fail: reject,
          }),
        ),
    };
    return { s: new Sequencer(hooks, 1000, 10_000), commits };
  }

  function batch(tenant: string, n: number): AppendBatch {
    return { tenant, kid: 'k', jws: 'j', batch: `b-${tenant}-${n}`, events: events(n).map((e) => ({ event: e, body: jcs(e), digest: 'd' })) };
  }

  test('grows while a batch waits for its commit, and stops growing once it committed', async () => {
    const { s, commits } = sequencer();
    assert.equal(s.busyMs(), 0);
    await sleep(30);
    assert.equal(s.busyMs(), 0, 'an idle sequencer is not busy');

    const sent = s.submit(batch('x', 3));
    await until(() => commits.length === 1, 'the commit started');
    assert.equal(s.depth, 3);
    const b1 = s.busyMs();
    await sleep(60);
    const b2 = s.busyMs();
    assert.ok(b2 - b1 >= 50, `grew by ${b2 - b1} ms in 60 ms of a commit in flight`);
    const now = performance.now();
    assert.ok(Math.abs(s.busyMs(now + 1000) - s.busyMs(now) - 1000) < 1e-6, 'measured up to the instant asked');

    commits[0].commit();
    await sent;
    assert.equal(s.depth, 0);
    const b3 = s.busyMs();
    assert.ok(b3 >= b2);
    await sleep(40);
    assert.equal(s.busyMs(), b3, 'no growth once committed');
    assert.equal(s.busyMs(performance.now() + 1000), b3);
  });

  test('a batch queued behind a commit keeps it busy until that batch committed too', async () => {
    const { s, commits } = sequencer();
    const first = s.submit(batch('x', 2));
    const second = s.submit(batch('x', 1));
    await until(() => commits.length === 1, 'the first commit started');
    commits[0].commit();
    await first;
    assert.equal(s.depth, 1, 'the second batch is still queued');
    const b1 = s.busyMs();
    await sleep(40);
    assert.ok(s.busyMs() - b1 >= 30, 'still busy while a batch is queued');
    await until(() => commits.length === 2, 'the second commit started');
    commits[1].commit();
    await second;
    const b2 = s.busyMs();
    await sleep(40);
    assert.equal(s.busyMs(), b2);
  });

  test('busy time is wall time with any event waiting: overlapping tenants are not counted twice', async () => {
    const { s, commits } = sequencer();
    const start = performance.now();
    const x = s.submit(batch('x', 1));
    await sleep(30);
    const y = s.submit(batch('y', 1));
    await until(() => commits.length === 2, 'both commits started');
    await sleep(30);
    commits[0].commit();
    await x;
    const b1 = s.busyMs();
    await sleep(30);
    assert.ok(s.busyMs() - b1 >= 20, 'tenant y still commits');
    commits[1].commit();
    await y;
    const wall = performance.now() - start;
    const busy = s.busyMs();
    assert.ok(busy <= wall, `busy ${busy} ms in ${wall} ms of wall time`);
    assert.ok(busy >= 80, `busy ${busy} ms`);
  });

  test('a failed commit stops the busy time too', async () => {
    const { s, commits } = sequencer();
    const sent = s.submit(batch('x', 2));
    await until(() => commits.length === 1, 'the commit started');
    await sleep(20);
    commits[0].fail(new Error('injected'));
    await assert.rejects(sent, /injected/);
    assert.equal(s.depth, 0);
    const b = s.busyMs();
    assert.ok(b >= 15);
    await sleep(30);
    assert.equal(s.busyMs(), b);
  });
});
