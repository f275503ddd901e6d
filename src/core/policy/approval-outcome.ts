import type { CelMap } from './cel';
import type { CompiledRule } from './policy-loader';
import { scopeKeyOf } from './policy-engine';
import { evalWhen, isWithin, matchesStatic, viewOf, type EventView } from './policy-match';
import type { LedgerEventForPolicy } from './policy-types';

/**
 * For the approvals report (`GET /v1/reports/approvals`): every action a
 * preceded_by rule covers, and what became of its approval. Rules of any
 * other kind are not about approvals. The decision, in this order:
 *
 * 1. approved: an earlier event in scope satisfies the rule's prior (type,
 *    name, agent, `within`, `when`): exactly when the engine raises nothing.
 * 2. denied: an earlier `approval.denied` in scope that would satisfy the
 *    prior if its type were `approval.granted` (same name/agent filters,
 *    `within` and `when`).
 * 3. blocked: an `action.blocked` in scope, at any seq, for the same tool:
 *    its `attributes.tool` or its `name` equals the action's `name` (a
 *    block is often recorded right after the attempt it stopped).
 * 4. missing: none of these.
 * The latest candidate wins for 1 and 2 (closest to the action), the first
 * block for 3. `approver` is `attributes.approver` (JSON text if not a string).
 */

export type ApprovalOutcome =
  | { readonly status: 'approved'; readonly approvalSeq: number; readonly approver: string | null }
  | { readonly status: 'denied'; readonly denialSeq: number; readonly approver: string | null }
  | { readonly status: 'blocked'; readonly blockedSeq: number }
  | { readonly status: 'missing' };

/** Whether `event` is an action this rule says needs an earlier approval. */
export function requiresApproval(rule: CompiledRule, event: LedgerEventForPolicy): boolean {
  if (rule.kind !== 'preceded_by' || !matchesStatic(rule.match, event)) return false;
  return evalWhen(rule.match.when, viewOf(event).cel).matched;
}

/**
 * `scopeEvents`: the events of the action's scope (its trace, or its session
 * for a session rule), any order; events of other scopes are ignored.
 */
export function approvalOutcome(
  rule: CompiledRule,
  action: LedgerEventForPolicy,
  scopeEvents: Iterable<LedgerEventForPolicy>,
): ApprovalOutcome {
  const prior = rule.prior;
  if (rule.kind !== 'preceded_by' || prior === undefined) {
    throw new RangeError(`rule ${rule.id} is ${rule.kind}, approvals apply to preceded_by rules`);
  }
  const key = scopeKeyOf(rule.scope, action);
  const inScope = [...scopeEvents]
    .filter((e) => key !== undefined && scopeKeyOf(rule.scope, e) === key)
    .sort((a, b) => a.seq - b.seq);
  const view = viewOf(action);
  const earlierLatestFirst = inScope.filter((e) => e.seq < action.seq).reverse();

  const satisfies = (priorView: EventView): boolean =>
    isWithin(prior.withinMs, view, priorView) && evalWhen(prior.when, view.cel, priorView.cel).matched;

  const approval = earlierLatestFirst.find((e) => matchesStatic(prior, e) && satisfies(viewOf(e)));
  if (approval !== undefined) return { status: 'approved', approvalSeq: approval.seq, approver: approverOf(approval) };

  const withoutType = { ...prior, types: undefined };
  const denial = earlierLatestFirst.find(
    (e) => e.type === 'approval.denied' && matchesStatic(withoutType, e) && satisfies(asGranted(viewOf(e))),
  );
  if (denial !== undefined) return { status: 'denied', denialSeq: denial.seq, approver: approverOf(denial) };

  const block = inScope.find(
    (e) => e.type === 'action.blocked' && action.name != null && (e.attributes?.['tool'] === action.name || e.name === action.name),
  );
  if (block !== undefined) return { status: 'blocked', blockedSeq: block.seq };
  return { status: 'missing' };
}

/** The denial as the prior's `when` would see a grant. */
function asGranted(view: EventView): EventView {
  const cel: CelMap = new Map(view.cel).set('type', 'approval.granted');
  return { seq: view.seq, type: 'approval.granted', timeMs: view.timeMs, cel };
}

function approverOf(event: LedgerEventForPolicy): string | null {
  const approver = event.attributes?.['approver'];
  if (approver === undefined || approver === null) return null;
  return typeof approver === 'string' ? approver : JSON.stringify(approver);
}
