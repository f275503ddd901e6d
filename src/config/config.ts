import { z } from 'zod';

/**
 * The one typed configuration, validated once at boot. Nothing else reads
 * process.env. Every variable is documented in the README with its default.
 */

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const optionalUrl = z
  .string()
  .url()
  .optional()
  .transform((v) => (v === '' ? undefined : v));

export const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(0, 65535).default(3000),
    DATABASE_URL: optionalUrl,
    MIGRATIONS_DATABASE_URL: optionalUrl,
    DATABASE_POOL_SIZE: int(1, 200).default(10),
    DATABASE_APP_PASSWORD: z.string().min(12).optional(),
    MIGRATIONS_RUN: bool.default(true),
    DATA_DIR: z.string().min(1).default('./.data'),
    EMBEDDED_PG_PORT: int(1024, 65535).default(54329),
    AUTH_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    AUTH_JWKS_URL: optionalUrl,
    AUTH_ISSUER: z.string().min(1).optional(),
    AUTH_AUDIENCE: z.string().min(1).optional(),
    AUTH_CLOCK_TOLERANCE_S: int(0, 300).default(5),
    LEDGER_SIGNING_KEY: z.string().min(1).optional(),
    // checkpoint origin prefix and the checkpoint key name (C2SP signed-note: no spaces, no "+")
    LEDGER_ORIGIN: z.string().regex(/^[^\s+]+$/, 'must be non-empty, without spaces or "+"').default('agent-ledger.local'),
    // C2SP tlog-witness submission prefixes, comma-separated; each signed checkpoint is POSTed to <url>/add-checkpoint
    WITNESS_URLS: z
      .string()
      .transform((v) => v.split(',').map((u) => u.trim()).filter(Boolean))
      .pipe(z.array(z.url({ protocol: /^https?$/ })))
      .prefault(''),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
    INGEST_MAX_GROUP_EVENTS: int(1, 100_000).default(5000),
    POLICIES_DIR: z.string().min(1).default('policies'),
    POLICY_EVALUATOR: bool.optional(),
    POLICY_POLL_MS: int(100, 3_600_000).default(5000),
    POLICY_PAGE_SIZE: int(1, 10_000).default(1000),
    POLICY_MAX_SCOPES: int(2, 10_000_000).default(10_000),
  })
  .superRefine((env, ctx) => {
    if (env.AUTH_JWKS_URL && (!env.AUTH_ISSUER || !env.AUTH_AUDIENCE)) {
      ctx.addIssue({
        code: 'custom',
        path: ['AUTH_ISSUER'],
        message: 'AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE',
      });
    }
    if (env.NODE_ENV === 'production' && !env.AUTH_JWT_SECRET && !env.AUTH_JWKS_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['AUTH_JWKS_URL'],
        message: 'production needs AUTH_JWKS_URL (or AUTH_JWT_SECRET); no secret is generated',
      });
    }
  });

export type Env = z.infer<typeof envSchema>;

export class ConfigError extends Error {}

/** Parses the environment; throws a ConfigError naming every bad variable. */
export function loadEnv(source: Record<string, string | undefined>): Env {
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const result = envSchema.safeParse(cleaned);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}
