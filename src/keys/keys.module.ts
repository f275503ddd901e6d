import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { JwksController } from './jwks.controller';
import { KeysController } from './keys.controller';
import { KeysRepository } from './keys.repository';
import { KeysService } from './keys.service';

@Module({
  imports: [LedgerModule],
  controllers: [KeysController, JwksController],
  providers: [KeysRepository, KeysService],
  exports: [KeysService],
})
export class KeysModule {}
