import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LoggerModule } from 'nestjs-pino';
import { AlertsModule } from './alerts/alerts.module';
import { AuthModule } from './auth/auth.module';
import { ProblemFilter } from './common/problem.filter';
import { dataSourceOptions } from './database/data-source';
import { ExportModule } from './export/export.module';
import { HealthModule } from './health/health.module';
import { IngestModule } from './ingest/ingest.module';
import { KeysModule } from './keys/keys.module';
import { LedgerModule } from './ledger/ledger.module';
import { MetricsModule } from './metrics/metrics.module';
import { OtlpModule } from './otlp/otlp.module';
import { PolicyModule } from './policy/policy.module';
import { QueryModule } from './query/query.module';
import type { AppConfig } from './runtime/runtime';
import { APP_CONFIG } from './runtime/tokens';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Paths and fields that never reach a log line. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.signature',
  '*.secret',
  '*.password',
  '*.token',
  '*.jws',
];

@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    const { env } = config;
    const pretty = env.LOG_FORMAT ? env.LOG_FORMAT === 'pretty' : env.NODE_ENV === 'development' && process.stdout.isTTY;
    return {
      module: AppModule,
      global: true,
      imports: [
        LoggerModule.forRoot({
          pinoHttp: {
            level: env.LOG_LEVEL,
            redact: { paths: LOG_REDACT, censor: '[redacted]' },
            transport: pretty ? { target: 'pino-pretty', options: { singleLine: true } } : undefined,
            genReqId: (req: IncomingMessage, res: ServerResponse) => {
              const given = req.headers['x-request-id'];
              const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
              res.setHeader('x-request-id', id);
              return id;
            },
            autoLogging: { ignore: (req: IncomingMessage) => /^\/(health|metrics)(\/|$|\?)/.test(req.url ?? '') },
            serializers: {
              req: (req: { id: unknown; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
            },
          },
        }),
        TypeOrmModule.forRoot(dataSourceOptions(config.databaseUrl, env.DATABASE_POOL_SIZE)),
        MetricsModule,
        AuthModule,
        LedgerModule,
        KeysModule,
        IngestModule,
        OtlpModule,
        PolicyModule,
        QueryModule,
        ExportModule,
        AlertsModule,
        HealthModule,
      ],
      providers: [
        { provide: APP_CONFIG, useValue: config },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
      exports: [APP_CONFIG],
    };
  }
}
