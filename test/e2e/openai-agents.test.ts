import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, Runner, setTraceProcessors, setTracingDisabled, tool, withCustomSpan } from '@openai/agents';
import { AgentLedger } from '../../src/sdk';
import { LedgerTracingProcessor } from '../../src/sdk/openai-agents';
import { startTestApp, type TestApp } from '../support/app';
import { asSuperuser } from '../support/db';
import { producerKey, registerKey } from '../support/factories';
import { call } from '../support/http';
import { eventually, storedEvents, type StoredEvent } from '../support/ledger-events';
import { ScriptedModel } from '../support/scripted-model';

/**
 * The real @openai/agents runner with a scripted model (no network) and our
 * tracing processor: a refund tool that needs approval is interrupted,
 * approved by a person and resumed; the ledger holds one coherent trace, and
 * the sample policy set raises refund-needs-approval only for a refund that
 * ran without one.
 */

const SAMPLE = resolve(__dirname, '..', '..', '..', 'policies', 'support-agent.yaml');
const TENANT = 'acme';

function refundTool(needsApproval: boolean) {
  return tool({
    name: 'refund_payment',
    description: 'Refund an order',
    parameters: {
      type: 'object',
      properties: { order_id: { type: 'string' }, amount: { type: 'number' } },
      required: ['order_id', 'amount'],
      additionalProperties: false,
    },
    strict: true,
    needsApproval,
    execute: async (input) => ({ refunded: true, ...(input as object) }),
  });
}

interface Violation {
  rule_id: string;
  trace_id: string;
}

describe('OpenAI Agents SDK processor (real runner, scripted model)', () => {
  let t: TestApp;
  let dir: string;
  let ledger: AgentLedger;
  let processor: LedgerTracingProcessor;
  let reader: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agent-ledger-policies-'));
    copyFileSync(SAMPLE, join(dir, 'support-agent.yaml'));
    t = await startTestApp({ POLICIES_DIR: dir, POLICY_EVALUATOR: 'true', POLICY_POLL_MS: '200' });
    const key = await producerKey();
    await registerKey(t.url, await t.token(TENANT, 'admin'), key, 'support-bot');
    reader = await t.token(TENANT, 'audit:read');
    ledger = new AgentLedger({ baseUrl: t.url, token: await t.token(TENANT, 'events:write'), key, flushIntervalMs: 50 });
    processor = new LedgerTracingProcessor(ledger);
    // the SDK disables tracing when NODE_ENV is "test"; this suite is about tracing
    setTracingDisabled(false);
    setTraceProcessors([processor]);
  });
  after(async () => {
    setTraceProcessors([]);
    await ledger.shutdown();
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const eventsOf = async (trace: string) => (await storedEvents(t.db, TENANT)).filter((e) => e.event.trace_id === trace);
  const violations = async (trace: string) =>
    (await call<{ violations: Violation[] }>(t.url, 'GET', `/v1/violations?trace_id=${trace}`, { token: reader })).body.violations;
  /** Waits until the policy evaluator has read the whole ledger. */
  const settled = () =>
    eventually(
      () =>
        asSuperuser(t.db, async (c) => {
          const cur = await c.query<{ seq: string }>(`SELECT seq FROM policy_cursors WHERE tenant_id = $1`, [TENANT]);
          const head = await c.query<{ n: string }>(`SELECT coalesce(max(seq), 0) AS n FROM ledger_entries WHERE tenant_id = $1`, [TENANT]);
          return cur.rows[0] && Number(cur.rows[0].seq) >= Number(head.rows[0].n) ? true : undefined;
        }),
      15_000,
      'the policy evaluator',
    );

  let approvedTrace = '';

  it('an interrupted, approved and resumed run is one trace with the approval before the tool call', async () => {
    const model = new ScriptedModel('refund_payment', { order_id: 'A-1009', amount: 250 }, 'Refunded.');
    const agent = new Agent({ name: 'support-agent', instructions: 'Refund when asked.', model, tools: [refundTool(true)] });
    const runner = new Runner({ groupId: 'conv-approved', workflowName: 'support' });

    const first = await runner.run(agent, 'Please refund order A-1009 (250 EUR)');
    assert.equal(first.interruptions.length, 1);
    assert.equal(first.interruptions[0].name, 'refund_payment');
    processor.recordInterruptions(first);
    processor.approve(first.state, first.interruptions[0], { approver: 'maria@shop.example', role: 'manager' });
    const second = await runner.run(agent, first.state);
    assert.equal(second.finalOutput, 'Refunded.');
    await ledger.flush();

    const all = await storedEvents(t.db, TENANT);
    approvedTrace = all.find((e) => e.event.type === 'approval.requested')!.event.trace_id;
    const evs = await eventsOf(approvedTrace);
    const types = evs.map((e) => e.event.type);
    const order = ['run.started', 'approval.requested', 'run.interrupted', 'approval.granted', 'run.resumed', 'tool.call', 'tool.result', 'run.completed'];
    const seen = types.filter((x) => order.includes(x));
    assert.deepEqual(seen, order, types.join(', '));
    assert.equal(types.filter((x) => x === 'model.call').length, 2, 'one model.call per scripted turn');
    assert.ok(evs.every((e) => e.event.session_id === 'conv-approved'), 'the trace groupId is the session');
    assert.equal(all.filter((e) => e.event.type === 'tool.call').length, 1, 'nothing outside the trace');

    const by = (type: string) => evs.find((e) => e.event.type === type)!;
    const run = by('run.started');
    assert.equal(run.event.agent, 'support-agent');
    const granted = by('approval.granted');
    const call_ = by('tool.call');
    assert.equal(granted.event.span_id, by('approval.requested').event.span_id);
    assert.equal(granted.event.parent_span_id, run.event.span_id);
    assert.deepEqual(granted.event.attributes?.args, { order_id: 'A-1009', amount: 250 });
    assert.equal(granted.event.attributes?.approver, 'maria@shop.example');
    assert.deepEqual(call_.event.attributes?.args, { order_id: 'A-1009', amount: 250 });
    assert.equal(call_.event.span_id, by('tool.result').event.span_id);
    assert.deepEqual(by('tool.result').event.attributes?.result, { refunded: true, order_id: 'A-1009', amount: 250 });
    // the SDK ends the agent span at the interruption and opens a new one on resume: run.resumed opens it, run.completed closes it
    assert.equal(by('run.resumed').event.span_id, by('run.completed').event.span_id);
    assert.equal(by('run.interrupted').event.span_id, run.event.span_id);
    assert.equal(types.filter((x) => x === 'run.started').length, 1);
    assert.equal(types.filter((x) => x === 'run.completed').length, 1, 'the interrupted agent span did not complete');
    assert.equal(by('model.call').event.name, 'scripted-1');
    assert.ok(granted.seq < call_.seq, 'the ledger order puts the approval first');
    assertTree(evs);
  });

  it('a refund that ran without approval raises refund-needs-approval; the approved one does not', async () => {
    const model = new ScriptedModel('refund_payment', { order_id: 'A-2002', amount: 400 });
    const agent = new Agent({ name: 'support-agent', instructions: 'Refund when asked.', model, tools: [refundTool(false)] });
    const res = await new Runner({ groupId: 'conv-unapproved' }).run(agent, 'Refund A-2002');
    assert.equal(res.interruptions.length, 0);
    await ledger.flush();
    const unapproved = (await storedEvents(t.db, TENANT)).find((e) => e.event.type === 'tool.call' && e.event.session_id === 'conv-unapproved')!;
    await settled();
    const v = await eventually(async () => {
      const list = await violations(unapproved.event.trace_id);
      return list.length ? list : undefined;
    });
    assert.deepEqual(v.map((x) => x.rule_id), ['refund-needs-approval']);
    assert.deepEqual(await violations(approvedTrace), []);
  });

  it('handoff, guardrail and custom spans map to handoff, validation and custom.agents.custom in the same tree', async () => {
    const billing = new Agent({ name: 'billing-agent', instructions: 'Answer billing questions.', model: new ScriptedModel('unused', {}, 'Invoice sent.') });
    const support = new Agent({
      name: 'support-agent',
      instructions: 'Hand billing questions over.',
      model: new ScriptedModel('transfer_to_billing_agent', {}),
      handoffs: [billing],
      inputGuardrails: [
        {
          name: 'no-pii',
          execute: async () =>
            withCustomSpan(async () => ({ tripwireTriggered: false, outputInfo: { pii: false } }), { data: { name: 'pii-scan', data: { scanned: 1 } } }),
        },
      ],
    });
    const res = await new Runner({ groupId: 'conv-handoff' }).run(support, 'I need my invoice');
    assert.equal(res.finalOutput, 'Invoice sent.');
    await processor.forceFlush();
    const evs = (await storedEvents(t.db, TENANT)).filter((e) => e.event.session_id === 'conv-handoff');
    const types = evs.map((e) => e.event.type);
    const one = (type: string) => {
      const found = evs.filter((e) => e.event.type === type);
      assert.equal(found.length, 1, `${type} in ${types.join(', ')}`);
      return found[0].event;
    };
    const handoff = one('handoff');
    assert.deepEqual([handoff.agent, handoff.attributes?.from_agent, handoff.attributes?.target_agent], ['support-agent', 'support-agent', 'billing-agent']);
    const validation = one('validation');
    assert.equal(validation.name, 'no-pii');
    assert.equal(validation.attributes?.passed, true);
    assert.equal(validation.agent, 'support-agent');
    const custom = one('custom.agents.custom');
    assert.equal(custom.name, 'pii-scan');
    assert.deepEqual(custom.attributes?.data, { scanned: 1 });
    assert.equal(custom.parent_span_id, validation.span_id, 'the custom span nests under the guardrail');
    const runs = evs.filter((e) => e.event.type === 'run.started').map((e) => e.event.agent);
    assert.deepEqual(runs.sort(), ['billing-agent', 'support-agent']);
    assert.deepEqual(evs.filter((e) => e.event.type === 'run.completed').map((e) => e.event.agent).sort(), ['billing-agent', 'support-agent']);
    assert.equal(new Set(evs.map((e) => e.event.trace_id)).size, 1);
    assertTree(evs);
  });
});

/** Every parent span id names a span of the same trace. */
function assertTree(evs: StoredEvent[]): void {
  const spans = new Set(evs.map((e) => e.event.span_id));
  for (const e of evs) if (e.event.parent_span_id) assert.ok(spans.has(e.event.parent_span_id), `${e.event.type}: parent ${e.event.parent_span_id} is in the trace`);
}
