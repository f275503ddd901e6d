// The agent-ledger SDK used directly: a support agent's run with a human approval.
//
//   npm run build
//   export LEDGER_TOKEN=$(npm run -s token -- --tenant acme --scope "events:write admin")
//   node examples/sdk-direct.mjs
//
// LEDGER_URL (default http://127.0.0.1:3000), LEDGER_KEY_FILE (default ./producer-key.json:
// created and registered on first use, which needs the admin scope; or make it with
// `npm run -s cli -- keygen` and `register-key`). Prints {trace_id, session_id, events}.
import { AgentLedger, loadOrCreateProducerKey } from 'agent-ledger/sdk';

const baseUrl = process.env.LEDGER_URL ?? 'http://127.0.0.1:3000';
const token = process.env.LEDGER_TOKEN;
if (!token) {
  console.error('set LEDGER_TOKEN (a token with events:write, and admin to register a new key)');
  process.exit(2);
}
const { key, publicJwk, created } = await loadOrCreateProducerKey(process.env.LEDGER_KEY_FILE ?? 'producer-key.json');
const ledger = new AgentLedger({ baseUrl, token, key });
if (created) await ledger.registerKey('sdk-direct-example', publicJwk);

const session = `conv-${Date.now().toString(36)}`;
const run = ledger.startRun({ agent: 'support-agent', session_id: session, attributes: { input: 'Please refund order A-1009' } });
run.modelCall('gpt-4.1', { input_tokens: 412, output_tokens: 38, duration_ms: 930 });
const lookup = run.toolCall('lookup_order', { order_id: 'A-1009' });
lookup.result({ order_id: 'A-1009', total: 250, status: 'delivered' });

// a refund above 100 needs a manager: ask, stop, and go on once approved
const args = { order_id: 'A-1009', amount: 250 };
const approval = run.approvalRequested('refund_payment', args);
run.interrupted('waiting for a manager');
approval.granted({ approver: 'maria@shop.example', role: 'manager' });
run.resumed();
run.toolCall('refund_payment', args, { call_id: 'call_refund_1' }).result({ refunded: true });
run.completed('Your refund of 250 EUR is on its way.');

await ledger.shutdown(); // delivers everything still queued
console.log(JSON.stringify({ trace_id: run.trace_id, session_id: session, events: ledger.stats.sent }));
