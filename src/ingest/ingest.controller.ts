import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodBody, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import { batchEnvelopeSchema, receiptsSchema, signedBatchSchema } from './dto/ingest.dto';
import { IngestService } from './ingest.service';

@ApiTags('events')
@ApiBearerAuth()
@Controller('v1/events')
export class IngestController {
  constructor(private readonly ingest: IngestService) {}

  @Post()
  @HttpCode(201)
  @RequireScope('events:write')
  @ApiOperation({ summary: 'Append a signed batch (all or nothing); one receipt per event, after commit' })
  @ZodBody(signedBatchSchema)
  @ZodResponse(201, receiptsSchema)
  async append(@CurrentPrincipal() p: Principal, @Body(new ZodPipe(batchEnvelopeSchema)) body: z.infer<typeof batchEnvelopeSchema>) {
    return { receipts: await this.ingest.ingest(p.tenant, body.events, body.signature) };
  }
}
