import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module';
import { LedgerModule } from '../ledger/ledger.module';
import { IngestController } from './ingest.controller';
import { IngestService } from './ingest.service';

@Module({ imports: [KeysModule, LedgerModule], controllers: [IngestController], providers: [IngestService] })
export class IngestModule {}
