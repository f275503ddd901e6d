import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CommonErrorCode, ProblemError } from './problem';

const TITLES: Record<number, [string, string]> = {
  400: ['Bad request', CommonErrorCode.ValidationFailed],
  401: ['Unauthenticated', CommonErrorCode.Unauthenticated],
  403: ['Forbidden', CommonErrorCode.Forbidden],
  404: ['Not found', CommonErrorCode.NotFound],
  405: ['Method not allowed', 'method_not_allowed'],
  413: ['Payload too large', CommonErrorCode.PayloadTooLarge],
  415: ['Unsupported media type', CommonErrorCode.UnsupportedMediaType],
  429: ['Too many requests', 'too_many_requests'],
  503: ['Service unavailable', CommonErrorCode.Unavailable],
};

/** Errors raised by Fastify itself before a route runs (body parsing, limits). */
interface FrameworkError {
  statusCode?: number;
  code?: string;
  message: string;
}

/**
 * Turns any error into an RFC 9457 problem response. Known errors keep their
 * detail; unknown ones are logged with the request id and answered with a
 * bare "internal error" (no stack, no SQL, no input echoed back).
 */
export function toProblem(err: unknown, log: (e: unknown) => void): ProblemError {
  if (err instanceof ProblemError) return err;
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const [title, code] = TITLES[status] ?? ['Error', 'error'];
    // Fastify's body parser errors reach here wrapped by Nest.
    if (status === 413) return new ProblemError(413, code, title, 'the request body exceeds the 5 MiB limit');
    if (status === 400) return new ProblemError(400, 'malformed_body', 'Malformed body', `the body cannot be parsed: ${err.message}`);
    if (status === 415) return new ProblemError(415, code, title, 'send application/json');
    return new ProblemError(status, code, title, status === 404 ? 'no such route' : err.message);
  }
  const fe = err as FrameworkError;
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const [title, code] = TITLES[fe.statusCode] ?? ['Bad request', 'bad_request'];
    let detail = fe.message;
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') detail = 'the request body exceeds the 5 MiB limit';
    else if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY')
      detail = `the body is not valid JSON: ${fe.message}`;
    return new ProblemError(fe.statusCode, fe.statusCode === 400 ? 'malformed_body' : code, title, detail);
  }
  log(err);
  return new ProblemError(500, CommonErrorCode.Internal, 'Internal error', 'internal error');
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, problem: ProblemError): void {
  const retry = problem.extensions.retry_after;
  if (typeof retry === 'number') void reply.header('retry-after', String(retry));
  // RFC 6750 §3: a 401 names the scheme it wants
  if (problem.status === 401) void reply.header('www-authenticate', 'Bearer realm="agent-ledger", error="invalid_token"');
  void reply
    .status(problem.status)
    .header('content-type', 'application/problem+json')
    .send(problem.toBody(request.url.split('?')[0]));
}

@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const reply = http.getResponse<FastifyReply>();
    const request = http.getRequest<FastifyRequest>();
    const problem = toProblem(exception, (e) =>
      this.logger.error({ err: e, reqId: request.id }, 'unhandled error'),
    );
    sendProblem(reply, request, problem);
  }
}
