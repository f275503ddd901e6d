// An OpenAI Agents SDK agent whose refund tool needs a human approval, traced into agent-ledger
// by LedgerTracingProcessor. The model is scripted so the example runs without an API key;
// with a real model (`model: 'gpt-4.1'` and OPENAI_API_KEY) nothing else changes.
//
//   npm run build
//   export LEDGER_TOKEN=$(npm run -s token -- --tenant acme --scope "events:write admin")
//   node examples/openai-agent-approval.mjs            # a manager approves
//   node examples/openai-agent-approval.mjs --deny     # a manager rejects
//
// LEDGER_URL, LEDGER_KEY_FILE as in sdk-direct.mjs. Prints {trace_id, session_id, output}.
import { Agent, Runner, Usage, setTraceProcessors, setTracingDisabled, tool, withGenerationSpan } from '@openai/agents';
import { AgentLedger, loadOrCreateProducerKey } from 'agent-ledger/sdk';
import { LedgerTracingProcessor, toTraceId } from 'agent-ledger/openai-agents';

const baseUrl = process.env.LEDGER_URL ?? 'http://127.0.0.1:3000';
const token = process.env.LEDGER_TOKEN;
if (!token) {
  console.error('set LEDGER_TOKEN (a token with events:write, and admin to register a new key)');
  process.exit(2);
}
const deny = process.argv.includes('--deny');
const { key, publicJwk, created } = await loadOrCreateProducerKey(process.env.LEDGER_KEY_FILE ?? 'producer-key.json');
const ledger = new AgentLedger({ baseUrl, token, key });
if (created) await ledger.registerKey('openai-agents-example', publicJwk);

// the two lines that connect the Agents SDK to the ledger
const processor = new LedgerTracingProcessor(ledger);
setTraceProcessors([processor]);
setTracingDisabled(false);

/** Stands in for an LLM: first asks for the refund, then answers with the tool's result. */
const scriptedModel = {
  async getResponse(request) {
    const input = Array.isArray(request.input) ? request.input : [];
    const result = input.find((i) => i.type === 'function_call_result');
    return withGenerationSpan(
      async () => ({
        usage: new Usage({ requests: 1, inputTokens: 60, outputTokens: 12, totalTokens: 72 }),
        output: result
          ? [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: `Refund: ${JSON.stringify(result.output)}` }] }]
          : [{ type: 'function_call', callId: 'call_refund_1', name: 'refund_payment', arguments: '{"order_id":"A-1009","amount":250}', status: 'completed' }],
      }),
      { data: { model: 'scripted' } },
    );
  },
  async *getStreamedResponse() {
    throw new Error('not streamed');
  },
};

const refund = tool({
  name: 'refund_payment',
  description: 'Refund an order',
  parameters: { type: 'object', properties: { order_id: { type: 'string' }, amount: { type: 'number' } }, required: ['order_id', 'amount'], additionalProperties: false },
  strict: true,
  needsApproval: true,
  execute: async ({ order_id, amount }) => ({ refunded: true, order_id, amount }),
});
const agent = new Agent({ name: 'support-agent', instructions: 'Help with refunds.', model: scriptedModel, tools: [refund] });

const session = `conv-${Date.now().toString(36)}`;
const runner = new Runner({ groupId: session, workflowName: 'support' });
let result = await runner.run(agent, 'Please refund order A-1009 (250 EUR)');
const traceId = toTraceId(result.state._trace.traceId);
while (result.interruptions.length > 0) {
  processor.recordInterruptions(result);
  for (const item of result.interruptions) {
    const by = { approver: 'maria@shop.example', role: 'manager' };
    if (deny) processor.reject(result.state, item, { ...by, reason: 'not eligible' });
    else processor.approve(result.state, item, by);
  }
  result = await runner.run(agent, result.state);
}
await processor.shutdown(); // flushes the ledger client
console.log(JSON.stringify({ trace_id: traceId, session_id: session, output: result.finalOutput }));
