import { Controller, Get, Headers, Param, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiParam, ApiProduces, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodQuery, ZodResponse } from '../common/openapi';
import { openApiSchema, ZodPipe } from '../common/validation';
import { EventsQueryPipe } from './attribute-filter';
import {
  eventsPageSchema,
  eventsQuerySchema,
  traceParamSchema,
  traceQuerySchema,
  tracesPageSchema,
  tracesQuerySchema,
  traceTimelineSchema,
  traceTreeSchema,
  type EventsQuery,
  type TracesQuery,
} from './dto/query.dto';
import { QueryService, type ExportFormat } from './query.service';
import type { z } from 'zod';

const CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
};

/** `Accept: text/csv` or `application/x-ndjson` streams the whole result; anything else is a JSON page. */
function exportFormat(accept: string | undefined): ExportFormat | undefined {
  const types = (accept ?? '').split(',').map((t) => t.split(';')[0].trim().toLowerCase());
  for (const t of types) {
    if (t === 'text/csv') return 'csv';
    if (t === 'application/x-ndjson') return 'ndjson';
    if (t === 'application/json' || t === '*/*') return undefined;
  }
  return undefined;
}

const ACCEPT = ApiHeader({
  name: 'accept',
  required: false,
  description: 'application/json (a page, default); text/csv or application/x-ndjson stream every match from the cursor on, in keyset pages',
});

@ApiTags('query')
@ApiBearerAuth()
@Controller('v1')
export class QueryController {
  constructor(private readonly query: QueryService) {}

  @Get('events')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'The audit trail: events by filter, keyset pages by seq, each with its receipt hashes and body' })
  @ZodQuery(eventsQuerySchema)
  @ApiQuery({
    name: 'attr.*',
    required: false,
    schema: { type: 'string' },
    description: 'attribute filters, e.g. attr.args.order_id=A-1009 (the value also matches the number, true, false or null it spells); up to 8',
  })
  @ACCEPT
  @ApiProduces('application/json', 'text/csv', 'application/x-ndjson')
  @ZodResponse(200, eventsPageSchema)
  async events(
    @CurrentPrincipal() p: Principal,
    @Query(new EventsQueryPipe(eventsQuerySchema)) q: EventsQuery,
    @Headers('accept') accept: string | undefined,
    @Res() reply: FastifyReply,
  ) {
    const format = exportFormat(accept);
    if (!format) return reply.send(await this.query.events(p.tenant, q));
    return reply.header('content-type', CONTENT_TYPES[format]).send(await this.query.exportEvents(p.tenant, q, format));
  }

  @Get('traces')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'Runs with their summary (agents, times, status, counts by type, violations), keyset pages' })
  @ZodQuery(tracesQuerySchema)
  @ACCEPT
  @ApiProduces('application/json', 'text/csv', 'application/x-ndjson')
  @ZodResponse(200, tracesPageSchema)
  async traces(
    @CurrentPrincipal() p: Principal,
    @Query(new ZodPipe(tracesQuerySchema, 'query')) q: TracesQuery,
    @Headers('accept') accept: string | undefined,
    @Res() reply: FastifyReply,
  ) {
    const format = exportFormat(accept);
    if (!format) return reply.send(await this.query.traces(p.tenant, q));
    return reply.header('content-type', CONTENT_TYPES[format]).send(await this.query.exportTraces(p.tenant, q, format));
  }

  @Get('traces/:trace_id')
  @RequireScope('audit:read')
  @ApiOperation({ summary: 'One run as a span tree (orphans at the root, flagged; violations on their spans), or ?format=timeline' })
  @ApiParam({ name: 'trace_id', description: '32 lowercase hex characters' })
  @ZodQuery(traceQuerySchema)
  @ApiResponse({
    status: 200,
    description: 'TraceTree (format=tree) or TraceTimeline (format=timeline)',
    schema: { oneOf: [openApiSchema(traceTreeSchema), openApiSchema(traceTimelineSchema)] },
  })
  trace(
    @CurrentPrincipal() p: Principal,
    @Param(new ZodPipe(traceParamSchema, 'path')) params: z.infer<typeof traceParamSchema>,
    @Query(new ZodPipe(traceQuerySchema, 'query')) q: z.infer<typeof traceQuerySchema>,
  ) {
    return this.query.trace(p.tenant, params.trace_id, q.format);
  }
}
