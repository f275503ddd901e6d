import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodQuery, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import {
  consistencyProofSchema,
  consistencyQuerySchema,
  inclusionProofSchema,
  inclusionQuerySchema,
} from './dto/proofs.dto';
import { ProofsService } from './proofs.service';

@ApiTags('ledger')
@ApiBearerAuth()
@Controller('v1/ledger/proofs')
export class ProofsController {
  constructor(private readonly proofs: ProofsService) {}

  @Get('inclusion')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'RFC 9162 inclusion proof of an entry in the tree of tree_size entries' })
  @ZodQuery(inclusionQuerySchema)
  @ZodResponse(200, inclusionProofSchema)
  inclusion(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(inclusionQuerySchema, 'query')) q: z.infer<typeof inclusionQuerySchema>,
  ) {
    return this.proofs.inclusion(p.tenant, q.seq, q.tree_size);
  }

  @Get('consistency')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'RFC 9162 consistency proof that the tree of from_size entries is a prefix of the tree of to_size' })
  @ZodQuery(consistencyQuerySchema)
  @ZodResponse(200, consistencyProofSchema)
  consistency(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(consistencyQuerySchema, 'query')) q: z.infer<typeof consistencyQuerySchema>,
  ) {
    return this.proofs.consistency(p.tenant, q.from_size, q.to_size);
  }
}
