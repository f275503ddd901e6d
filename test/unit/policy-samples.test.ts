import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  formatFixtureResult,
  loadFixturesFromDir,
  loadPolicySetFromDir,
  parseFixtureFile,
  runFixtureCase,
} from '../../src/core/policy';

/** The shipped `policies/` and `policies/tests/`, and the policy-test command. */

const REPO = join(__dirname, '..', '..', '..');
const POLICIES = join(REPO, 'policies');
const TESTS = join(POLICIES, 'tests');
const CLI = join(REPO, 'dist', 'src', 'cli', 'policy-test.js');

const DESIGN_IDS = [
  'refund-needs-approval',
  'no-retry-after-block',
  'at-most-three-retries',
  'support-agent-never-runs-shell',
  'escalation-only-to-listed-agents',
];

describe('shipped sample policies', () => {
  test('load, with the rule ids DESIGN.md names', async () => {
    const set = await loadPolicySetFromDir(POLICIES);
    const ids = set.rules.map((r) => r.id);
    for (const id of DESIGN_IDS) assert.ok(ids.includes(id), id);
    assert.ok(set.rules.some((r) => r.scope === 'session'), 'a session-scoped rule');
  });

  test('every fixture case passes', async () => {
    const set = await loadPolicySetFromDir(POLICIES);
    const fixtures = await loadFixturesFromDir(TESTS);
    assert.deepEqual(fixtures.problems, []);
    assert.ok(fixtures.cases.length >= 20);
    for (const c of fixtures.cases) {
      const result = runFixtureCase(set, c);
      assert.ok(result.passed, formatFixtureResult(result));
    }
  });

  test('every rule has a positive and a negative case', async () => {
    const set = await loadPolicySetFromDir(POLICIES);
    const { cases } = await loadFixturesFromDir(TESTS);
    for (const rule of set.rules) {
      assert.ok(
        cases.some((c) => c.expect.some((e) => e.rule === rule.id)),
        `${rule.id}: no case expects it`,
      );
      const negative = cases.some((c) => c.expect.every((e) => e.rule !== rule.id) && c.file.includes(rule.id));
      const sessionNegative = rule.scope === 'session' && cases.some((c) => c.file.includes('session') && c.expect.length === 0);
      assert.ok(negative || sessionNegative, `${rule.id}: no case shows it staying quiet`);
    }
  });
});

describe('fixtures', () => {
  test('defaults fill the boring fields', () => {
    const { cases, problems } = parseFixtureFile(
      'f.yaml',
      `defaults: { agent: a, session_id: s }
cases:
  - name: c
    defaults: { trace_id: t, start: "2026-01-01T00:00:00Z" }
    events:
      - { type: retry }
      - { type: retry, session_id: null, agent: b, time: "2026-02-01T00:00:00Z", attributes: { k: 1 } }
    expect: []
`,
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(cases[0]?.events, [
      {
        seq: 1,
        id: '00000000-0000-4000-8000-000000000001',
        trace_id: 't',
        span_id: '0000000000000001',
        parent_span_id: null,
        session_id: 's',
        type: 'retry',
        agent: 'a',
        time: '2026-01-01T00:00:00.000Z',
        status: 'ok',
        attributes: {},
      },
      {
        seq: 2,
        id: '00000000-0000-4000-8000-000000000002',
        trace_id: 't',
        span_id: '0000000000000002',
        parent_span_id: null,
        type: 'retry',
        agent: 'b',
        time: '2026-02-01T00:00:00Z',
        status: 'ok',
        attributes: { k: 1 },
      },
    ]);
  });

  test('problems have positions', () => {
    const { problems } = parseFixtureFile(
      'f.yaml',
      `cases:
  - name: c
    events: [{ type: retry, sequence: 1 }]
    expect: [{ rule: r, seq: 2 }]
`,
    );
    assert.deepEqual(
      problems.map((p) => `${p.line}:${p.column} ${p.message}`),
      ['3:29 events[0].sequence: unknown field'],
    );
    const beyond = parseFixtureFile('f.yaml', 'cases:\n  - name: c\n    events: [{ type: retry }]\n    expect: [{ rule: r, seq: 2 }]\n');
    assert.match(beyond.problems[0]?.message ?? '', /beyond its 1 events/);
    assert.equal(beyond.problems[0]?.line, 4);
  });
});

describe('policy-test command', () => {
  const runCli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: REPO, encoding: 'utf8' });

  test('passes on the shipped fixtures, one line per case', () => {
    const r = runCli();
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^policy set [0-9a-f]{64} \(\d+ rules from 1 files\)$/);
    assert.ok(lines.slice(1, -1).every((l) => l.startsWith('PASS ')));
    assert.match(lines.at(-1) ?? '', /^\d+ passed, 0 failed$/);
  });

  test('exits 1 with the difference on a mismatch, 2 on a load error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'policy-test-'));
    try {
      await writeFile(
        join(dir, 'bad.yaml'),
        `defaults: { agent: support-agent }
cases:
  - name: expects the wrong thing
    events:
      - { type: tool.call, name: run_shell }
      - { type: retry }
    expect:
      - { rule: at-most-three-retries, seq: 2 }
`,
      );
      const mismatch = runCli('--tests', dir);
      assert.equal(mismatch.status, 1);
      assert.match(
        mismatch.stdout,
        /FAIL .*bad\.yaml › expects the wrong thing: missing at-most-three-retries@2; unexpected support-agent-never-runs-shell@1/,
      );
      assert.match(mismatch.stdout, /0 passed, 1 failed/);

      await mkdir(join(dir, 'policies'));
      await writeFile(join(dir, 'policies', 'broken.yaml'), 'rules:\n  - { id: x, severity: low, kind: sometimes, match: {} }\n');
      const broken = runCli('--policies', join(dir, 'policies'), '--tests', TESTS);
      assert.equal(broken.status, 2);
      assert.match(broken.stderr, /broken\.yaml:2:35 \[x\]: kind: Invalid option/);

      assert.equal(runCli('--bogus').status, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
