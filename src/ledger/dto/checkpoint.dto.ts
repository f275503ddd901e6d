import { z } from 'zod';

export const checkpointsQuerySchema = z
  .object({
    from_size: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).default(1).describe('smallest size to list'),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

export const checkpointListSchema = z
  .object({
    checkpoints: z.array(
      z.object({
        size: z.number().int(),
        root_hash: z.string().describe('lowercase hex'),
        note: z.string().describe('the C2SP signed note, with witness cosignature lines appended'),
        cosigned_by: z.array(z.string()).describe('witness URLs whose cosignatures are appended'),
        created_at: z.string().describe('RFC 3339'),
      }),
    ),
    next_from_size: z.number().int().nullable(),
    verifier_key: z.string().describe('the C2SP verifier key of the ledger (also at /.well-known/agent-ledger-checkpoint-key)'),
    checkpointer: z
      .object({
        status: z.enum(['ok', 'refusing']),
        reason: z.string().optional(),
        since: z.string().optional(),
      })
      .describe("this instance's checkpointer: refusing when the stored tree no longer extends the last checkpoint"),
  })
  .meta({ id: 'CheckpointList' });

export type CheckpointList = z.infer<typeof checkpointListSchema>;
