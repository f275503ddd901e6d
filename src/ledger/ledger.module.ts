import { Module } from '@nestjs/common';
import { CheckpointController, CheckpointKeyController } from './checkpoint.controller';
import { CheckpointRepository } from './checkpoint.repository';
import { CheckpointService } from './checkpoint.service';
import { LedgerController } from './ledger.controller';
import { LedgerRepository } from './ledger.repository';
import { LedgerService } from './ledger.service';
import { ProofsController } from './proofs.controller';
import { ProofsService } from './proofs.service';

@Module({
  controllers: [LedgerController, ProofsController, CheckpointController, CheckpointKeyController],
  providers: [LedgerRepository, LedgerService, ProofsService, CheckpointRepository, CheckpointService],
  exports: [LedgerService, CheckpointService],
})
export class LedgerModule {}
