import { z } from 'zod';

const seq = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const entriesQuerySchema = z
  .object({
    from_seq: seq.default(1),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

export const verifyQuerySchema = z
  .object({
    from_seq: seq.default(1),
    to_seq: seq.optional(),
  })
  .strict();

export const headSchema = z
  .object({
    tree_size: z.number().int(),
    chain_hash: z.string().describe('lowercase hex'),
    root_hash: z.string().describe('RFC 9162 root, lowercase hex'),
  })
  .meta({ id: 'LedgerHead' });

export const entriesSchema = z
  .object({
    entries: z.array(
      z.object({
        seq: z.number().int(),
        record: z.string().describe('the exact stored JCS text of the record'),
        leaf_hash: z.string(),
        chain_hash: z.string(),
      }),
    ),
    next_from_seq: z.number().int().nullable(),
  })
  .meta({ id: 'LedgerEntries' });

export const verifySchema = z
  .object({
    ok: z.boolean(),
    verified: z.number().int(),
    from_seq: z.number().int(),
    to_seq: z.number().int(),
    first_bad_seq: z.number().int().optional(),
    reason: z.string().optional(),
  })
  .meta({ id: 'LedgerVerification' });
