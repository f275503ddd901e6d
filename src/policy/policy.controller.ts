import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodBody, ZodQuery, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import {
  ackSchema,
  approvalsQuerySchema,
  approvalsReportSchema,
  evaluateResultSchema,
  evaluateSchema,
  policySetSchema,
  reloadSchema,
  violationIdParamSchema,
  violationListSchema,
  violationSchema,
  violationsQuerySchema,
} from './dto/policy.dto';
import { PolicyService } from './policy.service';

@ApiTags('policies')
@ApiBearerAuth()
@Controller('v1/policies')
export class PolicyController {
  constructor(private readonly policies: PolicyService) {}

  @Get()
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'The policy set in force, its hash and rules' })
  @ZodResponse(200, policySetSchema)
  get() {
    return this.policies.describe();
  }

  @Post('reload')
  @HttpCode(200)
  @RequireScope('admin')
  @ApiOperation({ summary: 'Reload POLICIES_DIR; a bad set is refused (400 with every problem) and the set in force stays' })
  @ZodResponse(200, reloadSchema)
  reload() {
    return this.policies.reload();
  }

  @Post('evaluate')
  @HttpCode(200)
  @RequireScope('admin')
  @ApiOperation({ summary: 'Retro-evaluation: run the current set over a seq or time range and record what was missed' })
  @ZodBody(evaluateSchema)
  @ZodResponse(200, evaluateResultSchema)
  evaluate(@CurrentPrincipal() p: Principal, @Body(new ZodPipe(evaluateSchema)) body: z.infer<typeof evaluateSchema>) {
    return this.policies.evaluate(p.tenant, body);
  }
}

@ApiTags('policies')
@ApiBearerAuth()
@Controller('v1/violations')
export class ViolationsController {
  constructor(private readonly policies: PolicyService) {}

  @Get()
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Policy violations, newest first, keyset paginated' })
  @ZodQuery(violationsQuerySchema)
  @ZodResponse(200, violationListSchema)
  list(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(violationsQuerySchema, 'query')) q: z.infer<typeof violationsQuerySchema>) {
    return this.policies.violations(p.tenant, q);
  }

  @Post(':id/ack')
  @HttpCode(200)
  @RequireScope('admin')
  @ApiOperation({ summary: 'Acknowledge a violation with a note (recorded as a ledger entry)' })
  @ApiParam({ name: 'id' })
  @ZodBody(ackSchema)
  @ZodResponse(200, violationSchema)
  ack(
    @CurrentPrincipal() p: Principal,
    @Param(new ZodPipe(violationIdParamSchema, 'path')) params: z.infer<typeof violationIdParamSchema>,
    @Body(new ZodPipe(ackSchema)) body: z.infer<typeof ackSchema>,
  ) {
    return this.policies.acknowledge(p.tenant, params.id, body.note, p.sub);
  }
}

@ApiTags('policies')
@ApiBearerAuth()
@Controller('v1/reports')
export class ReportsController {
  constructor(private readonly policies: PolicyService) {}

  @Get('approvals')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Every action a preceded_by rule governs: approved, missing, denied or blocked' })
  @ZodQuery(approvalsQuerySchema)
  @ZodResponse(200, approvalsReportSchema)
  approvals(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(approvalsQuerySchema, 'query')) q: z.infer<typeof approvalsQuerySchema>) {
    return this.policies.approvals(p.tenant, q.from, q.to, q.limit);
  }
}
