import { Body, Controller, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import type { z } from 'zod';
import { CurrentPrincipal, RequireScope } from '../auth/auth.decorators';
import type { Principal } from '../auth/principal';
import { ZodBody, ZodResponse } from '../common/openapi';
import { ZodPipe } from '../common/validation';
import { keyListSchema, keySchema, kidParamSchema, registerKeySchema } from './dto/keys.dto';
import { KeysService } from './keys.service';

@ApiTags('keys')
@ApiBearerAuth()
@Controller('v1/keys')
export class KeysController {
  constructor(private readonly keys: KeysService) {}

  @Post()
  @RequireScope('admin')
  @ApiOperation({ summary: 'Register a producer public key (201 new, 200 already registered)' })
  @ZodBody(registerKeySchema)
  @ZodResponse(201, keySchema)
  async register(
    @CurrentPrincipal() p: Principal,
    @Body(new ZodPipe(registerKeySchema)) body: z.infer<typeof registerKeySchema>,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const { created, key } = await this.keys.register(p.tenant, body.producer, body.jwk);
    reply.status(created ? 201 : 200);
    return key;
  }

  @Get()
  @RequireScope('admin')
  @ApiOperation({ summary: "List the tenant's producer keys" })
  @ZodResponse(200, keyListSchema)
  async list(@CurrentPrincipal() p: Principal) {
    return { keys: await this.keys.list(p.tenant) };
  }

  @Post(':kid/revoke')
  @HttpCode(200)
  @RequireScope('admin')
  @ApiOperation({ summary: 'Revoke a key: batches arriving after this are refused' })
  @ApiParam({ name: 'kid' })
  @ZodResponse(200, keySchema)
  revoke(@CurrentPrincipal() p: Principal, @Param(new ZodPipe(kidParamSchema, 'path')) params: z.infer<typeof kidParamSchema>) {
    return this.keys.revoke(p.tenant, params.kid);
  }
}
