import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module';
import { LedgerModule } from '../ledger/ledger.module';
import { IngestController } from './ingest.controller';
import { IngestService } from './ingest.service';
import { IngestWorkers } from './ingest-workers';

@Module({ imports: [KeysModule, LedgerModule], controllers: [IngestController], providers: [IngestService, IngestWorkers], exports: [IngestWorkers] })
export class IngestModule {}
