import { Controller, Get, Header, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, Public, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodQuery, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import { CheckpointService } from './checkpoint.service';
import { checkpointListSchema, checkpointsQuerySchema } from './dto/checkpoint.dto';

const TEXT = 'text/plain; charset=utf-8';

@ApiTags('ledger')
@ApiBearerAuth()
@Controller('v1/ledger')
export class CheckpointController {
  constructor(private readonly checkpoints: CheckpointService) {}

  @Get('checkpoint')
  @RequireScope('audit:read')
  @Header('content-type', TEXT)
  @Header('cache-control', 'no-store')
  @ApiOperation({ summary: 'The latest signed checkpoint (C2SP tlog-checkpoint signed note) with witness cosignatures' })
  @ApiProduces('text/plain')
  @ApiOkResponse({ schema: { type: 'string' } })
  latest(@CurrentPrincipal() p: Principal) {
    return this.checkpoints.latestNote(p.tenant);
  }

  @Get('checkpoints')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Signed checkpoints in size order from from_size (keyset), with the verifier key' })
  @ZodQuery(checkpointsQuerySchema)
  @ZodResponse(200, checkpointListSchema)
  list(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(checkpointsQuerySchema, 'query')) q: z.infer<typeof checkpointsQuerySchema>,
  ) {
    return this.checkpoints.list(p.tenant, q.from_size, q.limit);
  }
}

@ApiTags('ledger')
@Controller('.well-known')
export class CheckpointKeyController {
  constructor(private readonly checkpoints: CheckpointService) {}

  @Public()
  @Get('agent-ledger-checkpoint-key')
  @Header('content-type', TEXT)
  @ApiOperation({ summary: "The ledger's C2SP verifier key for checkpoints: <origin>+<key id>+<base64 key>" })
  @ApiProduces('text/plain')
  @ApiOkResponse({ schema: { type: 'string' } })
  key() {
    return `${this.checkpoints.verifierKey}\n`;
  }
}
