/**
 * Types shared by the policy core: the event as the engine sees it, the
 * normalised rule (what is hashed and shown by `GET /v1/policies`) and the
 * violation the engine raises. Nothing here imports Nest or the database.
 */

import { EVENT_TYPES } from '../event';

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const RULE_KINDS = ['preceded_by', 'not_preceded_by', 'max_count', 'forbidden'] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export const SCOPES = ['trace', 'session'] as const;
export type Scope = (typeof SCOPES)[number];

/** Event types a rule may filter on (DESIGN.md §2): the producer types; `custom.<name>` too. */
export const POLICY_EVENT_TYPES = EVENT_TYPES;

export const CUSTOM_EVENT_TYPE = /^custom\.[a-z0-9][a-z0-9_.-]{0,63}$/;

/**
 * One ledger entry as the policy engine needs it: the event of DESIGN.md §2
 * plus the `seq` the ledger gave it. Optional fields may be absent or null;
 * the CEL view fills them with null so `event.session_id == null` works.
 * Structurally compatible with `TraceEvent & { seq }`.
 */
export interface LedgerEventForPolicy {
  readonly seq: number;
  readonly id: string;
  readonly trace_id: string;
  readonly span_id: string;
  readonly parent_span_id?: string | null;
  readonly session_id?: string | null;
  readonly type: string;
  readonly name?: string | null;
  readonly agent?: string | null;
  readonly time: string;
  readonly duration_ms?: number | null;
  readonly status?: string | null;
  readonly attributes?: Readonly<Record<string, unknown>>;
}

/** A matcher after normalisation: filters as sorted, de-duplicated lists. */
export interface NormalizedMatcher {
  readonly type?: readonly string[];
  readonly name?: readonly string[];
  readonly agent?: readonly string[];
  readonly when?: string;
}

export interface NormalizedPrior extends NormalizedMatcher {
  /** Canonical duration text (largest exact unit: `60m` becomes `1h`). */
  readonly within?: string;
}

/**
 * A rule in its canonical form. The policy set hash is computed over these
 * (sorted by id), so formatting, key order, list order and `60m` vs `1h` do
 * not change the hash, while any change of meaning or description does.
 */
export interface NormalizedRule {
  readonly id: string;
  readonly description?: string;
  readonly severity: Severity;
  readonly kind: RuleKind;
  readonly scope: Scope;
  readonly match: NormalizedMatcher;
  readonly prior?: NormalizedPrior;
  readonly max?: number;
}

/** A policy violation, as raised by `PolicyEngine.evaluate`. */
export interface Violation {
  readonly ruleId: string;
  readonly severity: Severity;
  readonly kind: RuleKind;
  /** The scope the rule was checked in (forbidden rules report `trace`). */
  readonly scope: Scope;
  readonly policySetHash: string;
  /** The offending event. */
  readonly seq: number;
  /**
   * not_preceded_by: the matching priors; max_count: the earlier counted
   * events (the offending one is `seq`); preceded_by and forbidden: empty.
   */
  readonly relatedSeqs: readonly number[];
  readonly traceId: string;
  readonly sessionId: string | null;
  readonly agent: string | null;
  readonly message: string;
}

/**
 * A CEL expression that failed at run time (missing key, type mismatch, a
 * non-boolean result). It counts as "no match"; the engine keeps these for
 * reporting instead of throwing.
 */
export interface PolicyEvalError {
  readonly ruleId: string;
  readonly seq: number;
  /** Which expression failed. */
  readonly expression: 'match.when' | 'prior.when';
  /** The candidate prior's seq, for `prior.when`. */
  readonly priorSeq?: number;
  readonly message: string;
}
