#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { mintToken } from '../auth/token';
import { LedgerApiError, LedgerClient, makeEvent, newSpanId, newTraceId, type EventInput } from '../client/ledger-client';
import { ConfigError, loadEnv } from '../config/config';
import type { TraceEvent } from '../core/event';
import { ensureLocalSecrets } from '../runtime/secrets';

/**
 * `npm run demo`: against a running service, registers a fresh producer key
 * and sends the support-agent scenario of the README, step by step as an
 * agent runtime would, then waits for the policy evaluator and prints the
 * violations the run raised (and the refund's approval outcome).
 */

const USAGE = `usage: npm run demo -- [--url URL] [--token TOKEN] [--tenant T] [--wait SECONDS]

  --url     the service (default $AGENT_LEDGER_URL or http://127.0.0.1:3000)
  --token   a token with "events:write audit:read admin" (default $TOKEN, else one minted
            for --tenant from AUTH_JWT_SECRET or the secret generated in DATA_DIR)
  --tenant  tenant of the minted token (default demo)
  --wait    seconds to wait for the violations (default 10)
`;

const out = (s: string) => process.stdout.write(s + '\n');
const err = (s: string) => process.stderr.write(s + '\n');

interface ViolationView {
  rule_id: string;
  severity: string;
  seq: number;
  related_seqs: number[];
  message: string;
  ledger_seq: number;
}

/** The README scenario: one conversation of the support agent. */
export function supportScenario(): TraceEvent[][] {
  const trace_id = newTraceId();
  const session_id = `conv-${trace_id.slice(0, 8)}`;
  const root = newSpanId();
  const agent = 'support-agent';
  const start = Date.now();
  let step = 0;
  const ev = (input: Omit<EventInput, 'trace_id' | 'agent' | 'session_id'> & Partial<EventInput>): TraceEvent =>
    makeEvent({ trace_id, session_id, agent, parent_span_id: root, time: new Date(start + 100 * step++).toISOString(), ...input });
  const call = (name: string, args: Record<string, unknown>, result: unknown, status: 'ok' | 'error' = 'ok') => {
    const span_id = newSpanId();
    return [
      ev({ span_id, type: 'tool.call', name, attributes: { args } }),
      ev({ span_id, type: 'tool.result', name, status, duration_ms: 40, attributes: status === 'ok' ? { result } : { error: result } }),
    ];
  };
  return [
    // the user's request
    [
      ev({ span_id: root, parent_span_id: null, type: 'run.started', name: agent, attributes: { input: 'I was charged twice for order A-1009. Please refund me.' } }),
      ev({ span_id: newSpanId(), type: 'model.call', name: 'plan', attributes: { model: 'gpt-4.1', usage: { input_tokens: 812, output_tokens: 95 } } }),
    ],
    // knowledge base, customer
    call('search_kb', { query: 'duplicate charge refund policy' }, { articles: ['KB-112 Duplicate charges'] }),
    call('lookup_customer', { email: 'dana@example.com' }, { customer_id: 'C-4411', tier: 'gold' }),
    // a failed order lookup (mistyped id), a retry with another id
    call('lookup_order', { order_id: 'A-1090' }, 'order A-1090 not found', 'error'),
    [
      ev({ span_id: newSpanId(), type: 'retry', name: 'lookup_order', attributes: { attempt: 2, reason: 'order not found, trying A-1009' } }),
      ...call('lookup_order', { order_id: 'A-1009' }, { order_id: 'A-1009', total: 250, charges: 2 }),
    ],
    // the refund, with no approval asked
    call('refund_payment', { order_id: 'A-1009', amount: 250 }, { refund_id: 'R-77', status: 'issued' }),
    // escalation handoff to an agent not on the list
    [
      ev({ span_id: newSpanId(), type: 'handoff', name: 'escalate', attributes: { target_agent: 'tier2-agent', reason: 'customer asks for compensation' } }),
      ev({ span_id: root, parent_span_id: null, type: 'run.completed', name: agent, status: 'ok', duration_ms: 100 * step }),
    ],
  ];
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      tenant: { type: 'string' },
      wait: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const env = loadEnv(process.env);
  const url = values.url ?? process.env.AGENT_LEDGER_URL ?? 'http://127.0.0.1:3000';
  const waitS = Number(values.wait ?? 10);
  if (!Number.isFinite(waitS) || waitS < 0) throw new ConfigError('--wait must be a number of seconds');
  let token = values.token ?? process.env.TOKEN;
  if (!token) {
    const secret = env.AUTH_JWT_SECRET ?? (await ensureLocalSecrets(env.DATA_DIR)).jwtSecret;
    token = await mintToken({
      secret: new TextEncoder().encode(secret),
      tenant: values.tenant ?? 'demo',
      scope: 'events:write audit:read admin',
      sub: 'demo',
      ttlSeconds: 600,
      issuer: env.AUTH_ISSUER,
      audience: env.AUTH_AUDIENCE,
    });
  }

  const { publicKey, privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub);
  const admin = new LedgerClient({ baseUrl: url, token });
  await admin.request('POST', '/v1/keys', { producer: 'support-agent-demo', jwk: { ...pub, kid } });
  err(`registered producer key ${kid}`);

  const producer = new LedgerClient({ baseUrl: url, token, key: { kid, alg: 'EdDSA', privateKey } });
  const steps = supportScenario();
  const trace = steps[0][0].trace_id;
  const seqs = new Map<number, TraceEvent>();
  for (const batch of steps) {
    const receipts = await producer.send(batch);
    receipts.forEach((r, i) => seqs.set(r.seq, batch[i]));
  }
  err(`sent ${seqs.size} events of trace ${trace} (seqs ${Math.min(...seqs.keys())}..${Math.max(...seqs.keys())})`);

  const policies = await admin.request<{ policy_set_hash: string | null; rules: unknown[]; evaluator: boolean }>('GET', '/v1/policies');
  if (!policies.policy_set_hash) err('warning: the service has no policy set loaded');
  if (!policies.evaluator) err('warning: the service does not evaluate policies (POLICY_EVALUATOR=false)');

  // Wait until the count stops changing for a second (or the time is up).
  const deadline = Date.now() + waitS * 1000;
  let violations: ViolationView[] = [];
  let stableSince = Date.now();
  for (;;) {
    const page = await admin.request<{ violations: ViolationView[] }>('GET', `/v1/violations?trace_id=${trace}&limit=500`);
    if (page.violations.length !== violations.length) stableSince = Date.now();
    violations = page.violations;
    if ((violations.length > 0 && Date.now() - stableSince >= 1000) || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }

  out(`\npolicy set ${policies.policy_set_hash ?? '(none)'}: ${violations.length} violation${violations.length === 1 ? '' : 's'} in trace ${trace}\n`);
  for (const v of [...violations].sort((a, b) => a.seq - b.seq)) {
    const e = seqs.get(v.seq);
    out(`  [${v.severity.toUpperCase()}] ${v.rule_id}  at seq ${v.seq} (${e?.type ?? '?'} ${e?.name ?? ''})  entry seq ${v.ledger_seq}`);
    out(`      ${v.message}`);
    if (v.related_seqs.length) out(`      related seqs: ${v.related_seqs.join(', ')}`);
  }
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const report = await admin.request<{ actions: { seq: number; trace_id: string; outcome: string; rule_id: string }[] }>(
    'GET',
    `/v1/reports/approvals?from=${encodeURIComponent(from)}`,
  );
  const mine = report.actions.filter((a) => a.trace_id === trace);
  if (mine.length) {
    out('\napprovals:');
    for (const a of mine) out(`  seq ${a.seq} (${a.rule_id}): ${a.outcome}`);
  }
  out(`\nsee them: curl -H "authorization: Bearer $TOKEN" "${url}/v1/violations?trace_id=${trace}"`);
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof ConfigError) err(`${e.message}\n\n${USAGE}`);
      else if (e instanceof LedgerApiError) err(`the service refused: ${e.message}`);
      else if (e instanceof TypeError && /fetch failed/.test(e.message)) err(`cannot reach the service: is it running? (${e.message})`);
      else err(`error: ${(e as Error).message ?? String(e)}`);
      process.exit(1);
    },
  );
}
