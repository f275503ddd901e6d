import { z } from 'zod';

export const KID_PATTERN = /^[A-Za-z0-9._:~-]{1,128}$/;

export const registerKeySchema = z
  .object({
    producer: z.string().min(1).max(128).describe('who signs with this key, e.g. an agent runtime'),
    jwk: z
      .record(z.string(), z.unknown())
      .describe('public JWK: Ed25519 (kty OKP, crv Ed25519) or P-256 (kty EC, crv P-256)'),
  })
  .strict()
  .meta({ id: 'RegisterKey' });

export const kidParamSchema = z.object({ kid: z.string().regex(KID_PATTERN, 'a key id') }).strict();

export const keySchema = z
  .object({
    kid: z.string(),
    producer: z.string(),
    alg: z.enum(['EdDSA', 'ES256']),
    jwk: z.record(z.string(), z.unknown()),
    created_at: z.string(),
    registered_seq: z.number().int(),
    revoked_at: z.string().nullable(),
    revoked_seq: z.number().int().nullable(),
  })
  .meta({ id: 'ProducerKey' });

export const keyListSchema = z.object({ keys: z.array(keySchema) }).meta({ id: 'ProducerKeyList' });

export type KeyView = z.infer<typeof keySchema>;
