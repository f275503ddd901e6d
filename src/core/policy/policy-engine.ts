import type { CompiledMatcher, CompiledRule, PolicySet } from './policy-loader';
import { evalWhen, isWithin, matchesStatic, viewOf, type EventView } from './policy-match';
import { violationMessage } from './policy-message';
import type { LedgerEventForPolicy, PolicyEvalError, Scope, Violation } from './policy-types';

/**
 * The policy engine: incremental evaluation of a policy set over the ledger,
 * one event at a time, in ledger order (ascending `seq`).
 *
 * State. Each stateful rule keeps state per scope: per trace (`scope:
 * trace`) or per session (`scope: session`; an event without `session_id`
 * is in no session). preceded_by and not_preceded_by keep the candidate
 * priors (earlier events that pass the prior's type/name/agent filters);
 * the prior's `when`, which needs both events, is evaluated against those
 * candidates only, so an event never rescans its scope's history.
 * max_count keeps a counter and the counted seqs until it fires (once per
 * scope). forbidden is stateless.
 *
 * Bounded and rebuildable (the contract with the service):
 * - At most `maxScopes` scopes are held, least recently used evicted first;
 *   state can also be dropped with `dropScope`. After an eviction, or after
 *   a restart, a scope's state is rebuilt from the ledger.
 * - Before `evaluate(e)`, call `missingScopes(e)`. For each key returned,
 *   read that scope's events with seq < e.seq from the database (a trace by
 *   `trace_id`, a session by `session_id`; `parseScopeKey` says which) and
 *   pass them, in seq order, to `replay(earlier, [key])`. Then call
 *   `evaluate(e)`. The result is identical to an engine that never evicted.
 *   A brand-new scope simply replays nothing.
 * - `replay` updates state only, for the listed scopes only (a sibling scope
 *   that is still held already saw those events), and reports nothing.
 * - Each scope remembers the last seq it applied; an event at or below it is
 *   ignored for that scope, so a re-delivered event cannot count twice.
 * - `missingScopes` marks the event's held scopes as recently used, so
 *   rebuilding a missing sibling cannot evict them (hence `maxScopes >= 2`).
 * One engine serves one tenant: trace and session ids are not tenant-scoped.
 *
 * CEL errors at run time (missing key, type mismatch) count as "no match"
 * and are buffered for `takeErrors()`; the engine never throws for them.
 */

export interface PolicyEngineOptions {
  /** Scopes (traces and sessions) held at once; default 10 000, at least 2. */
  readonly maxScopes?: number;
  /**
   * Candidate priors kept per rule and scope, oldest dropped first; default
   * 10 000. Deterministic, so a replayed scope drops the same ones.
   */
  readonly maxCandidatesPerRule?: number;
  /** Run-time CEL errors buffered until `takeErrors()`; default 1 000, oldest dropped. */
  readonly maxBufferedErrors?: number;
}

interface Counter {
  count: number;
  /** The counted seqs, until the rule fires; then released. */
  seqs: number[];
  fired: boolean;
}

interface ScopeState {
  lastSeq: number;
  readonly counters: Map<CompiledRule, Counter>;
  readonly candidates: Map<CompiledRule, EventView[]>;
}

/** `trace:<trace_id>` or `session:<session_id>`. */
export type ScopeKey = string;

export function scopeKeyOf(scope: Scope, event: LedgerEventForPolicy): ScopeKey | undefined {
  if (scope === 'trace') return `trace:${event.trace_id}`;
  return event.session_id == null ? undefined : `session:${event.session_id}`;
}

/** Which events to replay for a key: those with this `trace_id` or `session_id`. */
export function parseScopeKey(key: ScopeKey): { readonly scope: Scope; readonly id: string } {
  const colon = key.indexOf(':');
  const scope = key.slice(0, colon);
  if (colon < 0 || (scope !== 'trace' && scope !== 'session')) throw new RangeError(`not a scope key: ${key}`);
  return { scope, id: key.slice(colon + 1) };
}

const STATEFUL_SCOPES: readonly Scope[] = ['trace', 'session'];

export class PolicyEngine {
  private readonly scopes = new Map<ScopeKey, ScopeState>();
  private readonly usedScopes: readonly Scope[];
  private readonly maxScopes: number;
  private readonly maxCandidates: number;
  private readonly maxErrors: number;
  private errors: PolicyEvalError[] = [];

  constructor(
    readonly policySet: PolicySet,
    options: PolicyEngineOptions = {},
  ) {
    this.maxScopes = options.maxScopes ?? 10_000;
    this.maxCandidates = options.maxCandidatesPerRule ?? 10_000;
    this.maxErrors = options.maxBufferedErrors ?? 1_000;
    if (!Number.isInteger(this.maxScopes) || this.maxScopes < 2) {
      throw new RangeError('maxScopes must be an integer >= 2 (an event can be in a trace and a session)');
    }
    if (!Number.isInteger(this.maxCandidates) || this.maxCandidates < 1) {
      throw new RangeError('maxCandidatesPerRule must be an integer >= 1');
    }
    const stateful = policySet.rules.filter((r) => r.kind !== 'forbidden');
    this.usedScopes = STATEFUL_SCOPES.filter((s) => stateful.some((r) => r.scope === s));
  }

  /** The scopes whose state `evaluate(event)` reads and updates. */
  scopeKeys(event: LedgerEventForPolicy): ScopeKey[] {
    const keys: ScopeKey[] = [];
    for (const scope of this.usedScopes) {
      const key = scopeKeyOf(scope, event);
      if (key !== undefined) keys.push(key);
    }
    return keys;
  }

  /** The event's scopes not held now (replay them first); marks the held ones as used. */
  missingScopes(event: LedgerEventForPolicy): ScopeKey[] {
    return this.scopeKeys(event).filter((key) => this.touch(key) === undefined);
  }

  hasScope(key: ScopeKey): boolean {
    return this.scopes.has(key);
  }

  /** Forgets a scope (e.g. a finished run); it is rebuilt by replay if seen again. */
  dropScope(key: ScopeKey): boolean {
    return this.scopes.delete(key);
  }

  get scopeCount(): number {
    return this.scopes.size;
  }

  /** The violations this event raises, in rule order. Never throws for CEL errors. */
  evaluate(event: LedgerEventForPolicy): Violation[] {
    const view = viewOf(event);
    const states = this.statesFor(event, view.seq, undefined);
    const violations: Violation[] = [];
    for (const rule of this.policySet.rules) {
      if (rule.kind === 'forbidden') {
        if (this.matches(rule, rule.match, event, view, true)) violations.push(this.violation(rule, event, 'trace', []));
        continue;
      }
      const state = states.get(rule.scope);
      if (state === undefined) continue;
      const related = this.apply(rule, state, event, view, true);
      if (related !== undefined) violations.push(this.violation(rule, event, rule.scope, related));
    }
    for (const state of states.values()) state.lastSeq = view.seq;
    return violations;
  }

  /**
   * Rebuilds the listed scopes with an earlier event (see the contract
   * above). Reports nothing: no violations, no CEL errors.
   */
  replay(event: LedgerEventForPolicy, scopes: readonly ScopeKey[]): void {
    const view = viewOf(event);
    const states = this.statesFor(event, view.seq, new Set(scopes));
    for (const rule of this.policySet.rules) {
      const state = rule.kind === 'forbidden' ? undefined : states.get(rule.scope);
      if (state !== undefined) this.apply(rule, state, event, view, false);
    }
    for (const state of states.values()) state.lastSeq = view.seq;
  }

  /** Run-time CEL errors since the last call, oldest first. */
  takeErrors(): PolicyEvalError[] {
    const taken = this.errors;
    this.errors = [];
    return taken;
  }

  /**
   * The states this event updates, created when absent, keyed by scope kind.
   * A scope that already applied this seq (or a later one) is left out.
   */
  private statesFor(
    event: LedgerEventForPolicy,
    seq: number,
    only: ReadonlySet<ScopeKey> | undefined,
  ): Map<Scope, ScopeState> {
    const states = new Map<Scope, ScopeState>();
    for (const scope of this.usedScopes) {
      const key = scopeKeyOf(scope, event);
      if (key === undefined || (only !== undefined && !only.has(key))) continue;
      const state = this.touch(key) ?? this.create(key);
      if (seq > state.lastSeq) states.set(scope, state);
    }
    return states;
  }

  /** LRU: a Map iterates in insertion order, so re-inserting marks as recent. */
  private touch(key: ScopeKey): ScopeState | undefined {
    const state = this.scopes.get(key);
    if (state !== undefined) {
      this.scopes.delete(key);
      this.scopes.set(key, state);
    }
    return state;
  }

  private create(key: ScopeKey): ScopeState {
    while (this.scopes.size >= this.maxScopes) {
      const oldest = this.scopes.keys().next();
      if (oldest.done === true) break;
      this.scopes.delete(oldest.value);
    }
    const state: ScopeState = { lastSeq: 0, counters: new Map(), candidates: new Map() };
    this.scopes.set(key, state);
    return state;
  }

  /**
   * Applies one stateful rule to one event in one scope. Returns the related
   * seqs when the rule fires (only when `report`), else undefined.
   */
  private apply(
    rule: CompiledRule,
    state: ScopeState,
    event: LedgerEventForPolicy,
    view: EventView,
    report: boolean,
  ): number[] | undefined {
    switch (rule.kind) {
      case 'preceded_by':
      case 'not_preceded_by': {
        const candidates = state.candidates.get(rule) ?? [];
        // Only a match can fire, and matching changes no state: replay skips it.
        const fired = report && this.matches(rule, rule.match, event, view, true) ? this.checkPriors(rule, candidates, view) : undefined;
        if (rule.prior !== undefined && matchesStatic(rule.prior, event)) {
          candidates.push(view);
          if (candidates.length > this.maxCandidates) candidates.shift();
          state.candidates.set(rule, candidates);
        }
        return fired;
      }
      case 'max_count': {
        const counter = state.counters.get(rule) ?? { count: 0, seqs: [], fired: false };
        if (counter.fired || !this.matches(rule, rule.match, event, view, report)) return undefined;
        state.counters.set(rule, counter);
        counter.count += 1;
        if (counter.count <= (rule.max ?? 0)) {
          counter.seqs.push(view.seq);
          return undefined;
        }
        counter.fired = true;
        const related = counter.seqs;
        counter.seqs = [];
        return report ? related : undefined;
      }
      case 'forbidden':
        return undefined;
    }
  }

  /**
   * preceded_by fires (with no related seqs) when no candidate is a prior;
   * not_preceded_by fires with every candidate that is one.
   */
  private checkPriors(rule: CompiledRule, candidates: readonly EventView[], view: EventView): number[] | undefined {
    const prior = rule.prior;
    if (prior === undefined) return undefined;
    let errorRecorded = false;
    const isPrior = (candidate: EventView): boolean => {
      if (!isWithin(prior.withinMs, view, candidate)) return false;
      const result = evalWhen(prior.when, view.cel, candidate.cel);
      if (result.error !== undefined && !errorRecorded) {
        errorRecorded = true;
        this.recordError({ ruleId: rule.id, seq: view.seq, expression: 'prior.when', priorSeq: candidate.seq, message: result.error });
      }
      return result.matched;
    };
    if (rule.kind === 'preceded_by') {
      for (let i = candidates.length - 1; i >= 0; i--) {
        const candidate = candidates[i];
        if (candidate !== undefined && isPrior(candidate)) return undefined;
      }
      return [];
    }
    const hits = candidates.filter(isPrior).map((c) => c.seq);
    return hits.length > 0 ? hits : undefined;
  }

  private matches(
    rule: CompiledRule,
    matcher: CompiledMatcher,
    event: LedgerEventForPolicy,
    view: EventView,
    report: boolean,
  ): boolean {
    if (!matchesStatic(matcher, event)) return false;
    const result = evalWhen(matcher.when, view.cel);
    if (result.error !== undefined && report) {
      this.recordError({ ruleId: rule.id, seq: view.seq, expression: 'match.when', message: result.error });
    }
    return result.matched;
  }

  private recordError(error: PolicyEvalError): void {
    this.errors.push(error);
    if (this.errors.length > this.maxErrors) this.errors.shift();
  }

  private violation(rule: CompiledRule, event: LedgerEventForPolicy, scope: Scope, related: readonly number[]): Violation {
    return {
      ruleId: rule.id,
      severity: rule.severity,
      kind: rule.kind,
      scope,
      policySetHash: this.policySet.hash,
      seq: event.seq,
      relatedSeqs: related,
      traceId: event.trace_id,
      sessionId: event.session_id ?? null,
      agent: event.agent ?? null,
      message: violationMessage(rule, event, scope, related),
    };
  }
}
