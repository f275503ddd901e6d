import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyRequest, RawServerDefault } from 'fastify';
import type { IngestWorkers } from './ingest-workers';
import type { PreparedBody } from './prepare-body';

/** The route whose large bodies the ingest workers prepare. */
const INGEST_ROUTE = '/v1/events';

const prepared = new WeakMap<FastifyRequest, PreparedBody>();

/**
 * Fastify's JSON body parser, with one detour: a POST /v1/events body of
 * `workers.minBytes` or more is parsed and its events prepared by an ingest
 * worker, off the event loop. The request's body is then the envelope with
 * the prepared events (the controller's envelope check still runs) and
 * `preparedBody(request)` gives the prepared batch. Whenever the worker
 * declines or fails, and for every other body, Fastify's own parser runs,
 * with Fastify's defaults (`__proto__` and `constructor` keys refused): the
 * same parser and options the worker uses.
 */
export function registerIngestBodyParsing(app: NestFastifyApplication, workers: IngestWorkers, bodyLimit: number): void {
  const json = app.getHttpAdapter().getInstance().getDefaultJsonParser('error', 'error');
  app.useBodyParser<RawServerDefault>('application/json', { bodyLimit }, (request, body, done) => {
    if (request.method !== 'POST' || request.routeOptions.url !== INGEST_ROUTE || !workers.takes(body.length)) {
      json(request, body.toString(), done);
      return;
    }
    void workers.prepare(body).then((ready) => {
      if (!ready) return json(request, body.toString(), done);
      prepared.set(request, ready);
      done(null, { events: ready.events, signature: ready.signature });
    });
  });
}

/** The batch an ingest worker prepared for this request, if one did. */
export function preparedBody(request: FastifyRequest): PreparedBody | undefined {
  return prepared.get(request);
}
