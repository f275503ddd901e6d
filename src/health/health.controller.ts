import { Controller, Get, ServiceUnavailableException } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { Public } from '../auth/auth.decorators';
import { ProblemError } from '../common/problem';
import { pendingMigrations } from '../database/data-source';

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: TypeOrmHealthIndicator,
    private readonly indicators: HealthIndicatorService,
    @InjectDataSource() private readonly ds: DataSource,
  ) {}

  @Public()
  @Get('live')
  @ApiOperation({ summary: 'The process is up' })
  live() {
    return { status: 'ok' };
  }

  @Public()
  @Get('ready')
  @HealthCheck()
  @ApiOperation({ summary: 'The database is reachable and every migration is applied' })
  async ready() {
    try {
      return await this.health.check([
        () => this.db.pingCheck('database', { timeout: 2000 }),
        async () => {
          const check = this.indicators.check('migrations');
          try {
            const pending = await pendingMigrations(this.ds);
            return pending === 0 ? check.up() : check.down({ pending });
          } catch {
            return check.down({ message: 'cannot read the migrations table' });
          }
        },
      ]);
    } catch (err) {
      if (err instanceof ServiceUnavailableException) {
        throw new ProblemError(503, 'not_ready', 'Not ready', 'the database is unreachable or migrations are pending', undefined, {
          checks: err.getResponse(),
        });
      }
      throw err;
    }
  }
}
