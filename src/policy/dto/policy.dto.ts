import { z } from 'zod';
import { rfc3339Schema, traceIdSchema } from '../../core/event';
import { SEVERITIES } from '../../core/policy';

const seq = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const policySetSchema = z
  .object({
    policy_set_hash: z.string().nullable().describe('hash of the normalised rules (lowercase hex); null when no set is loaded'),
    content_digest: z.string().nullable().describe('SHA-256 over the files as read'),
    loaded_at: z.string().nullable(),
    dir: z.string(),
    files: z.array(z.string()),
    evaluator: z.boolean().describe('whether this instance evaluates the ledger'),
    rules: z.array(z.record(z.string(), z.unknown()).describe('the rule in its canonical form, with its file')),
  })
  .meta({ id: 'PolicySet' });

export const reloadSchema = policySetSchema.extend({ changed: z.boolean() }).meta({ id: 'PolicyReload' });

export const violationSchema = z
  .object({
    id: z.string(),
    rule_id: z.string(),
    severity: z.enum(SEVERITIES),
    kind: z.string(),
    policy_set_hash: z.string(),
    seq: z.number().int().describe('the offending event'),
    related_seqs: z.array(z.number().int()),
    trace_id: z.string(),
    session_id: z.string().nullable(),
    agent: z.string().nullable(),
    message: z.string(),
    retro: z.boolean().describe('found by retro-evaluation: the set in force at the time missed it'),
    status: z.enum(['open', 'acknowledged']),
    ack_note: z.string().nullable(),
    ack_by: z.string().nullable(),
    ack_at: z.string().nullable(),
    ack_seq: z.number().int().nullable().describe('the policy.violation_acknowledged entry'),
    ledger_seq: z.number().int().describe('the policy.violation entry'),
    created_at: z.string(),
  })
  .meta({ id: 'Violation' });

export const violationListSchema = z
  .object({ violations: z.array(violationSchema), next_cursor: z.string().nullable() })
  .meta({ id: 'ViolationList' });

export const violationsQuerySchema = z
  .object({
    rule: z.string().min(1).max(128).optional(),
    severity: z.enum(SEVERITIES).optional(),
    agent: z.string().min(1).max(128).optional(),
    trace_id: traceIdSchema.optional(),
    from: rfc3339Schema.optional().describe('created at or after'),
    to: rfc3339Schema.optional().describe('created before'),
    status: z.enum(['open', 'acknowledged']).optional(),
    cursor: z.string().max(64).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();

export const violationIdParamSchema = z.object({ id: z.uuid() }).strict();

export const ackSchema = z
  .object({ note: z.string().min(1).max(2000).describe('why it is acknowledged') })
  .strict()
  .meta({ id: 'AcknowledgeViolation' });

export const approvalsQuerySchema = z
  .object({
    from: rfc3339Schema.optional().describe('event time at or after'),
    to: rfc3339Schema.optional().describe('event time before'),
    limit: z.coerce.number().int().min(1).max(5000).default(1000),
  })
  .strict();

export const approvalItemSchema = z.object({
  rule_id: z.string(),
  seq: z.number().int(),
  trace_id: z.string(),
  session_id: z.string().nullable(),
  agent: z.string().nullable(),
  type: z.string(),
  name: z.string().nullable(),
  time: z.string(),
  outcome: z.enum(['approved', 'missing', 'denied', 'blocked']),
  approval_seq: z.number().int().nullable(),
  approver: z.string().nullable(),
  denial_seq: z.number().int().nullable(),
  blocked_seq: z.number().int().nullable(),
});

export const approvalsReportSchema = z
  .object({
    policy_set_hash: z.string(),
    from: z.string().nullable(),
    to: z.string().nullable(),
    actions: z.array(approvalItemSchema),
    truncated: z.boolean().describe('more governed events exist in the range than limit'),
  })
  .meta({ id: 'ApprovalsReport' });

export const evaluateSchema = z
  .object({
    from_seq: seq.optional(),
    to_seq: seq.optional(),
    from: rfc3339Schema.optional().describe('entries received at or after'),
    to: rfc3339Schema.optional().describe('entries received before'),
  })
  .strict()
  .superRefine((b, ctx) => {
    const bySeq = b.from_seq !== undefined || b.to_seq !== undefined;
    const byTime = b.from !== undefined || b.to !== undefined;
    if (bySeq && byTime) ctx.addIssue({ code: 'custom', path: ['from'], message: 'give a seq range or a time range, not both' });
    if (!bySeq && !byTime) ctx.addIssue({ code: 'custom', path: ['from_seq'], message: 'give from_seq/to_seq or from/to' });
    if (b.from_seq !== undefined && b.to_seq !== undefined && b.to_seq < b.from_seq) {
      ctx.addIssue({ code: 'custom', path: ['to_seq'], message: 'must not be below from_seq' });
    }
    if (b.from !== undefined && b.to !== undefined && Date.parse(b.to) < Date.parse(b.from)) {
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'must not be before from' });
    }
  })
  .meta({ id: 'RetroEvaluation' });

export const evaluateResultSchema = z
  .object({
    policy_set_hash: z.string(),
    from_seq: z.number().int(),
    to_seq: z.number().int().describe('clamped to what the live evaluator has covered'),
    evaluated: z.number().int(),
    violations: z.array(violationSchema),
  })
  .meta({ id: 'RetroEvaluationResult' });

export type ViolationView = z.infer<typeof violationSchema>;
export type ApprovalItem = z.infer<typeof approvalItemSchema>;
