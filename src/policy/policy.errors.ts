import { ProblemError, type FieldError } from '../common/problem';
import { formatProblem, type PolicyProblem } from '../core/policy';

export enum PolicyErrorCode {
  PolicySetRefused = 'policy_set_refused',
  NoPolicySet = 'no_policy_set',
  AlreadyAcknowledged = 'already_acknowledged',
  BadRange = 'bad_range',
  BadCursor = 'bad_cursor',
}

export class PolicyError extends ProblemError {
  /** A bad set: every problem with its file, rule id and position; the set in force stays. */
  static refused(problems: readonly PolicyProblem[], inForce: string | null): PolicyError {
    const errors: FieldError[] = problems.map((p) => ({
      field: `${p.file}${p.line !== undefined ? `:${p.line}:${p.column ?? 1}` : ''}${p.ruleId ? ` (rule ${p.ruleId})` : ''}`,
      message: p.message,
    }));
    return new PolicyError(
      400,
      PolicyErrorCode.PolicySetRefused,
      'Policy set refused',
      `the policy set was refused with ${problems.length} problem${problems.length === 1 ? '' : 's'}; ` +
        (inForce ? `the set ${inForce} stays in force` : 'no set is in force') +
        `: ${problems.slice(0, 3).map(formatProblem).join('; ')}`,
      errors,
      {
        problems: problems.map((p) => ({ file: p.file, rule_id: p.ruleId ?? null, line: p.line ?? null, column: p.column ?? null, message: p.message })),
        policy_set_hash: inForce,
      },
    );
  }

  static noPolicySet(): PolicyError {
    return new PolicyError(409, PolicyErrorCode.NoPolicySet, 'No policy set', 'no policy set is loaded; fix the files and reload');
  }

  static alreadyAcknowledged(id: string): PolicyError {
    return new PolicyError(409, PolicyErrorCode.AlreadyAcknowledged, 'Already acknowledged', `violation ${id} is already acknowledged`);
  }

  static badRange(field: string, detail: string): PolicyError {
    return new PolicyError(400, PolicyErrorCode.BadRange, 'Bad range', detail, [{ field, message: detail }]);
  }

  static badCursor(): PolicyError {
    return new PolicyError(400, PolicyErrorCode.BadCursor, 'Bad cursor', 'the cursor is not one this API returned', [
      { field: 'query.cursor', message: 'not a cursor this API returned' },
    ]);
  }
}
