import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  approvalOutcome,
  loadPolicySet,
  requiresApproval,
  type CompiledRule,
  type LedgerEventForPolicy,
} from '../../src/core/policy';

const T1 = '4bf92f3577b34da6a3ce929d0e0e4736';
const T2 = '0af7651916cd43dd8448eb211c80319c';

const SET = loadPolicySet([
  {
    file: 'p.yaml',
    text: `rules:
  - id: refund-needs-approval
    severity: high
    kind: preceded_by
    match: { type: tool.call, name: refund_payment, when: "event.attributes.args.amount > 100" }
    prior:
      type: approval.granted
      when: "prior.attributes.tool == event.name && prior.attributes.args.order_id == event.attributes.args.order_id"
      within: 1h
  - { id: retries, severity: low, kind: max_count, match: { type: retry }, max: 1 }
`,
  },
]);
const RULE = SET.rules[0] as CompiledRule;

type Input = Partial<LedgerEventForPolicy> & { type: string };
function events(...inputs: Input[]): LedgerEventForPolicy[] {
  return inputs.map((e, i) => ({
    id: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
    trace_id: T1,
    span_id: (i + 1).toString(16).padStart(16, '0'),
    agent: 'support-agent',
    time: new Date(Date.parse('2026-11-25T10:00:00Z') + i * 60_000).toISOString(),
    ...e,
    seq: i + 1,
  }));
}

const refund: Input = { type: 'tool.call', name: 'refund_payment', attributes: { args: { order_id: 'A-1', amount: 250 } } };
const decision = (type: string, approver: unknown, orderId = 'A-1', extra: Partial<Input> = {}): Input => ({
  type,
  agent: 'manager',
  attributes: { tool: 'refund_payment', approver, args: { order_id: orderId } },
  ...extra,
});

function outcomeOfLast(evs: LedgerEventForPolicy[]) {
  const action = evs.at(-1);
  assert.ok(action);
  return approvalOutcome(RULE, action, evs);
}

describe('approval outcome', () => {
  test('approved, naming the approval and the approver', () => {
    const evs = events(decision('approval.granted', 'dana'), decision('approval.granted', { id: 'u-7', role: 'lead' }), refund);
    assert.deepEqual(outcomeOfLast(evs), { status: 'approved', approvalSeq: 2, approver: '{"id":"u-7","role":"lead"}' });
    assert.deepEqual(outcomeOfLast(events(decision('approval.granted', undefined), refund)), {
      status: 'approved',
      approvalSeq: 1,
      approver: null,
    });
  });

  test('denied: a denial that would have matched as a grant', () => {
    assert.deepEqual(outcomeOfLast(events(decision('approval.denied', 'dana'), refund)), {
      status: 'denied',
      denialSeq: 1,
      approver: 'dana',
    });
    assert.deepEqual(outcomeOfLast(events(decision('approval.denied', 'dana', 'A-2'), refund)), { status: 'missing' });
  });

  test('a grant wins over a denial', () => {
    const evs = events(decision('approval.denied', 'dana'), decision('approval.granted', 'lee'), refund);
    assert.equal(outcomeOfLast(evs).status, 'approved');
  });

  test('blocked: an action.blocked for the same tool, before or after', () => {
    const blocked: Input = { type: 'action.blocked', attributes: { tool: 'refund_payment' } };
    assert.deepEqual(outcomeOfLast(events(blocked, refund)), { status: 'blocked', blockedSeq: 1 });
    const evs = events(refund, { type: 'action.blocked', name: 'refund_payment' });
    const action = evs[0];
    assert.ok(action);
    assert.deepEqual(approvalOutcome(RULE, action, evs), { status: 'blocked', blockedSeq: 2 });
    assert.deepEqual(outcomeOfLast(events({ type: 'action.blocked', attributes: { tool: 'run_shell' } }, refund)), {
      status: 'missing',
    });
  });

  test('missing: no prior, a later grant, an expired grant, or one in another trace', () => {
    assert.deepEqual(outcomeOfLast(events(refund)), { status: 'missing' });
    const later = events(refund, decision('approval.granted', 'dana'));
    assert.deepEqual(approvalOutcome(RULE, later[0] as LedgerEventForPolicy, later), { status: 'missing' });
    const expired = events(decision('approval.granted', 'dana', 'A-1', { time: '2026-11-25T08:00:00Z' }), refund);
    assert.deepEqual(outcomeOfLast(expired), { status: 'missing' });
    assert.deepEqual(outcomeOfLast(events(decision('approval.granted', 'dana', 'A-1', { trace_id: T2 }), refund)), {
      status: 'missing',
    });
  });

  test('requiresApproval tells which actions the report lists', () => {
    const [big, small, other] = events(
      refund,
      { type: 'tool.call', name: 'refund_payment', attributes: { args: { order_id: 'A-1', amount: 20 } } },
      { type: 'retry' },
    );
    assert.ok(big && small && other);
    assert.equal(requiresApproval(RULE, big), true);
    assert.equal(requiresApproval(RULE, small), false);
    assert.equal(requiresApproval(RULE, other), false);
    assert.equal(requiresApproval(SET.rules[1] as CompiledRule, other), false, 'only preceded_by rules');
  });

  test('only preceded_by rules have approvals', () => {
    const [e] = events({ type: 'retry' });
    assert.ok(e);
    assert.throws(() => approvalOutcome(SET.rules[1] as CompiledRule, e, [e]), RangeError);
  });
});
