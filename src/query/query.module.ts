import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { ProjectorRepository } from './projector.repository';
import { ProjectorService } from './projector.service';
import { QueryController } from './query.controller';
import { QueryRepository } from './query.repository';
import { QueryService } from './query.service';
import { QueryReportsController } from './reports.controller';
import { ReportsService } from './reports.service';

/**
 * Compliance queries (issue 5): the audit trail, runs, the trace tree and
 * reports. A projector keeps read models of the ledger asynchronously (the
 * append path is untouched); the lists read them, the tree reads the ledger.
 */
@Module({
  imports: [LedgerModule],
  controllers: [QueryController, QueryReportsController],
  providers: [ProjectorRepository, ProjectorService, QueryRepository, QueryService, ReportsService],
  exports: [ProjectorService],
})
export class QueryModule {}
