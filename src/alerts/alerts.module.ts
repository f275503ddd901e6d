import { Module } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module';
import { AlertsService } from './alerts.service';
import { DeliveryWorker } from './delivery.worker';
import { WebhooksController } from './webhooks.controller';
import { WebhooksRepository } from './webhooks.repository';

@Module({
  imports: [LedgerModule],
  controllers: [WebhooksController],
  providers: [WebhooksRepository, DeliveryWorker, AlertsService],
  exports: [AlertsService],
})
export class AlertsModule {}
