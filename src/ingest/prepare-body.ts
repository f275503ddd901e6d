import { parse as secureJsonParse } from 'secure-json-parse';
import { MAX_EVENTS_PER_BATCH } from '../core/event';
import type { PreparedEvent } from '../ledger/ledger.types';
import { prepareEvents } from './prepare';

/** A signed batch's body, parsed and its events prepared (see prepareBatchBody). */
export interface PreparedBody {
  signature: string;
  events: PreparedEvent[];
}

/**
 * The fast path of POST /v1/events, as the ingest workers run it
 * (prepare.worker.ts): the raw body parsed exactly as Fastify's default JSON
 * parser does (secure-json-parse, `__proto__` and `constructor` keys
 * refused), the envelope checked, every event validated, canonicalised and
 * digested by `prepareEvents`. The prepared events keep the fields their
 * ledger record needs but not their attributes: the body (the event's JCS
 * text, what the ledger stores) holds those, and leaving them out halves
 * what the service's main thread must copy in.
 *
 * Any irregularity (bad JSON, a bad envelope, a bad event, too many) gives
 * undefined and nothing else: the request then takes the ordinary path on
 * the main thread, which produces the problem response. Refusals are thus
 * written in one place and a worker never has to reproduce them.
 */
export function prepareBatchBody(raw: Uint8Array): PreparedBody | undefined {
  let body: unknown;
  try {
    body = secureJsonParse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), undefined, {
      protoAction: 'error',
      constructorAction: 'error',
    });
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const keys = Object.keys(body);
  if (keys.length !== 2) return undefined;
  const { events, signature } = body as { events?: unknown; signature?: unknown };
  if (!Array.isArray(events) || events.length < 1 || events.length > MAX_EVENTS_PER_BATCH) return undefined;
  if (typeof signature !== 'string' || signature.length < 1) return undefined;
  let prepared: PreparedEvent[];
  try {
    prepared = prepareEvents(events);
  } catch {
    return undefined;
  }
  for (const p of prepared) delete p.event.attributes;
  return { signature, events: prepared };
}
