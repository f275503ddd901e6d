import { ProblemError } from '../common/problem';

export enum OtlpErrorCode {
  UnsupportedMediaType = 'unsupported_media_type',
  UnsupportedEncoding = 'unsupported_encoding',
  Undecodable = 'undecodable_otlp',
  TooManySpans = 'too_many_spans',
  TooManyRequests = 'too_many_requests',
}

export class OtlpError extends ProblemError {
  static unsupportedMediaType(got: string | undefined): OtlpError {
    return new OtlpError(
      415,
      OtlpErrorCode.UnsupportedMediaType,
      'Unsupported media type',
      `send an OTLP ExportTraceServiceRequest as application/x-protobuf or application/json (got ${got ? `"${got}"` : 'no content-type'})`,
    );
  }

  static unsupportedEncoding(encoding: string): OtlpError {
    return new OtlpError(
      415,
      OtlpErrorCode.UnsupportedEncoding,
      'Unsupported content encoding',
      `content-encoding "${encoding}" is not supported; use gzip or none`,
    );
  }

  static undecodable(detail: string): OtlpError {
    return new OtlpError(400, OtlpErrorCode.Undecodable, 'Undecodable OTLP request', `the body is not an ExportTraceServiceRequest: ${detail}`);
  }

  static tooManySpans(n: number, max: number): OtlpError {
    return new OtlpError(413, OtlpErrorCode.TooManySpans, 'Too many spans', `the request holds ${n} spans; at most ${max} are accepted per request`);
  }

  static tooManyRequests(): OtlpError {
    return new OtlpError(429, OtlpErrorCode.TooManyRequests, 'Too many requests', 'too many OTLP spans are being processed; retry shortly', undefined, {
      retry_after: 1,
    });
  }
}
