import { Injectable } from '@nestjs/common';
import { BATCH_ALGORITHMS, BATCH_JWS_TYP, compareDigests, readBatchHeader, verifyBatchSignature, type BatchAlgorithm } from '../core/batch';
import { isWellFormedProducerEvent, MAX_ATTRIBUTES_BYTES, MAX_EVENTS_PER_BATCH, traceEventSchema, type TraceEvent } from '../core/event';
import { jcs } from '../core/jcs';
import { batchId, eventDigest } from '../core/record';
import { ValidationError, type FieldError } from '../common/problem';
import { zodFieldErrors } from '../common/validation';
import { KeysService } from '../keys/keys.service';
import type { PreparedEvent, Receipt } from '../ledger/ledger.types';
import { LedgerService } from '../ledger/ledger.service';
import { MetricsService } from '../metrics/metrics.service';
import { IngestError } from './ingest.errors';

@Injectable()
export class IngestService {
  constructor(
    private readonly keys: KeysService,
    private readonly ledger: LedgerService,
    private readonly metrics: MetricsService,
  ) {}

  /** Verifies a signed batch and appends it, all or nothing. Resolves after commit. */
  async ingest(tenant: string, events: unknown[], signature: string): Promise<Receipt[]> {
    try {
      const receipts = await this.ingestUnchecked(tenant, events, signature);
      this.metrics.batchSize.observe(events.length);
      return receipts;
    } catch (err) {
      this.metrics.refusedBatches.inc({ code: (err as { code?: string }).code ?? 'error' });
      throw err;
    }
  }

  private async ingestUnchecked(tenant: string, events: unknown[], signature: string): Promise<Receipt[]> {
    if (events.length > MAX_EVENTS_PER_BATCH) throw IngestError.tooManyEvents(events.length, MAX_EVENTS_PER_BATCH);
    const prepared = await prepareEventsYielding(events);

    let header;
    try {
      header = readBatchHeader(signature);
    } catch (err) {
      throw IngestError.malformedJws(`the signature is not a JWS compact serialization: ${(err as Error).message}`);
    }
    if (header.typ !== BATCH_JWS_TYP) throw IngestError.malformedJws(`the JWS header typ must be "${BATCH_JWS_TYP}"`);
    if (!(BATCH_ALGORITHMS as readonly string[]).includes(header.alg)) {
      throw IngestError.algorithmNotAllowed(`alg "${header.alg}" is not allowed; use ${BATCH_ALGORITHMS.join(' or ')}`);
    }
    const key = await this.keys.verificationKey(tenant, header.kid);
    if (!key) throw IngestError.unknownKey(header.kid);
    if (key.revoked) throw IngestError.keyRevoked(header.kid);
    if (key.alg !== header.alg) {
      throw IngestError.algorithmNotAllowed(`key "${header.kid}" is registered for ${key.alg}; the batch says ${header.alg}`);
    }
    let payload: string;
    try {
      payload = await verifyBatchSignature(signature, key.key, header.alg as BatchAlgorithm);
    } catch {
      throw IngestError.badSignature();
    }
    const mismatch = compareDigests(
      payload,
      prepared.map((p) => p.digest),
    );
    if (mismatch) throw IngestError.digestMismatch(mismatch.index, mismatch.reason);

    return this.ledger.append({
      tenant,
      kid: header.kid,
      jws: signature,
      batch: batchId(signature),
      events: prepared,
      checkRevokedKid: header.kid,
    });
  }
}

/** Events prepared between two turns of the event loop (see prepareEventsYielding). */
const PREPARE_SLICE = 50;

/**
 * `prepareEvents` in slices of PREPARE_SLICE events, each in a turn of the
 * event loop of its own: a batch of 500 events is ~6 ms of CPU, and in one
 * piece it would hold up every database reply of the commits in flight (their
 * next COPY waits for a turn of this loop, their backend idles meanwhile).
 */
export async function prepareEventsYielding(events: unknown[]): Promise<PreparedEvent[]> {
  if (events.length <= PREPARE_SLICE) return prepareEvents(events);
  const out: PreparedEvent[] = [];
  const errors: FieldError[] = [];
  const seen = new Map<string, number>();
  for (let i = 0; i < events.length; i += PREPARE_SLICE) {
    if (i > 0) await new Promise<void>((r) => setImmediate(r));
    prepareInto(events, i, Math.min(events.length, i + PREPARE_SLICE), out, errors, seen);
  }
  throwIfAny(errors);
  return out;
}

/**
 * Validates every event (collecting every bad field, each named by its index),
 * canonicalises it and computes its digest. Refuses duplicate ids in a batch.
 */
export function prepareEvents(events: unknown[]): PreparedEvent[] {
  const prepared: PreparedEvent[] = [];
  const errors: FieldError[] = [];
  prepareInto(events, 0, events.length, prepared, errors, new Map());
  throwIfAny(errors);
  return prepared;
}

function prepareInto(
  events: unknown[],
  from: number,
  to: number,
  prepared: PreparedEvent[],
  errors: FieldError[],
  seen: Map<string, number>,
): void {
  for (let i = from; i < to; i++) {
    const raw = events[i];
    let event: TraceEvent;
    if (isWellFormedProducerEvent(raw)) {
      event = raw;
    } else {
      const r = traceEventSchema.safeParse(raw);
      if (!r.success) {
        errors.push(...zodFieldErrors(r.error, `events[${i}]`));
        continue;
      }
      event = r.data;
    }
    let body: string;
    try {
      body = jcs(event);
    } catch (err) {
      errors.push({ field: `events[${i}]`, message: `cannot be canonicalised: ${(err as Error).message}` });
      continue;
    }
    // Bytes, not UTF-16 units: the body bounds the attributes from above, so measure them only when it is large.
    if (event.attributes && Buffer.byteLength(body) > MAX_ATTRIBUTES_BYTES) {
      const size = Buffer.byteLength(jcs(event.attributes));
      if (size > MAX_ATTRIBUTES_BYTES) {
        errors.push({ field: `events[${i}].attributes`, message: `${size} bytes canonical; at most ${MAX_ATTRIBUTES_BYTES}` });
        continue;
      }
    }
    const id = event.id.toLowerCase();
    const dup = seen.get(id);
    if (dup !== undefined) {
      errors.push({ field: `events[${i}].id`, message: `duplicates events[${dup}].id within the batch` });
      continue;
    }
    seen.set(id, i);
    prepared.push({ event, body, digest: eventDigest(body) });
  }
}

function throwIfAny(errors: FieldError[]): void {
  if (errors.length) {
    throw new ValidationError(errors.slice(0, 100), `${errors.length} problem(s) in the batch: ${errors.slice(0, 3).map((e) => `${e.field}: ${e.message}`).join('; ')}`);
  }
}
