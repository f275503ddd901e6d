import { z } from 'zod';
import { SEVERITY_LEVELS, WEBHOOK_EVENT_TYPES } from '../webhook-message';

export const createWebhookSchema = z
  .object({
    url: z.string().min(1).max(2048).describe('http(s) URL of the receiver; private and loopback addresses are refused'),
    event_types: z
      .array(z.enum(WEBHOOK_EVENT_TYPES))
      .min(1)
      .max(WEBHOOK_EVENT_TYPES.length)
      .refine((a) => new Set(a).size === a.length, 'duplicate event type')
      .describe('the events to send, e.g. ["violation.created"]'),
    min_severity: z.enum(SEVERITY_LEVELS).default('low').describe('violations below this severity are not sent'),
    format: z.enum(['standard', 'slack']).default('standard').describe('standard: Standard Webhooks JSON; slack: a Slack message'),
  })
  .strict()
  .meta({ id: 'CreateWebhook' });
export type CreateWebhook = z.infer<typeof createWebhookSchema>;

export const webhookIdParamSchema = z.object({ id: z.uuid('a webhook endpoint id (UUID)') }).strict();
export const deliveryIdParamSchema = z.object({ id: z.uuid('a delivery id (UUID)') }).strict();

export const deliveriesQuerySchema = z
  .object({
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'the next_cursor of a previous page').optional(),
  })
  .strict();

export const webhookSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    event_types: z.array(z.string()),
    min_severity: z.enum(SEVERITY_LEVELS),
    format: z.enum(['standard', 'slack']),
    created_at: z.string(),
    disabled_at: z.string().nullable(),
    disabled_reason: z.string().nullable(),
  })
  .meta({ id: 'Webhook' });
export type WebhookView = z.infer<typeof webhookSchema>;

export const createdWebhookSchema = webhookSchema
  .extend({ secret: z.string().describe('whsec_… signing secret: shown only in this response') })
  .meta({ id: 'CreatedWebhook' });

export const webhookListSchema = z.object({ webhooks: z.array(webhookSchema) }).meta({ id: 'WebhookList' });

export const attemptSchema = z
  .object({
    attempt: z.number().int(),
    at: z.string(),
    status_code: z.number().int().nullable(),
    latency_ms: z.number().int().nullable(),
    response_excerpt: z.string().nullable().describe('first 1 KiB of the response body'),
    error: z.string().nullable(),
  })
  .meta({ id: 'WebhookAttempt' });

export const deliverySchema = z
  .object({
    id: z.string(),
    endpoint_id: z.string(),
    webhook_id: z.string().describe('the webhook-id header: the same on every attempt and replay'),
    event_type: z.string(),
    status: z
      .enum(['pending', 'delivered', 'failed', 'dead'])
      .describe('pending: not attempted yet; failed: an attempt failed, another is scheduled; dead: no more attempts'),
    attempts: z.number().int(),
    next_attempt_at: z.string().nullable(),
    last_status: z.number().int().nullable(),
    created_at: z.string(),
    delivered_at: z.string().nullable(),
    payload: z.record(z.string(), z.unknown()),
    attempt_log: z.array(attemptSchema),
  })
  .meta({ id: 'WebhookDelivery' });
export type DeliveryView = z.infer<typeof deliverySchema>;

export const deliveryListSchema = z
  .object({ deliveries: z.array(deliverySchema), next_cursor: z.string().nullable() })
  .meta({ id: 'WebhookDeliveryList' });
