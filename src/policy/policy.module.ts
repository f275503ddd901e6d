import { Global, Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { EvaluatorService } from './evaluator.service';
import { PolicySetStore } from './policy-set.store';
import { PolicyController, ReportsController, ViolationsController } from './policy.controller';
import { PolicyRepository } from './policy.repository';
import { PolicyService } from './policy.service';
import { ViolationSinks } from './violation-sink';

/**
 * Policies (DESIGN.md §6): the set in force, the evaluator, violations and
 * the approvals report. Global so the alerts module can inject
 * `ViolationSinks` and write its outbox in the violation transaction.
 */
@Global()
@Module({
  imports: [LedgerModule],
  controllers: [PolicyController, ViolationsController, ReportsController],
  providers: [PolicySetStore, PolicyRepository, EvaluatorService, PolicyService, ViolationSinks],
  exports: [ViolationSinks, PolicyService, EvaluatorService],
})
export class PolicyModule {}
