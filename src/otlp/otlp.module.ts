import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { OtlpController } from './otlp.controller';
import { OtlpService } from './otlp.service';

/**
 * OTLP/HTTP trace ingest. Its body parsing (protobuf, gzip) is registered on
 * the Fastify instance by `registerOtlpBodyParsing` in app.ts.
 */
@Module({ imports: [LedgerModule], controllers: [OtlpController], providers: [OtlpService] })
export class OtlpModule {}
