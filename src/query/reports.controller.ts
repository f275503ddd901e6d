import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodQuery, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import {
  agentsReportQuerySchema,
  agentsReportSchema,
  loopsReportQuerySchema,
  loopsReportSchema,
  toolsReportQuerySchema,
  toolsReportSchema,
} from './dto/query.dto';
import { ReportsService } from './reports.service';

@ApiTags('reports')
@ApiBearerAuth()
@Controller('v1/reports')
export class QueryReportsController {
  constructor(private readonly reports: ReportsService) {}

  @Get('tools')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Per tool: calls, error rate, p50/p95/p99 duration, slowest traces' })
  @ZodQuery(toolsReportQuerySchema)
  @ZodResponse(200, toolsReportSchema)
  tools(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(toolsReportQuerySchema, 'query')) q: z.infer<typeof toolsReportQuerySchema>) {
    return this.reports.tools(p.tenant, q);
  }

  @Get('loops')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Runs that called one tool with identical args min_repeats times or more; runs over max_model_calls model calls' })
  @ZodQuery(loopsReportQuerySchema)
  @ZodResponse(200, loopsReportSchema)
  loops(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(loopsReportQuerySchema, 'query')) q: z.infer<typeof loopsReportQuerySchema>) {
    return this.reports.loops(p.tenant, q);
  }

  @Get('agents')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Per agent: runs, failure rate, policy violations by severity' })
  @ZodQuery(agentsReportQuerySchema)
  @ZodResponse(200, agentsReportSchema)
  agents(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(agentsReportQuerySchema, 'query')) q: z.infer<typeof agentsReportQuerySchema>) {
    return this.reports.agents(p.tenant, q);
  }
}
