import { ProblemError } from '../common/problem';

export enum LedgerErrorCode {
  EventConflict = 'event_conflict',
  KeyRevoked = 'key_revoked',
  BadRange = 'bad_range',
  Busy = 'ledger_busy',
}

export class LedgerError extends ProblemError {
  static eventConflict(index: number, id: string): LedgerError {
    return new LedgerError(
      409,
      LedgerErrorCode.EventConflict,
      'Event id already used',
      `events[${index}]: id ${id} is already in the ledger with different content`,
      [{ field: `events[${index}].id`, message: 'already recorded with different content' }],
    );
  }

  static keyRevoked(kid: string): LedgerError {
    return new LedgerError(
      422,
      LedgerErrorCode.KeyRevoked,
      'Producer key revoked',
      `the batch is signed with key "${kid}", which has been revoked`,
    );
  }

  static badRange(field: string, message: string): LedgerError {
    return new LedgerError(400, LedgerErrorCode.BadRange, 'Out of range', `${field}: ${message}`, [
      { field, message },
    ]);
  }

  static busy(depth: number): LedgerError {
    return new LedgerError(
      503,
      LedgerErrorCode.Busy,
      'Ledger busy',
      `the sequencer queue holds ${depth} events; retry shortly`,
      undefined,
      { retry_after: 1 },
    );
  }
}
