import { isWellFormedProducerEvent, MAX_ATTRIBUTES_BYTES, traceEventSchema, type TraceEvent } from '../core/event';
import { jcs } from '../core/jcs';
import { eventDigest } from '../core/record';
import { ValidationError, type FieldError } from '../common/problem';
import { zodFieldErrors } from '../common/validation';
import type { PreparedEvent } from '../ledger/ledger.types';

/*
 * Validation, canonicalisation and digests of a batch's events: no Nest, no
 * database, so that the ingest workers (prepare.worker.ts) load only this.
 */

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
