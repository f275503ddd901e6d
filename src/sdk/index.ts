/**
 * agent-ledger/sdk: record signed trace events from an agent runtime.
 * No framework imports; the same event schema and signing code as the service.
 *
 *   const { key } = await loadOrCreateProducerKey('producer-key.json');
 *   const ledger = new AgentLedger({ baseUrl, token, key });
 *   const run = ledger.startRun({ agent: 'support-agent', session_id: 'conv-7f3a' });
 *   run.toolCall('refund_payment', { order_id: 'A-1009', amount: 250 }).result({ ok: true });
 *   run.completed();
 *   await ledger.shutdown();
 */
import type { TraceEvent } from '../core/event';
import { BatchingLedgerClient } from './batching-client';
import { Run, type RunOptions } from './events';

export { LedgerApiError, LedgerClient, makeEvent, type ClientOptions, type EventInput, type ProducerKey, type Receipt } from '../client/ledger-client';
export { EVENT_TYPES, traceEventSchema, type TraceEvent } from '../core/event';
export { BatchingLedgerClient, LedgerQueueFullError, type BatchingOptions, type BatchingStats } from './batching-client';
export { Approval, newSpanId, newTraceId, Run, ToolCall, type Attributes, type Emit, type RunOptions } from './events';
export { generateProducerKey, loadOrCreateProducerKey, producerKeyFromJwk, type ProducerKeyPair } from './keys';

/** The batching client with run helpers: `startRun()` records into this client. */
export class AgentLedger extends BatchingLedgerClient {
  /** Starts a run (records `run.started`); its helpers record into this client. */
  startRun(opts: RunOptions): Run {
    return new Run((e: TraceEvent) => this.record(e), opts);
  }

  /** Registers a producer's public key (needs a token with the admin scope). */
  registerKey(producer: string, publicJwk: object): Promise<unknown> {
    return this.client.request('POST', '/v1/keys', { producer, jwk: publicJwk });
  }
}
