import { Injectable } from '@nestjs/common';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics, one registry per application instance. */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'agent_ledger_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: 'agent_ledger_http_request_duration_seconds',
    help: 'HTTP request duration by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly ingestedEvents = new Counter({
    name: 'agent_ledger_ingested_events_total',
    help: 'Events appended to the ledger',
    registers: [this.registry],
  });

  readonly batchSize = new Histogram({
    name: 'agent_ledger_batch_size_events',
    help: 'Events per accepted signed batch',
    buckets: [1, 5, 10, 50, 100, 250, 500, 1000],
    registers: [this.registry],
  });

  readonly commitDuration = new Histogram({
    name: 'agent_ledger_commit_duration_seconds',
    help: 'Duration of one group-commit transaction',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });

  readonly groupSize = new Histogram({
    name: 'agent_ledger_commit_group_events',
    help: 'Events per group-commit transaction',
    buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000],
    registers: [this.registry],
  });

  private queueDepthSource: () => number = () => 0;

  readonly queueDepth: Gauge = new Gauge({
    name: 'agent_ledger_sequencer_queue_depth',
    help: 'Events waiting in the sequencer for a transaction',
    registers: [this.registry],
    collect: (): void => this.queueDepth.set(this.queueDepthSource()),
  });

  /** The sequencer reports its depth when Prometheus scrapes. */
  setQueueDepthSource(source: () => number): void {
    this.queueDepthSource = source;
  }

  readonly followerDeferred = new Counter({
    name: 'agent_ledger_follower_deferred_seconds_total',
    help: 'Seconds a follower of the ledger (the policy evaluator) postponed its walk while ingest was saturated',
    labelNames: ['follower'] as const,
    registers: [this.registry],
  });

  readonly refusedBatches = new Counter({
    name: 'agent_ledger_refused_batches_total',
    help: 'Batches refused, by problem code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'agent_ledger_' });
  }
}
