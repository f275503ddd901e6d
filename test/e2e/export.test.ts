import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { JWK } from 'jose';
import { bundleDigest, type EvidenceBundle } from '../../src/core/bundle';
import { verifyBundle } from '../../src/core/bundle-verifier';
import { startTestApp, type TestApp } from '../support/app';
import { client, event, producerKey, registerKey, type TestProducer } from '../support/factories';
import { allEntries, assertProblem, call } from '../support/http';

/**
 * POST /v1/exports over real HTTP and a real PostgreSQL: bundles by trace,
 * session and agent/time range, each verified offline by the CLI as a child
 * process (`agent-ledger verify`) with only the file and the served JWKS;
 * a tampered file fails naming the entry; scopes, tenant isolation, filter
 * validation, and the export recorded as a `ledger.export` entry.
 */

const A = 'acme';
const T1 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1';
const T2 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2';
const T3 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3';
const CLI = resolve(__dirname, '..', '..', 'src', 'cli', 'agent-ledger.js');

describe('evidence export', () => {
  let t: TestApp;
  let exporter: string;
  let reader: string;
  let jwks: { keys: JWK[] };
  let dir: string;
  let ed: TestProducer;
  let es: TestProducer;

  const exportBundle = async (filter: Record<string, unknown>, token = exporter) => {
    const res = await call<EvidenceBundle>(t.url, 'POST', '/v1/exports', { token, json: filter });
    return res;
  };

  const cli = (file: string) =>
    spawnSync(process.execPath, [CLI, 'verify', file, '--key', join(dir, 'jwks.json')], { encoding: 'utf8' });

  before(async () => {
    t = await startTestApp();
    dir = mkdtempSync(join(tmpdir(), 'export-e2e-'));
    const admin = await t.token(A, 'admin');
    const writer = await t.token(A, 'events:write');
    exporter = await t.token(A, 'export:create', { sub: 'auditor-alice' });
    reader = await t.token(A, 'audit:read');
    ed = await producerKey('EdDSA');
    es = await producerKey('ES256');
    await registerKey(t.url, admin, ed, 'runtime-ed');
    await registerKey(t.url, admin, es, 'runtime-es');
    const at = (ms: number) => new Date(Date.UTC(2026, 10, 25, 10, 0, 0, ms)).toISOString();
    // trace 1, session conv-1: three events by the Ed25519 producer, two by the P-256 one
    await client(t.url, writer, ed).send([
      event({ trace_id: T1, session_id: 'conv-1', type: 'run.started', time: at(1) }),
      event({ trace_id: T1, session_id: 'conv-1', time: at(2) }),
      event({ trace_id: T1, session_id: 'conv-1', type: 'tool.result', time: at(3) }),
    ]);
    await client(t.url, writer, es).send([
      event({ trace_id: T2, session_id: 'conv-2', agent: 'billing-agent', time: at(4) }),
      event({ trace_id: T1, session_id: 'conv-1', type: 'approval.granted', time: at(5) }),
      event({ trace_id: T1, session_id: 'conv-1', type: 'run.completed', time: at(6) }),
    ]);
    // trace 3 continues session conv-1 (resumed run), by the billing agent, later
    await client(t.url, writer, ed).send([
      event({ trace_id: T3, session_id: 'conv-1', agent: 'billing-agent', type: 'run.resumed', time: at(500) }),
      event({ trace_id: T3, session_id: 'conv-1', agent: 'billing-agent', time: at(900) }),
    ]);
    jwks = (await call<{ keys: JWK[] }>(t.url, 'GET', '/.well-known/jwks.json')).body;
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await t.close();
  });

  test('by trace: the downloaded bundle verifies with the CLI (exit 0), its summary printed', async () => {
    const res = await exportBundle({ trace_id: T1 });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="evidence-acme-/);
    const b = res.body;
    assert.equal(b.manifest.count, 5);
    assert.equal(b.manifest.exported_by, 'auditor-alice');
    assert.deepEqual(b.manifest.filter, { trace_id: T1 });
    assert.deepEqual(b.entries.map((e) => (JSON.parse(e.record) as { trace_id: string }).trace_id), Array(5).fill(T1));
    assert.equal(b.producer_keys.length, 2, 'both producers, each with its registration entry');
    assert.ok(b.entries.every((e) => e.body !== null));
    // the batch JWSs carry digests only: no other event's body is in the file
    assert.ok(!res.text.includes(T2), 'nothing of trace 2 leaks into the trace 1 bundle');
    const file = join(dir, 'trace.json');
    writeFileSync(file, res.text);
    const r = cli(file);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /entries:\s+5\b/);
    assert.match(r.stdout, /traces:\s+1\b/);
    assert.match(r.stdout, new RegExp(`tree size ${b.manifest.checkpoint_size}\\b`));
    assert.match(r.stdout, /^OK/m);
  });

  test('a tampered file: the CLI exits 1 naming the entry and the check', async () => {
    const res = await exportBundle({ trace_id: T1 });
    const b = res.body;
    const victim = b.entries[3];
    const tampered = res.text.replace(JSON.stringify(victim.body!), JSON.stringify(victim.body!.replace('"amount":250', '"amount":25')));
    assert.notEqual(tampered, res.text);
    const file = join(dir, 'tampered.json');
    writeFileSync(file, tampered);
    const r = cli(file);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`entry ${victim.seq}: body: `));

    const removed = JSON.parse(res.text) as EvidenceBundle;
    removed.entries.splice(1, 1);
    writeFileSync(file, JSON.stringify(removed));
    const r2 = cli(file);
    assert.equal(r2.status, 1);
    assert.match(r2.stdout, /bundle: count: /);
  });

  test('by session: the whole conversation across traces', async () => {
    const res = await exportBundle({ session_id: 'conv-1' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.manifest.count, 7);
    const r = await verifyBundle(res.body, jwks.keys[0]);
    assert.deepEqual(r.failures, []);
    assert.equal(r.summary.traces, 2);
  });

  test('by agent and time range: only the matching entries, verified by the CLI', async () => {
    const res = await exportBundle({ agent: 'billing-agent', from: '2026-11-25T10:00:00.100Z', to: '2026-11-25T10:00:01Z' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.manifest.filter, { agent: 'billing-agent', from: '2026-11-25T10:00:00.100Z', to: '2026-11-25T10:00:01.000Z' });
    assert.equal(res.body.manifest.count, 2);
    const file = join(dir, 'agent.json');
    writeFileSync(file, res.text);
    const r = cli(file);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /entries:\s+2\b/);
  });

  test('export:create is required (403); a missing token is 401', async () => {
    assertProblem(await exportBundle({ trace_id: T1 }, reader), 403, 'forbidden');
    assertProblem(await call(t.url, 'POST', '/v1/exports', { json: { trace_id: T1 } }), 401, 'unauthenticated');
  });

  test("another tenant's trace or session is 404, as an unknown one", async () => {
    const other = await t.token('globex', 'export:create');
    assertProblem(await exportBundle({ trace_id: T1 }, other), 404, 'not_found');
    assertProblem(await exportBundle({ session_id: 'conv-1' }, other), 404, 'not_found');
    assertProblem(await exportBundle({ trace_id: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' }), 404, 'not_found');
  });

  test('a bad filter is a 400 naming the field', async () => {
    assertProblem(await exportBundle({}), 400, 'validation_failed', ['(body)']);
    assertProblem(await exportBundle({ trace_id: 'XYZ' }), 400, 'validation_failed', ['trace_id']);
    assertProblem(await exportBundle({ trace_id: T1, agent: 'x' }), 400, 'validation_failed', ['agent']);
    assertProblem(await exportBundle({ agent: 'x', limit: 3 }), 400, 'validation_failed', ['limit']);
    assertProblem(await exportBundle({ from: '2026-11-25T11:00:00Z', to: '2026-11-25T10:00:00Z' }), 400, 'validation_failed', ['to']);
    assertProblem(await exportBundle({ from: 'yesterday' }), 400, 'validation_failed', ['from']);
  });

  test('every export is a ledger.export entry: who, filter, count and the bundle digest', async () => {
    const before = (await allEntries(t.url, reader)).filter((e) => (JSON.parse(e.record) as { type: string }).type === 'ledger.export').length;
    const res = await exportBundle({ trace_id: T1 });
    const b = res.body;
    const records = (await allEntries(t.url, reader)).map((e) => JSON.parse(e.record) as { type: string; seq: number; kid: string });
    const exports = records.filter((r) => r.type === 'ledger.export');
    assert.equal(exports.length, before + 1);
    assert.equal(exports[exports.length - 1].kid, 'ledger');
    // the service's own entries are exportable too: the export entry's body names the bundle
    const own = await exportBundle({ agent: 'agent-ledger' });
    assert.equal(own.status, 200, own.text);
    const entry = own.body.entries.find((e) => e.seq === exports[exports.length - 1].seq)!;
    const attrs = (JSON.parse(entry.body!) as { attributes: Record<string, unknown> }).attributes;
    assert.equal(attrs.exported_by, 'auditor-alice');
    assert.deepEqual(attrs.filter, { trace_id: T1 });
    assert.equal(attrs.count, 5);
    assert.equal(attrs.contents_digest, b.contents_digest);
    assert.equal(attrs.bundle_digest, bundleDigest(b.manifest, b.contents_digest));
    const r = await verifyBundle(own.body, jwks.keys[0]);
    assert.deepEqual(r.failures, []);
    assert.ok(own.body.entries.some((e) => (JSON.parse(e.record) as { type: string }).type === 'ledger.key_registered'));
  });

  test('the file is one item per line (stream-friendly) and parses as one JSON document', async () => {
    const res = await exportBundle({ session_id: 'conv-1' });
    const lines = res.text.split('\n');
    assert.ok(lines[0].startsWith('{"format":"agent-ledger-evidence/v1"'));
    const entryLines = lines.filter((l) => l.startsWith('{"body":'));
    assert.equal(entryLines.length, 7);
    for (const l of entryLines) JSON.parse(l.replace(/,$/, ''));
    assert.ok(readFileSync(join(dir, 'jwks.json'), 'utf8').length > 0);
  });
});
