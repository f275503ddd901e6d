import { Injectable } from '@nestjs/common';
import { MAX_ATTRIBUTES_BYTES } from '../core/event';
import { jcs } from '../core/jcs';
import { eventDigest } from '../core/record';
import { LedgerErrorCode } from '../ledger/ledger.errors';
import { LedgerService } from '../ledger/ledger.service';
import type { PreparedEvent } from '../ledger/ledger.types';
import { ProtoDecodeError, decodeTraceRequest } from './otlp-proto';
import { decodeTraceRequestJson } from './otlp-json';
import { mapSpans, type RejectedSpan } from './otlp-mapping';
import type { OtlpRequest } from './otlp-types';
import { OtlpError } from './otlp.errors';

/** At most this many spans in one request (the OTel SDK batches 512 by default). */
export const MAX_SPANS_PER_REQUEST = 10_000;
/** Spans being decoded, mapped, signed or committed at once, over all requests; more is a 429. */
export const MAX_INFLIGHT_SPANS = 100_000;
/** Events per ledger batch (the same bound a producer's signed batch has). */
const EVENTS_PER_BATCH = 1000;
/** Append rounds when spans are refused as a conflicting resend (its events' ids already hold other content). */
const MAX_CONFLICT_ATTEMPTS = 8;

export interface ExportResult {
  acceptedSpans: number;
  rejected: RejectedSpan[];
  appendedEvents: number;
}

@Injectable()
export class OtlpService {
  private inflight = 0;

  constructor(private readonly ledger: LedgerService) {}

  decode(body: unknown, protobuf: boolean): OtlpRequest {
    try {
      if (protobuf) {
        if (!Buffer.isBuffer(body)) throw new ProtoDecodeError('expected a binary body');
        return decodeTraceRequest(body);
      }
      return decodeTraceRequestJson(body);
    } catch (err) {
      if (err instanceof ProtoDecodeError || err instanceof RangeError) throw OtlpError.undecodable(err.message);
      throw err;
    }
  }

  /**
   * Maps the spans to ledger events and appends them in batches signed by
   * the ledger's key. Spans that cannot be mapped (bad ids, missing times,
   * oversized attributes, a conflicting resend) are rejected one by one;
   * the others are appended. Resolves after commit.
   */
  async export(tenant: string, subject: string, request: OtlpRequest): Promise<ExportResult> {
    const n = request.spans.length;
    if (n > MAX_SPANS_PER_REQUEST) throw OtlpError.tooManySpans(n, MAX_SPANS_PER_REQUEST);
    if (this.inflight + n > MAX_INFLIGHT_SPANS) throw OtlpError.tooManyRequests();
    this.inflight += n;
    try {
      const { mapped, rejected } = mapSpans(request.spans, { subject });
      let pending: PendingSpan[] = [];
      for (const m of mapped) {
        const prepared = m.events.map(prepare);
        const big = prepared.find((p) => p.event.attributes && Buffer.byteLength(p.body) > MAX_ATTRIBUTES_BYTES && Buffer.byteLength(jcs(p.event.attributes)) > MAX_ATTRIBUTES_BYTES);
        if (big) rejected.push({ index: m.index, reason: `span ${m.index}: its ${big.event.type} event's attributes exceed ${MAX_ATTRIBUTES_BYTES} bytes canonical` });
        else pending.push({ index: m.index, prepared });
      }
      let appendedEvents = 0;
      for (let attempt = 1; pending.length > 0; attempt++) {
        const { conflicts, unwritten } = await this.appendAll(tenant, pending);
        appendedEvents += pending.filter((p) => !unwritten.has(p.index)).reduce((sum, p) => sum + p.prepared.length, 0);
        for (const index of conflicts) rejected.push({ index, reason: `span ${index}: already recorded with different content` });
        pending = pending.filter((p) => unwritten.has(p.index) && !conflicts.has(p.index));
        if (attempt >= MAX_CONFLICT_ATTEMPTS) {
          for (const p of pending) rejected.push({ index: p.index, reason: `span ${p.index}: not written (its batch held conflicting resends); send it again` });
          break;
        }
      }
      rejected.sort((a, b) => a.index - b.index);
      return {
        acceptedSpans: n - rejected.length,
        rejected,
        appendedEvents,
      };
    } finally {
      this.inflight -= n;
    }
  }

  /**
   * Appends in batches of at most EVENTS_PER_BATCH events (a span's events
   * stay in one batch), concurrently (the sequencer commits them together).
   * A batch with an event id that already holds other content is refused
   * whole: its spans are `unwritten`, the offending one also in `conflicts`.
   */
  private async appendAll(tenant: string, spans: PendingSpan[]): Promise<{ conflicts: Set<number>; unwritten: Set<number> }> {
    const batches: { owners: number[]; events: PreparedEvent[]; spans: number[] }[] = [];
    let cur: (typeof batches)[number] = { owners: [], events: [], spans: [] };
    for (const s of spans) {
      if (cur.events.length + s.prepared.length > EVENTS_PER_BATCH && cur.events.length > 0) {
        batches.push(cur);
        cur = { owners: [], events: [], spans: [] };
      }
      cur.spans.push(s.index);
      for (const p of s.prepared) {
        cur.owners.push(s.index);
        cur.events.push(p);
      }
    }
    if (cur.events.length) batches.push(cur);
    const results = await Promise.allSettled(batches.map((b) => this.ledger.appendLedgerSigned(tenant, b.events)));
    const conflicts = new Set<number>();
    const unwritten = new Set<number>();
    let failure: unknown;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      const err = r.reason as { code?: string; errors?: { field: string }[] };
      const m = err.code === LedgerErrorCode.EventConflict ? /^events\[(\d+)\]/.exec(err.errors?.[0]?.field ?? '') : null;
      if (!m) {
        failure ??= r.reason;
        return;
      }
      conflicts.add(batches[i].owners[Number(m[1])]);
      for (const s of batches[i].spans) unwritten.add(s);
    });
    // Anything else (the queue is full, the database is down) fails the request: the exporter retries it whole, idempotently.
    if (failure) throw failure;
    return { conflicts, unwritten };
  }
}

interface PendingSpan {
  index: number;
  prepared: PreparedEvent[];
}

function prepare(event: PreparedEvent['event']): PreparedEvent {
  const body = jcs(event);
  return { event, body, digest: eventDigest(body) };
}
