import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodBody, ZodQuery, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import { AlertsService } from './alerts.service';
import {
  createdWebhookSchema,
  createWebhookSchema,
  deliveriesQuerySchema,
  deliveryIdParamSchema,
  deliveryListSchema,
  deliverySchema,
  webhookIdParamSchema,
  webhookListSchema,
} from './dto/webhooks.dto';

@ApiTags('webhooks')
@ApiBearerAuth()
@Controller('v1/webhooks')
export class WebhooksController {
  constructor(private readonly alerts: AlertsService) {}

  @Post()
  @RequireScope('admin')
  @ApiOperation({ summary: 'Register a webhook endpoint; the whsec_ signing secret is returned only here' })
  @ZodBody(createWebhookSchema)
  @ZodResponse(201, createdWebhookSchema)
  create(@CurrentPrincipal() p: Principal, @Body(new ZodPipe(createWebhookSchema)) body: z.infer<typeof createWebhookSchema>) {
    return this.alerts.create(p.tenant, body);
  }

  @Get()
  @RequireScope('admin')
  @ApiOperation({ summary: "List the tenant's webhook endpoints (without secrets)" })
  @ZodResponse(200, webhookListSchema)
  async list(@CurrentPrincipal() p: Principal) {
    return { webhooks: await this.alerts.list(p.tenant) };
  }

  @Get(':id/deliveries')
  @RequireScope('admin')
  @ApiOperation({ summary: "An endpoint's deliveries, newest first, each with its attempts" })
  @ApiParam({ name: 'id' })
  @ZodQuery(deliveriesQuerySchema)
  @ZodResponse(200, deliveryListSchema)
  deliveries(
    @CurrentPrincipal() p: Principal,
    @Param(new ZodPipe(webhookIdParamSchema, 'path')) params: z.infer<typeof webhookIdParamSchema>,
    @Query(new ZodPipe(deliveriesQuerySchema, 'query')) q: z.infer<typeof deliveriesQuerySchema>,
  ) {
    return this.alerts.deliveries(p.tenant, params.id, q.limit, q.cursor);
  }

  @Post('deliveries/:id/retry')
  @HttpCode(202)
  @RequireScope('admin')
  @ApiOperation({ summary: 'Replay a delivered or dead delivery now, with the same webhook-id' })
  @ApiParam({ name: 'id' })
  @ZodResponse(202, deliverySchema)
  retry(@CurrentPrincipal() p: Principal, @Param(new ZodPipe(deliveryIdParamSchema, 'path')) params: z.infer<typeof deliveryIdParamSchema>) {
    return this.alerts.retry(p.tenant, params.id);
  }
}
