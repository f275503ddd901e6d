import { Controller, Get, Inject } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/auth.decorators';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';

@ApiTags('keys')
@Controller('.well-known')
export class JwksController {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  @Public()
  @Get('jwks.json')
  @ApiOperation({ summary: "The ledger's own public signing key(s)" })
  jwks() {
    return { keys: [this.config.ledgerKey.publicJwk] };
  }
}
