import { ProblemError } from '../common/problem';

export enum ExportErrorCode {
  NotFound = 'not_found',
  NothingToExport = 'nothing_to_export',
}

export class ExportError extends ProblemError {
  /** Another tenant's trace or session answers the same: never confirm it exists elsewhere. */
  static notFound(what: string): ExportError {
    return new ExportError(404, ExportErrorCode.NotFound, 'Not found', `${what} was not found`);
  }

  static emptyLedger(): ExportError {
    return new ExportError(404, ExportErrorCode.NothingToExport, 'Nothing to export', 'the ledger has no entries yet: there is no checkpoint to prove anything against');
  }
}
