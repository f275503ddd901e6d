import { z } from 'zod';
import { traceEventSchema } from '../../core/event';

/** The envelope; each event is validated on its own so errors name it. */
export const batchEnvelopeSchema = z
  .object({
    events: z.array(z.unknown()).min(1, 'a batch has at least one event'),
    signature: z.string().min(1).describe('JWS compact; payload = JCS({"digests": [b64u(SHA-256(JCS(event_i)))…]})'),
  })
  .strict();

/** For OpenAPI only: the envelope with the event schema spelled out. */
export const signedBatchSchema = batchEnvelopeSchema
  .extend({ events: z.array(traceEventSchema).min(1).max(1000) })
  .meta({ id: 'SignedBatch' });

export const receiptSchema = z.object({
  id: z.string(),
  seq: z.number().int(),
  leaf_hash: z.string(),
  chain_hash: z.string(),
});

export const receiptsSchema = z.object({ receipts: z.array(receiptSchema) }).meta({ id: 'Receipts' });
