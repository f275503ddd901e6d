/**
 * RFC 9457 problem details. Every module throws a ProblemError subclass with
 * its own code enum; the global filter renders them. `type` is a stable URI
 * per code so clients can switch on it without parsing prose.
 */
export interface FieldError {
  /** Where in the input: `events[3].trace_id`, `query.limit`, `jwk.crv`. */
  field: string;
  message: string;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

export const PROBLEM_TYPE_BASE = 'https://agent-ledger.dev/problems/';

export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    detail: string,
    readonly errors?: FieldError[],
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail);
  }

  toBody(instance?: string): ProblemBody {
    return {
      type: PROBLEM_TYPE_BASE + this.code,
      title: this.title,
      status: this.status,
      detail: this.message,
      code: this.code,
      ...(instance ? { instance } : {}),
      ...(this.errors ? { errors: this.errors } : {}),
      ...this.extensions,
    };
  }
}

/** Errors shared by every module (validation, auth, not found). */
export enum CommonErrorCode {
  ValidationFailed = 'validation_failed',
  Unauthenticated = 'unauthenticated',
  Forbidden = 'forbidden',
  NotFound = 'not_found',
  PayloadTooLarge = 'payload_too_large',
  UnsupportedMediaType = 'unsupported_media_type',
  Unavailable = 'unavailable',
  Internal = 'internal_error',
}

export class ValidationError extends ProblemError {
  constructor(errors: FieldError[], detail?: string) {
    super(
      400,
      CommonErrorCode.ValidationFailed,
      'Invalid request',
      detail ?? errors.map((e) => `${e.field}: ${e.message}`).slice(0, 5).join('; '),
      errors,
    );
  }
}

export class NotFoundError extends ProblemError {
  constructor(what: string) {
    super(404, CommonErrorCode.NotFound, 'Not found', `${what} was not found`);
  }
}

export class UnauthenticatedError extends ProblemError {
  constructor(detail: string) {
    super(401, CommonErrorCode.Unauthenticated, 'Unauthenticated', detail);
  }
}

export class ForbiddenError extends ProblemError {
  constructor(detail: string) {
    super(403, CommonErrorCode.Forbidden, 'Forbidden', detail);
  }
}

export class UnavailableError extends ProblemError {
  constructor(detail: string, retryAfterS = 1) {
    super(503, CommonErrorCode.Unavailable, 'Service unavailable', detail, undefined, { retry_after: retryAfterS });
  }
}
