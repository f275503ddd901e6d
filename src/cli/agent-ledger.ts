#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { mintToken } from '../auth/token';
import { makeEvent, newSpanId, newTraceId, LedgerApiError, LedgerClient, type ProducerKey } from '../client/ledger-client';
import { ConfigError, loadEnv } from '../config/config';
import type { BatchAlgorithm } from '../core/batch';
import { migrate } from '../database/data-source';
import { resolveRuntime } from '../runtime/runtime';
import { ensureLocalSecrets } from '../runtime/secrets';
import { verifyCli } from './verify-bundle';

/**
 * The package's command line: `agent-ledger <command>`. Output goes to
 * stdout (results) and stderr (messages); exit code 1 on failure.
 */

const out = (s: string) => process.stdout.write(s + '\n');
const err = (s: string) => process.stderr.write(s + '\n');

const USAGE = `usage: agent-ledger <command> [options]

commands:
  token     --tenant T --scope "events:write audit:read ..." [--sub NAME] [--ttl SECONDS]
            mint a local HS256 token (AUTH_JWT_SECRET, or the secret generated in DATA_DIR)
  migrate   apply pending migrations (MIGRATIONS_DATABASE_URL or DATABASE_URL, else the embedded database)
  keygen    [--alg EdDSA|ES256] [--out producer-key.json]
            write a producer key pair (private JWK file) and print the public JWK to register
  ledger-key
            print a new private Ed25519 JWK for LEDGER_SIGNING_KEY (the ledger's own signing key)
  register-key --key producer-key.json --producer NAME --token TOKEN [--url URL]
  send      --key producer-key.json --token TOKEN [--url URL] [--file events.json] [--agent NAME]
            sign and send a batch: the events of --file (a JSON array), or a small sample run
  verify    <bundle.json> --key <jwks.json|URL> [--origin ORIGIN]
            check an evidence bundle offline (exit 1 naming each failing entry and check)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'verify') return verifyCli(rest, out);
  const { values } = parseArgs({
    args: rest,
    options: {
      tenant: { type: 'string' },
      scope: { type: 'string' },
      sub: { type: 'string' },
      ttl: { type: 'string' },
      alg: { type: 'string' },
      out: { type: 'string' },
      key: { type: 'string' },
      producer: { type: 'string' },
      token: { type: 'string' },
      url: { type: 'string' },
      file: { type: 'string' },
      agent: { type: 'string' },
    },
    strict: true,
  });
  const url = values.url ?? 'http://127.0.0.1:3000';

  switch (command) {
    case 'token': {
      if (!values.tenant || !values.scope) throw new UsageError('token needs --tenant and --scope');
      const env = loadEnv(process.env);
      const secret = env.AUTH_JWT_SECRET ?? (await ensureLocalSecrets(env.DATA_DIR)).jwtSecret;
      const ttl = values.ttl ? Number(values.ttl) : 3600;
      if (!Number.isInteger(ttl) || ttl <= 0) throw new UsageError('--ttl must be a positive number of seconds');
      out(
        await mintToken({
          secret: new TextEncoder().encode(secret),
          tenant: values.tenant,
          scope: values.scope,
          sub: values.sub,
          ttlSeconds: ttl,
          issuer: env.AUTH_ISSUER,
          audience: env.AUTH_AUDIENCE,
        }),
      );
      return 0;
    }
    case 'migrate': {
      const env = loadEnv(process.env);
      if (env.DATABASE_URL) {
        const applied = await migrate(env.MIGRATIONS_DATABASE_URL ?? env.DATABASE_URL, env.DATABASE_APP_PASSWORD);
        err(applied.length ? `applied: ${applied.join(', ')}` : 'no pending migrations');
      } else {
        const runtime = await resolveRuntime({ ...env, MIGRATIONS_RUN: true }, err);
        err(runtime.migrationsApplied.length ? `applied: ${runtime.migrationsApplied.join(', ')}` : 'no pending migrations');
        await runtime.stop();
      }
      return 0;
    }
    case 'keygen': {
      const alg = (values.alg ?? 'EdDSA') as BatchAlgorithm;
      if (alg !== 'EdDSA' && alg !== 'ES256') throw new UsageError('--alg must be EdDSA or ES256');
      const { privateKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : 'ES256', { extractable: true });
      const priv = await exportJWK(privateKey);
      const { d: _d, ...pub } = priv;
      const kid = await calculateJwkThumbprint(pub);
      const file = values.out ?? 'producer-key.json';
      writeFileSync(file, JSON.stringify({ ...priv, kid, alg }, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
      err(`wrote the private key to ${file} (keep it with the producer); register this public JWK:`);
      out(JSON.stringify({ ...pub, kid }));
      return 0;
    }
    case 'ledger-key': {
      const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
      out(JSON.stringify(await exportJWK(privateKey)));
      return 0;
    }
    case 'register-key': {
      if (!values.key || !values.producer || !values.token) throw new UsageError('register-key needs --key, --producer and --token');
      const { d: _d, ...pub } = JSON.parse(readFileSync(values.key, 'utf8')) as JWK;
      const client = new LedgerClient({ baseUrl: url, token: values.token });
      out(JSON.stringify(await client.request('POST', '/v1/keys', { producer: values.producer, jwk: pub }), null, 2));
      return 0;
    }
    case 'send': {
      if (!values.key || !values.token) throw new UsageError('send needs --key and --token');
      const key = await loadProducerKey(values.key);
      const client = new LedgerClient({ baseUrl: url, token: values.token, key });
      const events = values.file
        ? (JSON.parse(readFileSync(values.file, 'utf8')) as Parameters<LedgerClient['send']>[0])
        : sampleRun(values.agent ?? 'support-agent');
      out(JSON.stringify({ receipts: await client.send(events) }, null, 2));
      return 0;
    }
    default:
      err(USAGE);
      return command ? 1 : 0;
  }
}

class UsageError extends Error {}

export async function loadProducerKey(file: string): Promise<ProducerKey> {
  const jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
  const alg = (jwk.alg ?? (jwk.kty === 'OKP' ? 'EdDSA' : 'ES256')) as BatchAlgorithm;
  const { d: _d, kid: _k, alg: _a, ...pub } = jwk;
  return { kid: jwk.kid ?? (await calculateJwkThumbprint(pub)), alg, privateKey: await importJWK(jwk, alg) };
}

/** A short support-agent run: start, a tool call and its result, the end. */
function sampleRun(agent: string) {
  const trace_id = newTraceId();
  const root = newSpanId();
  const tool = newSpanId();
  const base = { trace_id, agent, session_id: `conv-${trace_id.slice(0, 8)}` };
  return [
    makeEvent({ ...base, span_id: root, type: 'run.started', name: agent, attributes: { input: 'Where is my order A-1009?' } }),
    makeEvent({
      ...base,
      span_id: tool,
      parent_span_id: root,
      type: 'tool.call',
      name: 'lookup_order',
      attributes: { args: { order_id: 'A-1009' } },
    }),
    makeEvent({
      ...base,
      span_id: tool,
      parent_span_id: root,
      type: 'tool.result',
      name: 'lookup_order',
      status: 'ok',
      duration_ms: 42,
      attributes: { result: { status: 'shipped' } },
    }),
    makeEvent({ ...base, span_id: root, type: 'run.completed', name: agent, status: 'ok', duration_ms: 1200 }),
  ];
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError || e instanceof ConfigError) err(`${e.message}\n\n${USAGE}`);
      else if (e instanceof LedgerApiError) err(`the service refused: ${e.message}${e.problem.errors ? '\n' + JSON.stringify(e.problem.errors, null, 2) : ''}`);
      else err(`error: ${(e as Error).message ?? String(e)}`);
      process.exit(1);
    },
  );
}
