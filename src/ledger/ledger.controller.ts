import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodQuery, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import { CheckpointService } from './checkpoint.service';
import { entriesQuerySchema, entriesSchema, headSchema, verifyQuerySchema, verifySchema } from './dto/ledger.dto';
import { LedgerService } from './ledger.service';

@ApiTags('ledger')
@ApiBearerAuth()
@Controller('v1/ledger')
export class LedgerController {
  constructor(
    private readonly ledger: LedgerService,
    private readonly checkpoints: CheckpointService,
  ) {}

  @Get('head')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Tree size, chain hash and Merkle root of the tenant ledger' })
  @ZodResponse(200, headSchema)
  head(@CurrentPrincipal() p: Principal) {
    return this.ledger.head(p.tenant);
  }

  @Get('entries')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Stored records with their hashes, for independent verification' })
  @ZodQuery(entriesQuerySchema)
  @ZodResponse(200, entriesSchema)
  entries(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(entriesQuerySchema, 'query')) q: z.infer<typeof entriesQuerySchema>,
  ) {
    return this.ledger.entries(p.tenant, q.from_seq, q.limit);
  }

  @Get('verify')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Recompute digests, leaf and chain hashes, Merkle nodes, batch signatures and signed checkpoints from the stored bytes' })
  @ZodQuery(verifyQuerySchema)
  @ZodResponse(200, verifySchema)
  async verify(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(verifyQuerySchema, 'query')) q: z.infer<typeof verifyQuerySchema>,
  ) {
    return this.checkpoints.withCheckpointChecks(p.tenant, await this.ledger.verify(p.tenant, q.from_seq, q.to_seq));
  }
}
