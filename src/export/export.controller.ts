import { Body, Controller, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodBody } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import { exportRequestSchema, toExportFilter, type ExportRequest } from './dto/export.dto';
import { ExportService } from './export.service';

@ApiTags('exports')
@ApiBearerAuth()
@Controller('v1/exports')
export class ExportController {
  constructor(private readonly exports: ExportService) {}

  @Post()
  @HttpCode(200)
  @RequireScope('export:create')
  @ApiOperation({ summary: 'Stream a signed evidence bundle for a trace, a session, or an agent/time range (docs/evidence-bundle.md); recorded as a ledger.export entry' })
  @ZodBody(exportRequestSchema)
  @ApiProduces('application/json')
  @ApiResponse({ status: 200, description: 'the evidence bundle, streamed; verify it offline with `agent-ledger verify`' })
  async create(@CurrentPrincipal() p: Principal, @Body(new ZodPipe(exportRequestSchema)) body: ExportRequest, @Res() reply: FastifyReply) {
    const bundle = await this.exports.open(p, toExportFilter(body));
    return reply
      .header('content-type', 'application/json; charset=utf-8')
      .header('content-disposition', `attachment; filename="${bundle.filename}"`)
      .header('x-checkpoint-size', String(bundle.checkpointSize))
      .send(bundle.stream);
  }
}
