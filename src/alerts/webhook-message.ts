import { z } from 'zod';

/**
 * What a webhook carries and how it is retried: the Standard Webhooks
 * envelope, the Slack rendering, `Retry-After` and the retry schedule. Pure
 * functions; no Nest, no database, no network.
 */

export const WEBHOOK_EVENT_TYPES = ['violation.created'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const SEVERITY_LEVELS = ['low', 'medium', 'high', 'critical'] as const;
export type SeverityLevel = (typeof SEVERITY_LEVELS)[number];

/** 1 (low) … 4 (critical); an unknown severity ranks highest, so it is never filtered out. */
export function severityRank(severity: string | null | undefined): number {
  if (severity === null || severity === undefined) return SEVERITY_LEVELS.length;
  const i = SEVERITY_LEVELS.indexOf(severity as SeverityLevel);
  return i < 0 ? SEVERITY_LEVELS.length : i + 1;
}

/** The Standard Webhooks payload structure: `{type, timestamp, data}`. */
export const envelopeSchema = z.object({
  type: z.string(),
  timestamp: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type WebhookEnvelope = z.infer<typeof envelopeSchema>;

/** `data` of a `violation.created` message; validated again before it is rendered for Slack. */
export const violationDataSchema = z.object({
  tenant: z.string(),
  violation: z.object({
    id: z.string(),
    rule_id: z.string(),
    severity: z.string(),
    kind: z.string(),
    message: z.string(),
    policy_set_hash: z.string(),
    seq: z.number(),
    related_seqs: z.array(z.number()),
    trace_id: z.string().nullable(),
    session_id: z.string().nullable(),
    agent: z.string().nullable(),
    retro: z.boolean(),
    ledger_seq: z.number(),
    created_at: z.string(),
  }),
  /** The offending ledger entry's type and name (`tool.call refund_payment`), when known. */
  action: z.object({ seq: z.number(), type: z.string(), name: z.string().nullable() }).nullable(),
  /** Where a reviewer sees the run (`GET /v1/traces/{trace_id}`). */
  trace_url: z.string().nullable(),
});
export type ViolationData = z.infer<typeof violationDataSchema>;

export function envelope(type: string, data: Record<string, unknown>, at: Date = new Date()): WebhookEnvelope {
  return { type, timestamp: at.toISOString(), data };
}

/** Slack mrkdwn escapes only these three. */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const cut = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

/** A Slack incoming-webhook message (`text` for notifications, `blocks` for the layout). */
export function slackMessage(env: WebhookEnvelope): { text: string; blocks: unknown[] } {
  const parsed = env.type === 'violation.created' ? violationDataSchema.safeParse(env.data) : undefined;
  if (!parsed?.success) {
    const text = `agent-ledger: ${env.type} at ${env.timestamp}`;
    return {
      text,
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text: esc(text) } },
        { type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${cut(esc(JSON.stringify(env.data, null, 2)), 2900)}\`\`\`` } },
      ],
    };
  }
  const { violation: v, action, trace_url } = parsed.data;
  const actionText = action ? `${action.type}${action.name ? ` ${action.name}` : ''} (seq ${action.seq})` : `seq ${v.seq}`;
  const text = `[${v.severity.toUpperCase()}] ${v.rule_id}: ${v.message}`;
  const fields = [
    `*Rule*\n\`${esc(v.rule_id)}\``,
    `*Severity*\n${esc(v.severity)}`,
    `*Agent*\n${esc(v.agent ?? '(unknown)')}`,
    `*Action*\n\`${esc(actionText)}\``,
  ];
  const blocks: unknown[] = [
    { type: 'header', text: { type: 'plain_text', text: cut(`Policy violation: ${v.rule_id}${v.retro ? ' (retro)' : ''}`, 150) } },
    { type: 'section', text: { type: 'mrkdwn', text: cut(esc(v.message), 3000) } },
    { type: 'section', fields: fields.map((f) => ({ type: 'mrkdwn', text: cut(f, 2000) })) },
  ];
  const context = [`tenant \`${esc(parsed.data.tenant)}\``, `violation \`${v.id}\``];
  if (v.trace_id) context.unshift(trace_url ? `<${trace_url}|trace ${v.trace_id}>` : `trace \`${v.trace_id}\``);
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: context.join(' · ') }] });
  if (trace_url) {
    blocks.push({
      type: 'actions',
      elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open trace' }, url: trace_url }],
    });
  }
  return { text: cut(text, 3000), blocks };
}

/** The request body for an endpoint's format. */
export function renderBody(format: 'standard' | 'slack', env: WebhookEnvelope): string {
  return JSON.stringify(format === 'slack' ? slackMessage(env) : env);
}

/** Longest wait a receiver's `Retry-After` can ask for. */
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;

/** `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP date) in milliseconds from `now`, capped at a day. */
export function parseRetryAfter(header: string | undefined, now: number = Date.now()): number | undefined {
  if (header === undefined) return undefined;
  const value = header.trim();
  let ms: number;
  if (/^\d+$/.test(value)) ms = Number(value) * 1000;
  else {
    const at = /^[A-Za-z]{3}, /.test(value) ? Date.parse(value) : Number.NaN;
    if (Number.isNaN(at)) return undefined;
    ms = Math.max(0, at - now);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/**
 * Delay before the next attempt after the `n`-th failed attempt of a cycle
 * (1-based), or undefined when the schedule is exhausted. A `Retry-After`
 * longer than the scheduled delay wins.
 */
export function retryDelay(schedule: readonly number[], n: number, retryAfterMs?: number): number | undefined {
  if (n > schedule.length) return undefined;
  return Math.max(schedule[n - 1], retryAfterMs ?? 0);
}

/** At most `max` bytes of a response body as text, with the given secrets masked. */
export function responseExcerpt(body: Buffer, max: number, secrets: readonly string[]): string {
  let text = new TextDecoder('utf-8', { fatal: false }).decode(body.subarray(0, max));
  for (const s of secrets) if (s) text = text.split(s).join('[redacted]');
  // the replacement may have grown it: keep the bound
  return Buffer.byteLength(text) <= max ? text : Buffer.from(text).subarray(0, max).toString('utf8').replace(/\uFFFD$/, '');
}
