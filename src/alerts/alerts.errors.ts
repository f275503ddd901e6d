import { ProblemError } from '../common/problem';

export enum AlertsErrorCode {
  UrlRefused = 'webhook_url_refused',
  EndpointDisabled = 'webhook_endpoint_disabled',
  DeliveryScheduled = 'webhook_delivery_scheduled',
}

export class AlertsError extends ProblemError {
  static urlRefused(reason: string): AlertsError {
    return new AlertsError(400, AlertsErrorCode.UrlRefused, 'Webhook URL refused', `the webhook URL is refused: ${reason}`, [
      { field: 'url', message: reason },
    ]);
  }

  static endpointDisabled(id: string, reason: string | null): AlertsError {
    return new AlertsError(
      409,
      AlertsErrorCode.EndpointDisabled,
      'Webhook endpoint disabled',
      `the endpoint ${id} is disabled${reason ? ` (${reason})` : ''}; register a new endpoint to deliver again`,
    );
  }

  static deliveryScheduled(id: string, nextAttemptAt: Date): AlertsError {
    return new AlertsError(
      409,
      AlertsErrorCode.DeliveryScheduled,
      'Delivery already scheduled',
      `the delivery ${id} is still being retried (next attempt at ${nextAttemptAt.toISOString()}); replay it once it is delivered or dead`,
    );
  }
}
