import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LEDGER_KID } from '../../src/core/record';
import { startTestApp, type TestApp } from '../support/app';
import { storedEvents } from '../support/ledger-events';

/** Each example in examples/ run as its README says (one `node` command) against the service. */

const ROOT = resolve(__dirname, '..', '..', '..');

function runExample(file: string, env: Record<string, string>, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    // NODE_ENV=test would make the Agents SDK disable tracing by default; the examples run as a user runs them
    const { NODE_ENV: _n, ...parentEnv } = process.env;
    const child = spawn(process.execPath, [join(ROOT, 'examples', file), ...args], { cwd: ROOT, env: { ...parentEnv, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => res({ code, stdout, stderr }));
  });
}

describe('examples', () => {
  let t: TestApp;
  let dir: string;
  let env: Record<string, string>;
  const TENANT = 'examples';

  before(async () => {
    t = await startTestApp(process.env.DEBUG_EXAMPLES ? { LOG_LEVEL: 'error' } : {});
    dir = mkdtempSync(join(tmpdir(), 'agent-ledger-examples-'));
    env = {
      LEDGER_URL: t.url,
      LEDGER_TOKEN: await t.token(TENANT, 'events:write admin'),
      LEDGER_KEY_FILE: join(dir, 'producer-key.json'),
    };
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ofTrace = async (trace: string) => (await storedEvents(t.db, TENANT)).filter((e) => e.event.trace_id === trace);

  it('sdk-direct.mjs records a run with an approval (and registers its new key)', async () => {
    const r = await runExample('sdk-direct.mjs', env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { trace_id: string; session_id: string; events: number };
    const evs = await ofTrace(out.trace_id);
    assert.equal(evs.length, out.events);
    assert.deepEqual(
      evs.map((e) => e.event.type),
      ['run.started', 'model.call', 'tool.call', 'tool.result', 'approval.requested', 'run.interrupted', 'approval.granted', 'run.resumed', 'tool.call', 'tool.result', 'run.completed'],
    );
    assert.ok(evs.every((e) => e.record.kid !== LEDGER_KID && e.event.session_id === out.session_id));
    // the second run reuses the key file it wrote
    assert.equal((await runExample('sdk-direct.mjs', env)).code, 0);
  });

  it('otel-agent.mjs exports GenAI spans over OTLP protobuf', async () => {
    const r = await runExample('otel-agent.mjs', env);
    assert.equal(r.code, 0, r.stderr);
    const { trace_id } = JSON.parse(r.stdout) as { trace_id: string };
    const evs = await ofTrace(trace_id);
    assert.deepEqual(evs.map((e) => e.event.type).sort(), ['model.call', 'run.completed', 'run.started', 'tool.call', 'tool.result']);
    assert.ok(evs.every((e) => e.record.kid === LEDGER_KID));
  });

  for (const deny of [false, true]) {
    it(`openai-agent-approval.mjs ${deny ? '--deny' : ''} records the approval ${deny ? 'denied' : 'granted'} in the run's trace`, async () => {
      const r = await runExample('openai-agent-approval.mjs', env, deny ? ['--deny'] : []);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { trace_id: string; session_id: string; output: string };
      const types = (await ofTrace(out.trace_id)).map((e) => e.event.type);
      assert.ok(types.includes('approval.requested') && types.includes('run.interrupted') && types.includes('run.resumed'), types.join(','));
      assert.ok(types.includes(deny ? 'approval.denied' : 'approval.granted'), types.join(','));
      assert.equal(types.includes('tool.call'), !deny, 'the tool ran only when approved');
      assert.equal(types.includes('action.blocked'), deny, 'a rejected call is recorded as blocked');
      if (!deny) assert.match(out.output, /refunded/);
    });
  }
});
