import { ProblemError } from '../common/problem';

export enum CheckpointErrorCode {
  NoCheckpoint = 'no_checkpoint',
  Refused = 'checkpoint_refused',
}

export class CheckpointError extends ProblemError {
  static none(): CheckpointError {
    return new CheckpointError(404, CheckpointErrorCode.NoCheckpoint, 'No checkpoint', 'no checkpoint has been signed for this ledger yet');
  }

  /**
   * The stored tree does not extend the last signed checkpoint (history was
   * rewritten or truncated): the checkpointer refuses to sign.
   */
  static refused(reason: string): CheckpointError {
    return new CheckpointError(409, CheckpointErrorCode.Refused, 'Checkpoint refused', reason);
  }
}
