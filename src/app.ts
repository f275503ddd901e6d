import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module';
import { registerJsonBody } from './common/json-body';
import { MAX_BATCH_BYTES } from './core/event';
import { MetricsService } from './metrics/metrics.service';
import { registerOtlpBodyParsing } from './otlp/otlp-body';
import type { AppConfig } from './runtime/runtime';

/**
 * Builds the application exactly as `npm start` runs it; the end-to-end tests
 * call this same function.
 */
export async function createApp(config: AppConfig): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({ bodyLimit: MAX_BATCH_BYTES, logger: false, return503OnClosing: true });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, { bufferLogs: true });
  const logger = app.get(Logger);
  app.useLogger(logger);

  const fastify = app.getHttpAdapter().getInstance();
  registerOtlpBodyParsing(fastify);
  registerJsonBody(app, MAX_BATCH_BYTES);
  const metrics = app.get(MetricsService);
  fastify.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  const doc = new DocumentBuilder()
    .setTitle('agent-ledger')
    .setDescription('Tamper-evident, policy-checked audit ledger for AI agent traces (API v1, see DESIGN.md).')
    .setVersion('1')
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
    .build();
  SwaggerModule.setup('docs', app, () => SwaggerModule.createDocument(app, doc), { jsonDocumentUrl: 'docs/openapi.json' });

  await app.init();
  await fastify.ready();
  return app;
}
