import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  PolicyEngine,
  approvalOutcome,
  loadPolicySet,
  requiresApproval,
  scopeKeyOf,
  type CompiledRule,
  type LedgerEventForPolicy,
  type NormalizedMatcher,
  type PolicySet,
  type Violation,
} from '../../src/core/policy';
import { toCelEvent } from '../../src/core/policy/cel';

/**
 * Properties over random event sequences:
 * 1. the incremental engine equals a brute-force reference that rescans the
 *    scope's whole history for every event (the semantics of DESIGN.md §6);
 * 2. an engine that holds only 2 scopes, loses scopes at random and restarts
 *    at random, rebuilding through `missingScopes` + `replay`, raises exactly
 *    what an unlimited engine raises;
 * 3. `approvalOutcome` says "approved" exactly when the engine raised nothing.
 */

const REPO = join(__dirname, '..', '..', '..');

const TEST_RULES = `rules:
  - id: pb-trace
    severity: high
    kind: preceded_by
    match: { type: tool.call, name: refund_payment, when: "event.attributes.args.amount > 100" }
    prior: { type: approval.granted, when: "prior.attributes.args.order_id == event.attributes.args.order_id", within: 1h }
  - id: pb-session
    severity: low
    kind: preceded_by
    scope: session
    match: { type: handoff }
    prior: { type: [approval.granted, approval.requested], within: 30m }
  - id: npb-trace
    severity: low
    kind: not_preceded_by
    match: { type: tool.call }
    prior: { type: action.blocked, agent: support-agent, when: "prior.attributes.tool == event.name" }
  - id: npb-session
    severity: low
    kind: not_preceded_by
    scope: session
    match: { type: tool.call, name: refund_payment }
    prior: { type: approval.denied, when: "prior.attributes.args.order_id == event.attributes.args.order_id", within: 45m }
  - id: max-trace
    severity: low
    kind: max_count
    match: { type: retry }
    max: 2
  - id: max-session
    severity: low
    kind: max_count
    scope: session
    match: { type: tool.call, when: "event.attributes.args.amount > 50" }
    max: 1
  - id: forbid
    severity: low
    kind: forbidden
    match: { type: tool.call, name: run_shell, agent: support-agent }
`;

const SET = loadPolicySet([
  { file: 'policies/support-agent.yaml', text: readFileSync(join(REPO, 'policies', 'support-agent.yaml'), 'utf8') },
  { file: 'test.yaml', text: TEST_RULES },
]);

const TRACES = ['4bf92f3577b34da6a3ce929d0e0e4736', '0af7651916cd43dd8448eb211c80319c', 'a'.repeat(32), 'b'.repeat(32)];
const BASE = Date.parse('2026-11-25T10:00:00.000Z');

const eventArb = fc.record({
  trace: fc.integer({ min: 0, max: TRACES.length - 1 }),
  session: fc.constantFrom(null, 's-1', 's-2'),
  type: fc.constantFrom('tool.call', 'approval.granted', 'approval.requested', 'approval.denied', 'action.blocked', 'retry', 'handoff'),
  name: fc.constantFrom(undefined, 'refund_payment', 'run_shell', 'lookup_order'),
  agent: fc.constantFrom('support-agent', 'manager'),
  minutes: fc.integer({ min: 0, max: 150 }),
  tool: fc.constantFrom(undefined, 'refund_payment', 'run_shell'),
  orderId: fc.constantFrom(undefined, 'A-1', 'A-2'),
  amount: fc.constantFrom(undefined, 20, 100, 100.5, 250, '300'),
  targetAgent: fc.constantFrom(undefined, 'billing-agent', 'shady-agent'),
});

type EventSpec = typeof eventArb extends fc.Arbitrary<infer T> ? T : never;

function toEvents(specs: readonly EventSpec[]): LedgerEventForPolicy[] {
  return specs.map((s, i) => {
    const args: Record<string, unknown> = {};
    if (s.orderId !== undefined) args['order_id'] = s.orderId;
    if (s.amount !== undefined) args['amount'] = s.amount;
    const attributes: Record<string, unknown> = { args };
    if (s.tool !== undefined) attributes['tool'] = s.tool;
    if (s.targetAgent !== undefined) attributes['target_agent'] = s.targetAgent;
    return {
      seq: i + 1,
      id: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
      trace_id: TRACES[s.trace] ?? TRACES[0] ?? '',
      span_id: (i + 1).toString(16).padStart(16, '0'),
      ...(s.session === null ? {} : { session_id: s.session }),
      type: s.type,
      ...(s.name === undefined ? {} : { name: s.name }),
      agent: s.agent,
      time: new Date(BASE + s.minutes * 60_000).toISOString(),
      attributes,
    };
  });
}

const key = (v: Violation) => `${v.ruleId}@${v.seq}[${v.relatedSeqs.join(',')}]`;

/** Brute force: for every event, rescan its scope's entire earlier history. */
function reference(set: PolicySet, evs: readonly LedgerEventForPolicy[]): string[] {
  const inList = (list: readonly string[] | undefined, value: string | null | undefined) =>
    list === undefined || (value != null && list.includes(value));
  const staticOk = (m: NormalizedMatcher, e: LedgerEventForPolicy) =>
    inList(m.type, e.type) && inList(m.name, e.name) && inList(m.agent, e.agent);
  const celOk = (rule: CompiledRule, which: 'match' | 'prior', e: LedgerEventForPolicy, p?: LedgerEventForPolicy) => {
    const when = which === 'match' ? rule.match.when : rule.prior?.when;
    if (when === undefined) return true;
    const out = when.evaluate(p === undefined ? { event: toCelEvent(e) } : { event: toCelEvent(e), prior: toCelEvent(p) });
    return out.ok && out.value;
  };
  const matches = (rule: CompiledRule, e: LedgerEventForPolicy) => staticOk(rule.definition.match, e) && celOk(rule, 'match', e);
  const isPrior = (rule: CompiledRule, e: LedgerEventForPolicy, p: LedgerEventForPolicy) =>
    staticOk(rule.definition.prior ?? {}, p) &&
    (rule.prior?.withinMs === undefined || Date.parse(p.time) >= Date.parse(e.time) - rule.prior.withinMs) &&
    celOk(rule, 'prior', e, p);

  const out: string[] = [];
  evs.forEach((e, i) => {
    for (const rule of set.rules) {
      if (rule.kind === 'forbidden') {
        if (matches(rule, e)) out.push(`${rule.id}@${e.seq}[]`);
        continue;
      }
      const scope = scopeKeyOf(rule.scope, e);
      if (scope === undefined || !matches(rule, e)) continue;
      const history = evs.slice(0, i).filter((h) => scopeKeyOf(rule.scope, h) === scope);
      if (rule.kind === 'preceded_by' && !history.some((p) => isPrior(rule, e, p))) out.push(`${rule.id}@${e.seq}[]`);
      if (rule.kind === 'not_preceded_by') {
        const hits = history.filter((p) => isPrior(rule, e, p)).map((p) => p.seq);
        if (hits.length > 0) out.push(`${rule.id}@${e.seq}[${hits.join(',')}]`);
      }
      if (rule.kind === 'max_count') {
        const counted = history.filter((h) => matches(rule, h)).map((h) => h.seq);
        if (counted.length === (rule.max ?? 0)) out.push(`${rule.id}@${e.seq}[${counted.join(',')}]`);
      }
    }
  });
  return out;
}

type Disruption = 'none' | 'drop-trace' | 'drop-session' | 'restart';

/** The service's side of the replay contract, with the ledger as an array. */
function runWithReplay(
  set: PolicySet,
  evs: readonly LedgerEventForPolicy[],
  disruptions: readonly Disruption[],
): string[] {
  let engine = new PolicyEngine(set, { maxScopes: 2 });
  const out: string[] = [];
  evs.forEach((e, i) => {
    const d = disruptions[i] ?? 'none';
    if (d === 'restart') engine = new PolicyEngine(set, { maxScopes: 2 });
    if (d === 'drop-trace') engine.dropScope(`trace:${e.trace_id}`);
    if (d === 'drop-session' && e.session_id != null) engine.dropScope(`session:${e.session_id}`);
    for (const missing of engine.missingScopes(e)) {
      const earlier = evs.slice(0, i).filter((h) => engine.scopeKeys(h).includes(missing));
      for (const h of earlier) engine.replay(h, [missing]);
    }
    out.push(...engine.evaluate(e).map(key));
  });
  return out;
}

const disruptionArb = fc.constantFrom<Disruption>('none', 'none', 'none', 'drop-trace', 'drop-session', 'restart');

describe('policy engine properties', () => {
  test('incremental evaluation equals the brute-force reference', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 60 }), (specs) => {
        const evs = toEvents(specs);
        const engine = new PolicyEngine(SET);
        const got = evs.flatMap((e) => engine.evaluate(e).map(key));
        assert.deepEqual(got, reference(SET, evs));
      }),
      { numRuns: 300 },
    );
  });

  test('a tiny LRU with evictions, drops and restarts, rebuilt by replay, equals an unlimited engine', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(eventArb, disruptionArb), { maxLength: 60 }),
        (steps) => {
          const evs = toEvents(steps.map(([s]) => s));
          const unlimited = new PolicyEngine(SET, { maxScopes: 1_000_000 });
          const expected = evs.flatMap((e) => unlimited.evaluate(e).map(key));
          assert.deepEqual(runWithReplay(SET, evs, steps.map(([, d]) => d)), expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('approvalOutcome is "approved" exactly when the preceded_by rule raised nothing', () => {
    const approvalRules = SET.rules.filter((r) => r.kind === 'preceded_by');
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 40 }), (specs) => {
        const evs = toEvents(specs);
        const engine = new PolicyEngine(SET);
        const raised = new Set(evs.flatMap((e) => engine.evaluate(e).map((v) => `${v.ruleId}@${v.seq}`)));
        for (const rule of approvalRules) {
          for (const e of evs) {
            if (!requiresApproval(rule, e)) {
              assert.ok(!raised.has(`${rule.id}@${e.seq}`));
              continue;
            }
            if (scopeKeyOf(rule.scope, e) === undefined) continue;
            const outcome = approvalOutcome(rule, e, evs);
            assert.equal(outcome.status === 'approved', !raised.has(`${rule.id}@${e.seq}`), `${rule.id}@${e.seq}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
