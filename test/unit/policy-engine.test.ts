import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PolicyEngine,
  loadPolicySet,
  parseScopeKey,
  type LedgerEventForPolicy,
  type PolicySet,
  type Violation,
} from '../../src/core/policy';

const T1 = '4bf92f3577b34da6a3ce929d0e0e4736';
const T2 = '0af7651916cd43dd8448eb211c80319c';
const BASE = Date.parse('2026-11-25T10:00:00.000Z');

function rules(text: string): PolicySet {
  return loadPolicySet([{ file: 'test.yaml', text: `rules:\n${text}` }]);
}

type EventInput = Partial<LedgerEventForPolicy> & { type: string };

/** Events in ledger order: seq 1..n, one second apart, trace T1, unless given. */
function events(...inputs: EventInput[]): LedgerEventForPolicy[] {
  return inputs.map((e, i) => ({
    id: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
    trace_id: T1,
    span_id: (i + 1).toString(16).padStart(16, '0'),
    agent: 'support-agent',
    time: new Date(BASE + i * 1000).toISOString(),
    attributes: {},
    ...e,
    seq: e.seq ?? i + 1,
  }));
}

function run(set: PolicySet, evs: readonly LedgerEventForPolicy[], engine = new PolicyEngine(set)): Violation[] {
  return evs.flatMap((e) => engine.evaluate(e));
}

const brief = (vs: readonly Violation[]) => vs.map((v) => `${v.ruleId}@${v.seq}[${v.relatedSeqs.join(',')}]`);

const refund = (orderId: string, amount: number, extra: Partial<EventInput> = {}): EventInput => ({
  type: 'tool.call',
  name: 'refund_payment',
  attributes: { args: { order_id: orderId, amount } },
  ...extra,
});
const grant = (orderId: string, extra: Partial<EventInput> = {}): EventInput => ({
  type: 'approval.granted',
  agent: 'manager',
  attributes: { tool: 'refund_payment', approver: 'dana', args: { order_id: orderId } },
  ...extra,
});

const REFUND_RULE = `  - id: refund-needs-approval
    severity: high
    kind: preceded_by
    match: { type: tool.call, name: refund_payment, when: "event.attributes.args.amount > 100" }
    prior:
      type: approval.granted
      when: "prior.attributes.tool == event.name && prior.attributes.args.order_id == event.attributes.args.order_id"
      within: 1h
`;

describe('preceded_by', () => {
  const set = rules(REFUND_RULE);

  test('an action with a matching earlier prior passes', () => {
    assert.deepEqual(run(set, events(grant('A-1'), refund('A-1', 250))), []);
  });

  test('an action without a prior is a violation, with a readable message', () => {
    const vs = run(set, events(refund('A-1009', 250)));
    assert.deepEqual(brief(vs), ['refund-needs-approval@1[]']);
    const v = vs[0];
    assert.ok(v);
    assert.equal(v.severity, 'high');
    assert.equal(v.kind, 'preceded_by');
    assert.equal(v.scope, 'trace');
    assert.equal(v.traceId, T1);
    assert.equal(v.sessionId, null);
    assert.equal(v.agent, 'support-agent');
    assert.equal(v.policySetHash, set.hash);
    assert.equal(
      v.message,
      'refund_payment(order_id=A-1009, amount=250) ran with no prior approval.granted within 1h in trace 4bf92f35…',
    );
  });

  test('an approval recorded after the action does not count (out-of-order arrival)', () => {
    assert.deepEqual(brief(run(set, events(refund('A-1', 250), grant('A-1')))), ['refund-needs-approval@1[]']);
  });

  test('earlier means lower seq, whatever the clocks say', () => {
    const evs = events(
      refund('A-1', 250, { time: '2026-11-25T10:05:00Z' }),
      grant('A-1', { time: '2026-11-25T10:00:00Z' }),
      refund('A-1', 250, { time: '2026-11-25T09:59:00Z' }),
    );
    // The second refund's approval is earlier in the ledger, though its clock is later.
    assert.deepEqual(brief(run(set, evs)), ['refund-needs-approval@1[]']);
  });

  test('within: prior.time >= event.time - within, boundary included', () => {
    const at = (t: string) => ({ time: `2026-11-25T${t}Z` });
    const check = (grantTime: string) => run(set, events(grant('A-1', at(grantTime)), refund('A-1', 250, at('10:00:00'))));
    assert.deepEqual(check('09:00:00'), []);
    assert.deepEqual(check('09:30:00.000'), []);
    assert.deepEqual(brief(check('08:59:59.999')), ['refund-needs-approval@2[]']);
  });

  test('the prior when relates both events', () => {
    assert.deepEqual(brief(run(set, events(grant('A-2'), refund('A-1', 250)))), ['refund-needs-approval@2[]']);
    const otherTool = grant('A-1', { attributes: { tool: 'issue_voucher', args: { order_id: 'A-1' } } });
    assert.deepEqual(brief(run(set, events(otherTool, refund('A-1', 250)))), ['refund-needs-approval@2[]']);
  });

  test('static filters of the prior: a non-grant with the same attributes does not count', () => {
    const requested = grant('A-1', { type: 'approval.requested' });
    assert.deepEqual(brief(run(set, events(requested, refund('A-1', 250)))), ['refund-needs-approval@2[]']);
  });

  test('match when: int and double amounts, and the boundary', () => {
    assert.deepEqual(brief(run(set, events(refund('A-1', 250), refund('A-2', 250.5), refund('A-3', 100), refund('A-4', 100.01)))), [
      'refund-needs-approval@1[]',
      'refund-needs-approval@2[]',
      'refund-needs-approval@4[]',
    ]);
  });

  test('the scope is the trace', () => {
    assert.deepEqual(brief(run(set, events(grant('A-1', { trace_id: T2 }), refund('A-1', 250)))), [
      'refund-needs-approval@2[]',
    ]);
  });

  test('an event can be both a match and a candidate prior, but not its own prior', () => {
    const self = rules(`  - id: after-start
    severity: low
    kind: preceded_by
    match: { type: run.started }
    prior: { type: run.started }
`);
    assert.deepEqual(brief(run(self, events({ type: 'run.started' }, { type: 'run.started' }))), ['after-start@1[]']);
  });
});

describe('not_preceded_by', () => {
  const set = rules(`  - id: no-retry-after-block
    severity: critical
    kind: not_preceded_by
    match: { type: tool.call }
    prior: { type: action.blocked, when: "prior.attributes.tool == event.name" }
`);
  const blocked = (tool: string, extra: Partial<EventInput> = {}): EventInput => ({
    type: 'action.blocked',
    attributes: { tool },
    ...extra,
  });

  test('fires with every matching prior as related', () => {
    const vs = run(set, events(blocked('refund_payment'), blocked('other'), blocked('refund_payment'), refund('A-1', 5)));
    assert.deepEqual(brief(vs), ['no-retry-after-block@4[1,3]']);
    assert.equal(vs[0]?.message, 'refund_payment(order_id=A-1, amount=5) ran after action.blocked (seqs 1, 3) in trace 4bf92f35…');
  });

  test('passes without a matching prior, and for priors recorded later', () => {
    assert.deepEqual(run(set, events(blocked('other'), refund('A-1', 5))), []);
    assert.deepEqual(run(set, events(refund('A-1', 5), blocked('refund_payment'))), []);
  });

  test('fires on every later match, not once', () => {
    const vs = run(set, events(blocked('refund_payment'), refund('A-1', 5), refund('A-1', 5)));
    assert.deepEqual(brief(vs), ['no-retry-after-block@2[1]', 'no-retry-after-block@3[1]']);
  });

  test('within limits which priors count', () => {
    const windowed = rules(`  - id: cool-down
    severity: low
    kind: not_preceded_by
    match: { type: tool.call }
    prior: { type: action.blocked, within: 15m }
`);
    const evs = events(
      blocked('x', { time: '2026-11-25T09:00:00Z' }),
      blocked('x', { time: '2026-11-25T09:50:00Z' }),
      refund('A-1', 5, { time: '2026-11-25T10:00:00Z' }),
      refund('A-1', 5, { time: '2026-11-25T10:20:00Z' }),
    );
    assert.deepEqual(brief(run(windowed, evs)), ['cool-down@3[2]']);
  });
});

describe('max_count', () => {
  const set = rules(`  - id: at-most-three-retries
    severity: medium
    kind: max_count
    match: { type: retry }
    max: 3
`);
  const retries = (n: number, extra: Partial<EventInput> = {}) => Array.from({ length: n }, () => ({ type: 'retry', ...extra }));

  test('max matches are fine', () => {
    assert.deepEqual(run(set, events(...retries(3))), []);
  });

  test('raised exactly once, when the count first exceeds max', () => {
    const vs = run(set, events(...retries(2), { type: 'model.call' }, ...retries(6)));
    assert.deepEqual(brief(vs), ['at-most-three-retries@5[1,2,4]']);
    assert.equal(vs[0]?.message, 'retry #4 in trace 4bf92f35… exceeds the maximum of 3');
  });

  test('counted per scope', () => {
    assert.deepEqual(run(set, events(...retries(3), ...retries(3, { trace_id: T2 }))), []);
    assert.deepEqual(brief(run(set, events(...retries(3), ...retries(3, { trace_id: T2 }), { type: 'retry' }))), [
      'at-most-three-retries@7[1,2,3]',
    ]);
  });

  test('max: 0 raises on the first match', () => {
    const zero = rules('  - { id: none, severity: low, kind: max_count, match: { type: retry }, max: 0 }\n');
    assert.deepEqual(brief(run(zero, events(...retries(2)))), ['none@1[]']);
  });
});

describe('forbidden', () => {
  const set = rules(`  - id: support-agent-never-runs-shell
    severity: critical
    kind: forbidden
    match: { type: tool.call, agent: support-agent, name: [run_shell, delete_customer] }
  - id: escalation-only-to-listed-agents
    severity: high
    kind: forbidden
    match: { type: handoff, when: '!(event.attributes.target_agent in ["billing-agent", "human"])' }
`);

  test('every match is a violation', () => {
    const shell: EventInput = { type: 'tool.call', name: 'run_shell', attributes: { args: { cmd: 'ls' } } };
    const vs = run(set, events(shell, shell, { type: 'tool.call', name: 'delete_customer' }));
    assert.deepEqual(brief(vs), [
      'support-agent-never-runs-shell@1[]',
      'support-agent-never-runs-shell@2[]',
      'support-agent-never-runs-shell@3[]',
    ]);
    assert.equal(vs[0]?.message, 'run_shell(cmd=ls) by support-agent is forbidden');
    assert.equal(vs[2]?.message, 'tool.call delete_customer by support-agent is forbidden');
  });

  test('non-matching agent, name or when', () => {
    const evs = events(
      { type: 'tool.call', name: 'run_shell', agent: 'ops-agent' },
      { type: 'tool.call', name: 'lookup_order' },
      { type: 'tool.result', name: 'run_shell' },
      { type: 'handoff', attributes: { target_agent: 'human' } },
    );
    assert.deepEqual(run(set, evs), []);
  });

  test('CEL list membership in when', () => {
    assert.deepEqual(brief(run(set, events({ type: 'handoff', attributes: { target_agent: 'shady' } }))), [
      'escalation-only-to-listed-agents@1[]',
    ]);
  });
});

describe('session scope', () => {
  const set = rules(`  - id: no-refund-after-denial
    severity: critical
    kind: not_preceded_by
    scope: session
    match: { type: tool.call, name: refund_payment }
    prior: { type: approval.denied, when: "prior.attributes.args.order_id == event.attributes.args.order_id" }
  - id: two-handoffs-per-session
    severity: low
    kind: max_count
    scope: session
    match: { type: handoff }
    max: 2
`);
  const deny = (orderId: string, extra: Partial<EventInput> = {}): EventInput => ({
    type: 'approval.denied',
    attributes: { args: { order_id: orderId } },
    ...extra,
  });

  test('looks across the traces of a session', () => {
    const evs = events(
      deny('A-1', { session_id: 'conv-1', trace_id: T1 }),
      refund('A-1', 50, { session_id: 'conv-1', trace_id: T2 }),
    );
    const vs = run(set, evs);
    assert.deepEqual(brief(vs), ['no-refund-after-denial@2[1]']);
    assert.equal(vs[0]?.scope, 'session');
    assert.equal(vs[0]?.sessionId, 'conv-1');
    assert.equal(vs[0]?.traceId, T2);
    assert.match(vs[0]?.message ?? '', /in session conv-1$/);
  });

  test('other sessions and events without a session are not in scope', () => {
    assert.deepEqual(run(set, events(deny('A-1', { session_id: 'conv-2' }), refund('A-1', 50, { session_id: 'conv-1' }))), []);
    assert.deepEqual(run(set, events(deny('A-1'), refund('A-1', 50))), []);
    assert.deepEqual(run(set, events(deny('A-1', { session_id: 'conv-1' }), refund('A-1', 50))), []);
  });

  test('max_count per session across traces', () => {
    const h = (trace: string): EventInput => ({ type: 'handoff', session_id: 's', trace_id: trace });
    assert.deepEqual(brief(run(set, events(h(T1), h(T2), h(T1), h(T2)))), ['two-handoffs-per-session@3[1,2]']);
  });
});

describe('CEL run-time errors', () => {
  const set = rules(`${REFUND_RULE}  - id: typed
    severity: low
    kind: forbidden
    match: { when: "event.attributes.count + 1 > 2" }
`);

  test('count as no match, are recorded, and never throw', () => {
    const engine = new PolicyEngine(set);
    const evs = events(
      { type: 'tool.call', name: 'refund_payment', attributes: {} },
      { type: 'tool.call', name: 'refund_payment', attributes: { args: { amount: 'lots' } } },
      { type: 'retry', attributes: { count: 5 } },
      { type: 'retry', attributes: { count: 2.5 } },
    );
    const vs = run(set, evs, engine);
    assert.deepEqual(brief(vs), ['typed@3[]']);
    const errors = engine.takeErrors();
    assert.deepEqual(
      errors.map((e) => [e.ruleId, e.seq, e.expression]),
      [
        ['refund-needs-approval', 1, 'match.when'],
        ['typed', 1, 'match.when'],
        ['refund-needs-approval', 2, 'match.when'],
        ['typed', 2, 'match.when'],
        ['typed', 4, 'match.when'],
      ],
    );
    assert.match(errors[0]?.message ?? '', /No such key: args/);
    assert.match(errors[4]?.message ?? '', /no such overload/);
    assert.deepEqual(engine.takeErrors(), [], 'taking clears the buffer');
  });

  test('an erroring prior when counts as no prior, recorded once per event and rule', () => {
    const engine = new PolicyEngine(set);
    const badGrant: EventInput = { type: 'approval.granted', attributes: { tool: 'refund_payment' } };
    const vs = run(set, events(badGrant, badGrant, refund('A-1', 250)), engine);
    assert.deepEqual(brief(vs), ['refund-needs-approval@3[]']);
    const errors = engine.takeErrors();
    assert.deepEqual(
      errors.map((e) => [e.ruleId, e.seq, e.expression, e.priorSeq]),
      [
        ['typed', 1, 'match.when', undefined],
        ['typed', 2, 'match.when', undefined],
        ['refund-needs-approval', 3, 'prior.when', 2],
        ['typed', 3, 'match.when', undefined],
      ],
    );
  });

  test('a non-bool result is an error, not a match', () => {
    const dyn = rules('  - { id: d, severity: low, kind: forbidden, match: { when: "event.attributes.flag" } }\n');
    const engine = new PolicyEngine(dyn);
    const vs = run(dyn, events({ type: 'retry', attributes: { flag: 'yes' } }, { type: 'retry', attributes: { flag: true } }), engine);
    assert.deepEqual(brief(vs), ['d@2[]']);
    assert.match(engine.takeErrors()[0]?.message ?? '', /not a bool/);
  });

  test('the error buffer is bounded', () => {
    const engine = new PolicyEngine(set, { maxBufferedErrors: 3 });
    run(set, events(...Array.from({ length: 10 }, () => ({ type: 'retry' }))), engine);
    const errors = engine.takeErrors();
    assert.deepEqual(
      errors.map((e) => e.seq),
      [8, 9, 10],
    );
  });

  test('attributes named like Object properties are plain data', () => {
    const proto = rules('  - { id: p, severity: low, kind: forbidden, match: { when: "has(event.attributes.constructor)" } }\n');
    const evs = events({ type: 'retry' }, { type: 'retry', attributes: JSON.parse('{"constructor": 1, "__proto__": 2}') as Record<string, unknown> });
    assert.deepEqual(brief(run(proto, evs)), ['p@2[]']);
  });
});

describe('CEL sees the whole event', () => {
  test('every DESIGN.md field plus seq, absent optional fields as null', () => {
    const set = rules(`  - id: fields
    severity: low
    kind: forbidden
    match:
      when: >-
        event.seq == 1 && event.id.startsWith("00000000") && event.trace_id == "${T1}" &&
        event.span_id.size() == 16 && event.parent_span_id == null && event.session_id == null &&
        event.type == "retry" && event.name == null && event.agent == "support-agent" &&
        event.time.startsWith("2026-") && event.duration_ms == null && event.status == null &&
        event.attributes == {}
`);
    const engine = new PolicyEngine(set);
    assert.deepEqual(brief(run(set, events({ type: 'retry' }), engine)), ['fields@1[]']);
    assert.deepEqual(engine.takeErrors(), []);
  });

  test('optional chaining for missing attributes', () => {
    const set = rules(
      '  - { id: o, severity: low, kind: forbidden, match: { when: "event.attributes.?args.?amount.orValue(0) > 100" } }\n',
    );
    const engine = new PolicyEngine(set);
    const vs = run(set, events({ type: 'retry' }, { type: 'retry', attributes: { args: { amount: 101 } } }), engine);
    assert.deepEqual(brief(vs), ['o@2[]']);
    assert.deepEqual(engine.takeErrors(), []);
  });
});

describe('messages', () => {
  test('long and many arguments are truncated', () => {
    const set = rules('  - { id: f, severity: low, kind: forbidden, match: { type: tool.call } }\n');
    const args = { a: 'x'.repeat(100), b: { nested: [1, 2, 3] }, c: 3, d: 4, e: 5, f: 6, g: 7 };
    const [v] = run(set, events({ type: 'tool.call', name: 'big', attributes: { args } }));
    assert.equal(v?.message, `big(a=${'x'.repeat(31)}…, b={"nested":[1,2,3]}, c=3, d=4, e=5, f=6, …) by support-agent is forbidden`);
  });
});

describe('scopes, eviction and replay', () => {
  const set = rules(`${REFUND_RULE}  - { id: retries, severity: low, kind: max_count, match: { type: retry }, max: 1 }
  - id: session-denial
    severity: low
    kind: not_preceded_by
    scope: session
    match: { type: tool.call }
    prior: { type: approval.denied }
`);

  test('scopeKeys lists the scopes the set uses', () => {
    const engine = new PolicyEngine(set);
    const [withSession, without] = events({ type: 'retry', session_id: 's-1' }, { type: 'retry' });
    assert.ok(withSession && without);
    assert.deepEqual(engine.scopeKeys(withSession), [`trace:${T1}`, 'session:s-1']);
    assert.deepEqual(engine.scopeKeys(without), [`trace:${T1}`]);
    assert.deepEqual(parseScopeKey('session:s:1'), { scope: 'session', id: 's:1' });
    assert.throws(() => parseScopeKey('tenant:x'), RangeError);
    const onlyForbidden = new PolicyEngine(rules('  - { id: f, severity: low, kind: forbidden, match: {} }\n'));
    assert.deepEqual(onlyForbidden.scopeKeys(withSession), []);
  });

  test('the number of scopes held is bounded (LRU)', () => {
    const engine = new PolicyEngine(set, { maxScopes: 3 });
    const traces = Array.from({ length: 10 }, (_, i) => i.toString(16).padStart(32, '0'));
    run(set, events(...traces.map((t) => ({ type: 'retry', trace_id: t }))), engine);
    assert.equal(engine.scopeCount, 3);
    assert.ok(engine.hasScope(`trace:${traces[9]}`));
    assert.ok(!engine.hasScope(`trace:${traces[0]}`));
    assert.throws(() => new PolicyEngine(set, { maxScopes: 1 }), RangeError);
  });

  test('a dropped scope rebuilt by replay gives the same result', () => {
    const evs = events(grant('A-1'), { type: 'retry' }, refund('A-1', 250), { type: 'retry' });
    const engine = new PolicyEngine(set);
    run(set, evs.slice(0, 3), engine);
    assert.ok(engine.dropScope(`trace:${T1}`));
    const last = evs[3];
    assert.ok(last);
    assert.deepEqual(engine.missingScopes(last), [`trace:${T1}`]);
    for (const e of evs.slice(0, 3)) engine.replay(e, [`trace:${T1}`]);
    assert.deepEqual(brief(engine.evaluate(last)), ['retries@4[2]']);
  });

  test('without replay, a dropped scope forgets its history (why the contract exists)', () => {
    const evs = events({ type: 'retry' }, { type: 'retry' });
    const engine = new PolicyEngine(set);
    run(set, evs.slice(0, 1), engine);
    engine.dropScope(`trace:${T1}`);
    assert.deepEqual(run(set, evs.slice(1), engine), []);
  });

  test('replay reports nothing, and only touches the listed scopes', () => {
    const engine = new PolicyEngine(set);
    const evs = events(
      { type: 'approval.denied', session_id: 's' },
      { type: 'retry', session_id: 's' },
      { type: 'retry', session_id: 's' },
      { type: 'tool.call', name: 'x', session_id: 's' },
    );
    for (const e of evs.slice(0, 3)) engine.replay(e, [`trace:${T1}`]);
    assert.deepEqual(engine.takeErrors(), []);
    assert.ok(!engine.hasScope('session:s'), 'the session was not listed');
    const last = evs[3];
    assert.ok(last);
    assert.deepEqual(engine.missingScopes(last), ['session:s']);
    // The session scope, rebuilt from its own events:
    for (const e of evs.slice(0, 3)) engine.replay(e, ['session:s']);
    assert.deepEqual(brief(engine.evaluate(last)), ['session-denial@4[1]']);
  });

  test('an event already applied to a scope is ignored there (re-delivery)', () => {
    const engine = new PolicyEngine(set);
    const [r1, r2] = events({ type: 'retry' }, { type: 'retry' });
    assert.ok(r1 && r2);
    engine.evaluate(r1);
    assert.deepEqual(engine.evaluate(r1), []);
    assert.deepEqual(brief(engine.evaluate(r2)), ['retries@2[1]']);
    assert.deepEqual(engine.evaluate(r2), []);
  });

  test('missingScopes keeps held scopes from being evicted while a sibling is rebuilt', () => {
    const engine = new PolicyEngine(set, { maxScopes: 2 });
    const evs = events(
      { type: 'approval.denied', session_id: 's', trace_id: T1 },
      { type: 'retry', trace_id: T2 },
      { type: 'tool.call', name: 'x', session_id: 's', trace_id: T2 },
    );
    const [deny, retry, call] = evs;
    assert.ok(deny && retry && call);
    engine.evaluate(deny); // holds trace:T1, session:s
    engine.evaluate(retry); // evicts the least recent: trace:T1 (session:s was touched after it)
    assert.deepEqual(engine.missingScopes(call), []);
    assert.deepEqual(brief(engine.evaluate(call)), ['session-denial@3[1]']);
  });

  test('candidate priors are bounded per rule and scope', () => {
    const engine = new PolicyEngine(set, { maxCandidatesPerRule: 2 });
    const evs = events(
      { type: 'approval.denied', session_id: 's' },
      { type: 'approval.denied', session_id: 's' },
      { type: 'approval.denied', session_id: 's' },
      { type: 'tool.call', name: 'x', session_id: 's' },
    );
    assert.deepEqual(brief(run(set, evs, engine)), ['session-denial@4[2,3]']);
  });
});
