import { z } from 'zod';

/** A tree size or seq: a positive safe integer. */
const positive = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const hex = z.string().describe('lowercase hex SHA-256');

export const inclusionQuerySchema = z
  .object({
    seq: positive.describe('the entry to prove (leaf index = seq - 1)'),
    tree_size: positive.optional().describe('size of the tree to prove against; default: the current head'),
  })
  .strict();

export const consistencyQuerySchema = z
  .object({
    from_size: positive.describe('the older tree size'),
    to_size: positive.optional().describe('the newer tree size; default: the current head'),
  })
  .strict();

export const inclusionProofSchema = z
  .object({
    leaf_index: z.number().int().describe('seq - 1'),
    tree_size: z.number().int(),
    leaf_hash: hex,
    path: z.array(hex).describe('RFC 9162 §2.1.3 inclusion path, leaf sibling first'),
  })
  .meta({ id: 'InclusionProof' });

export const consistencyProofSchema = z
  .object({
    from_size: z.number().int(),
    to_size: z.number().int(),
    path: z.array(hex).describe('RFC 9162 §2.1.4 consistency path (empty when from_size = to_size)'),
  })
  .meta({ id: 'ConsistencyProof' });

export type InclusionProof = z.infer<typeof inclusionProofSchema>;
export type ConsistencyProof = z.infer<typeof consistencyProofSchema>;
