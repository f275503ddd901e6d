import { Body, Controller, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiConsumes, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { PROTOBUF } from './otlp-body';
import { encodeTraceResponse } from './otlp-proto';
import { OtlpError } from './otlp.errors';
import { OtlpService } from './otlp.service';

/** At most this much of the rejection reasons goes into `errorMessage`. */
const MAX_ERROR_MESSAGE = 2000;

@ApiTags('otlp')
@ApiBearerAuth()
@Controller('otlp/v1')
export class OtlpController {
  constructor(private readonly otlp: OtlpService) {}

  @Post('traces')
  @HttpCode(200)
  @RequireScope('events:write')
  @ApiConsumes(PROTOBUF, 'application/json')
  @ApiOperation({
    summary: 'OTLP/HTTP trace export (protobuf or JSON, optionally gzip): GenAI spans become ledger events signed by the service',
  })
  async traces(
    @CurrentPrincipal() p: Principal,
    @Headers('content-type') contentType: string | undefined,
    @Body() body: unknown,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<Buffer | object> {
    const mediaType = (contentType ?? '').split(';', 1)[0].trim().toLowerCase();
    if (mediaType !== PROTOBUF && mediaType !== 'application/json') throw OtlpError.unsupportedMediaType(contentType);
    const protobuf = mediaType === PROTOBUF;
    const result = await this.otlp.export(p.tenant, p.sub, this.otlp.decode(body, protobuf));
    const rejected = result.rejected.length;
    let message = result.rejected.map((r) => r.reason).join('; ');
    if (message.length > MAX_ERROR_MESSAGE) message = `${message.slice(0, MAX_ERROR_MESSAGE)}…`;
    if (protobuf) {
      void reply.header('content-type', PROTOBUF);
      return encodeTraceResponse(rejected, message);
    }
    return rejected ? { partialSuccess: { rejectedSpans: String(rejected), errorMessage: message } } : {};
  }
}
