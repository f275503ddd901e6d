import { isIP } from 'node:net';
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

const DURATION_UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `5s,5m,30m,2h`: a list of delays, in milliseconds. */
const delayList = z.string().transform((v, ctx) => {
  const out: number[] = [];
  for (const part of v.split(',').map((p) => p.trim())) {
    const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(part);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not a delay like 500ms, 5s, 5m, 2h or 1d` });
      return z.NEVER;
    }
    out.push(Number(m[1]) * DURATION_UNIT_MS[m[2] as keyof typeof DURATION_UNIT_MS]);
  }
  return out;
});

/** `hooks.example.com,*.internal.example,10.1.0.0/16,127.0.0.1`: host names, IP addresses and CIDRs. */
const hostList = z.string().transform((v, ctx) => {
  const entries = v.split(',').map((p) => p.trim()).filter(Boolean);
  for (const e of entries) {
    const [addr, prefix, extra] = e.replace(/^\[|\]$/g, '').split('/');
    const family = isIP(addr);
    const okPrefix = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32));
    const okName = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i.test(e);
    if (!(family !== 0 ? okPrefix && extra === undefined : okName)) {
      ctx.addIssue({ code: 'custom', message: `"${e}" is not a host name, IP address or CIDR` });
      return z.NEVER;
    }
  }
  return entries;
});

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
    // ingest first: while producers saturate the sequencer, the policy evaluator postpones its walk until it is
    // this many entries behind (0: never postpone) or has waited this long
    INGEST_PRIORITY_MAX_LAG: int(0, 10_000_000).default(100_000),
    INGEST_PRIORITY_MAX_MS: int(0, 600_000).default(5000),
    WEBHOOK_ALLOWED_HOSTS: hostList.prefault(''),
    WEBHOOK_RETRY_SCHEDULE: delayList.prefault('5s,5m,30m,2h,5h,10h,10h'),
    WEBHOOK_TIMEOUT_MS: int(100, 120_000).default(15_000),
    WEBHOOK_POLL_MS: int(10, 60_000).default(500),
    WEBHOOK_WORKER: bool.default(true),
    PUBLIC_BASE_URL: optionalUrl,
    POLICIES_DIR: z.string().min(1).default('policies'),
    POLICY_EVALUATOR: bool.optional(),
    QUERY_PROJECTOR: bool.default(true),
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
