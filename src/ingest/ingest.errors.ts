import { ProblemError } from '../common/problem';

export enum IngestErrorCode {
  TooManyEvents = 'too_many_events',
  MalformedJws = 'malformed_jws',
  AlgorithmNotAllowed = 'algorithm_not_allowed',
  UnknownKey = 'unknown_key',
  KeyRevoked = 'key_revoked',
  BadSignature = 'bad_signature',
  DigestMismatch = 'digest_mismatch',
}

export class IngestError extends ProblemError {
  static tooManyEvents(n: number, max: number): IngestError {
    return new IngestError(413, IngestErrorCode.TooManyEvents, 'Too many events', `the batch has ${n} events; at most ${max} are accepted`, [
      { field: 'events', message: `at most ${max} events` },
    ]);
  }

  static malformedJws(detail: string): IngestError {
    return new IngestError(400, IngestErrorCode.MalformedJws, 'Malformed signature', detail, [{ field: 'signature', message: detail }]);
  }

  static algorithmNotAllowed(detail: string): IngestError {
    return new IngestError(422, IngestErrorCode.AlgorithmNotAllowed, 'Algorithm not allowed', detail, [
      { field: 'signature', message: detail },
    ]);
  }

  static unknownKey(kid: string): IngestError {
    return new IngestError(422, IngestErrorCode.UnknownKey, 'Unknown key', `no producer key "${kid}" is registered for this tenant`, [
      { field: 'signature', message: `unknown kid "${kid}"` },
    ]);
  }

  static keyRevoked(kid: string): IngestError {
    return new IngestError(422, IngestErrorCode.KeyRevoked, 'Producer key revoked', `the batch is signed with key "${kid}", which has been revoked`, [
      { field: 'signature', message: `kid "${kid}" is revoked` },
    ]);
  }

  static badSignature(): IngestError {
    return new IngestError(422, IngestErrorCode.BadSignature, 'Bad signature', 'the batch signature does not verify with the registered key', [
      { field: 'signature', message: 'does not verify' },
    ]);
  }

  static digestMismatch(index: number | null, reason: string): IngestError {
    return new IngestError(422, IngestErrorCode.DigestMismatch, 'Digest mismatch', reason, [
      { field: index === null ? 'signature' : `events[${index}]`, message: reason },
    ]);
  }
}
