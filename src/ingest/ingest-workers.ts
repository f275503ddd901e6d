import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import type { PreparedBody } from './prepare-body';
import type { PrepareAnswer, PrepareJob } from './prepare.worker';

interface Slot {
  worker?: Worker;
  /** Jobs sent to this worker and not answered yet, by id. */
  pending: Map<number, (result: PreparedBody | undefined) => void>;
}

/**
 * Worker threads that parse and prepare large signed batches (JSON, event
 * validation, JCS, digests: about a fifth of the event loop's work per
 * ingested event) while the event loop goes on sequencing and committing.
 * `prepare` resolves with the prepared batch, or with undefined whenever the
 * ordinary path must run instead: a body a worker declines (any irregular
 * input: the event loop then parses it and answers the same problem it always
 * did), a worker that died (it is started again for the next job), a closing
 * service. Nothing is lost or answered differently either way.
 *
 * Written here rather than taken from a pool library: it needs no task
 * queue of its own (each worker's port queues its jobs), only
 * least-pending dispatch and a fallback for a dead worker, about forty lines.
 */
@Injectable()
export class IngestWorkers implements OnModuleDestroy {
  private readonly logger = new Logger('IngestWorkers');
  private readonly slots: Slot[];
  private nextId = 1;
  private closed = false;
  /** Bodies smaller than this are parsed on the event loop: a worker's round trip would cost more than it saves. */
  readonly minBytes: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    this.slots = Array.from({ length: config.env.INGEST_WORKERS }, () => ({ pending: new Map() }));
    this.minBytes = config.env.INGEST_WORKER_MIN_BYTES;
  }

  /** Whether a body of this size goes to a worker. */
  takes(bytes: number): boolean {
    return !this.closed && this.slots.length > 0 && bytes >= this.minBytes;
  }

  prepare(body: Buffer): Promise<PreparedBody | undefined> {
    if (this.closed || !this.slots.length) return Promise.resolve(undefined);
    let slot = this.slots[0];
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const worker = (slot.worker ??= this.start(slot));
    const id = this.nextId++;
    return new Promise((resolve) => {
      slot.pending.set(id, resolve);
      worker.postMessage({ id, body } satisfies PrepareJob);
    });
  }

  /** Started on first use (most services and tests never see a large batch); never keeps the process alive. */
  private start(slot: Slot): Worker {
    const worker = new Worker(join(__dirname, 'prepare.worker.js'));
    worker.unref();
    worker.on('message', (m: PrepareAnswer) => {
      const done = slot.pending.get(m.id);
      if (!done) return;
      slot.pending.delete(m.id);
      this.metrics.workerBatches.inc({ outcome: m.result ? 'prepared' : 'declined' });
      done(m.result);
    });
    const lost = (why: string) => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      if (!this.closed) this.logger.warn(`an ingest worker stopped (${why}); its ${slot.pending.size} batch(es) are parsed on the event loop`);
      this.metrics.workerBatches.inc({ outcome: 'failed' }, slot.pending.size);
      const pending = [...slot.pending.values()];
      slot.pending.clear();
      for (const done of pending) done(undefined);
    };
    worker.on('error', (err) => lost(err.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    return worker;
  }

  async onModuleDestroy(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker?.terminate()));
  }
}
