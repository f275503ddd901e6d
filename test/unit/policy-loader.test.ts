import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PolicyLoadError,
  loadPolicySet,
  loadPolicySetFromDir,
  parseDuration,
  formatDuration,
  type PolicyProblem,
} from '../../src/core/policy';

function problemsOf(sources: { file: string; text: string }[]): readonly PolicyProblem[] {
  try {
    loadPolicySet(sources);
  } catch (err) {
    assert.ok(err instanceof PolicyLoadError, `expected PolicyLoadError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('the set loaded, a PolicyLoadError was expected');
}

function one(text: string): readonly PolicyProblem[] {
  return problemsOf([{ file: 'p.yaml', text }]);
}

const GOOD = `rules:
  - id: refund-needs-approval
    severity: high
    kind: preceded_by
    match: { type: tool.call, name: refund_payment, when: "event.attributes.args.amount > 100" }
    prior:
      type: approval.granted
      when: "prior.attributes.tool == event.name"
      within: 1h
  - id: at-most-three-retries
    severity: medium
    kind: max_count
    match: { type: retry }
    max: 3
`;

describe('loading a policy set', () => {
  test('a valid file loads, with defaults and normalised filters', () => {
    const set = loadPolicySet([{ file: 'p.yaml', text: GOOD }]);
    assert.equal(set.rules.length, 2);
    assert.deepEqual(set.files, ['p.yaml']);
    assert.match(set.hash, /^[0-9a-f]{64}$/);
    const [refund, retries] = set.rules;
    assert.equal(refund?.scope, 'trace');
    assert.deepEqual(refund?.definition.match.type, ['tool.call']);
    assert.equal(refund?.prior?.withinMs, 3_600_000);
    assert.equal(refund?.file, 'p.yaml');
    assert.equal(retries?.max, 3);
    assert.equal(retries?.prior, undefined);
  });

  test('custom.<x> types, agent lists and session scope are accepted', () => {
    const set = loadPolicySet([
      {
        file: 'c.yaml',
        text: `rules:
  - id: c
    severity: low
    kind: not_preceded_by
    scope: session
    match: { type: [custom.payout, tool.call], agent: [b, a, a] }
    prior: { type: custom.freeze }
`,
      },
    ]);
    assert.deepEqual(set.rules[0]?.definition.match, { type: ['custom.payout', 'tool.call'], agent: ['a', 'b'] });
    assert.equal(set.rules[0]?.scope, 'session');
  });

  test('an empty list of sources is an empty set with a stable hash', () => {
    assert.equal(loadPolicySet([]).hash, loadPolicySet([]).hash);
    assert.equal(loadPolicySet([]).rules.length, 0);
  });
});

describe('load errors name file, rule and line:column', () => {
  test('YAML syntax error', () => {
    const problems = one('rules:\n  - id: a\n    match: { name: [ }\n');
    assert.ok(problems.length >= 1);
    assert.equal(problems[0]?.file, 'p.yaml');
    assert.equal(problems[0]?.line, 3);
    assert.match(problems[0]?.message ?? '', /^YAML: /);
  });

  test('duplicate YAML key', () => {
    const problems = one('rules:\n  - id: a\n    id: b\n');
    assert.deepEqual(
      problems.map((p) => [p.line, p.column]),
      [[3, 5]],
    );
    assert.match(problems[0]?.message ?? '', /unique/);
  });

  test('unknown field, at the key', () => {
    const problems = one(`rules:
  - id: r
    severity: low
    kind: forbidden
    match: { type: retry, nme: x }
`);
    assert.deepEqual(problems, [{ file: 'p.yaml', ruleId: 'r', line: 5, column: 27, message: 'match.nme: unknown field' }]);
  });

  test('unknown top-level field and missing rules', () => {
    const problems = one('rule: []\n');
    assert.deepEqual(
      problems.map((p) => p.message),
      ['rules: required', 'rule: unknown field'],
    );
  });

  test('unknown kind, severity and event type', () => {
    const problems = one(`rules:
  - id: r
    severity: urgent
    kind: banned
    match: { type: tool_call }
`);
    assert.deepEqual(
      problems.map((p) => [p.ruleId, p.line, p.message.split(':')[0]]),
      [
        ['r', 3, 'severity'],
        ['r', 4, 'kind'],
        ['r', 5, 'match.type[0]'],
      ],
    );
  });

  test('duplicate id across files, pointing at the first definition', () => {
    const rule = (id: string) => `rules:\n  - id: ${id}\n    severity: low\n    kind: forbidden\n    match: {}\n`;
    const problems = problemsOf([
      { file: 'a.yaml', text: rule('x') },
      { file: 'b.yaml', text: `${rule('y')}  - id: x\n    severity: low\n    kind: forbidden\n    match: {}\n` },
    ]);
    assert.deepEqual(problems, [
      { file: 'b.yaml', ruleId: 'x', line: 6, column: 9, message: 'duplicate rule id, first defined at a.yaml:2' },
    ]);
  });

  test('CEL that does not parse, uses an unknown variable, or is not a bool', () => {
    const problems = one(`rules:
  - id: syntax
    severity: low
    kind: forbidden
    match: { when: "event.name ==" }
  - id: prior-in-match
    severity: low
    kind: forbidden
    match: { when: "prior.name == 'x'" }
  - id: not-bool
    severity: low
    kind: forbidden
    match: { when: "event.name + 'x'" }
  - id: prior-ok
    severity: low
    kind: preceded_by
    match: {}
    prior: { when: "prior.name == event.name && unknown_var" }
`);
    assert.deepEqual(
      problems.map((p) => [p.ruleId, p.line, p.column]),
      [
        ['syntax', 5, 20],
        ['prior-in-match', 9, 20],
        ['not-bool', 13, 20],
        ['prior-ok', 18, 20],
      ],
    );
    assert.match(problems[0]?.message ?? '', /^match\.when: CEL: .*character 14/);
    assert.match(problems[1]?.message ?? '', /Unknown variable: prior/);
    assert.match(problems[2]?.message ?? '', /must be a bool/);
    assert.match(problems[3]?.message ?? '', /^prior\.when: CEL: .*unknown_var/);
  });

  test('bad durations', () => {
    for (const within of ['90 minutes', '0s', '1.5h', '1h30m', '-1h', '10ms']) {
      const problems = one(`rules:
  - id: r
    severity: low
    kind: preceded_by
    match: {}
    prior: { within: "${within}" }
`);
      assert.equal(problems.length, 1, within);
      assert.equal(problems[0]?.line, 6, within);
      assert.match(problems[0]?.message ?? '', /^prior\.within: expected a duration/, within);
    }
  });

  test('prior and max are required or refused by kind', () => {
    const problems = one(`rules:
  - { id: a, severity: low, kind: preceded_by, match: {} }
  - { id: b, severity: low, kind: not_preceded_by, match: {} }
  - { id: c, severity: low, kind: max_count, match: {} }
  - { id: d, severity: low, kind: forbidden, match: {}, prior: {}, max: 1 }
  - { id: e, severity: low, kind: max_count, match: {}, prior: {}, max: 1 }
  - { id: f, severity: low, kind: preceded_by, match: {}, prior: {}, max: 1 }
`);
    assert.deepEqual(
      problems.map((p) => `${p.ruleId}:${p.message}`),
      [
        'a:prior: prior is required for kind preceded_by',
        'b:prior: prior is required for kind not_preceded_by',
        'c:max: max is required for kind max_count',
        'd:prior: prior is not allowed for kind forbidden',
        'd:max: max is not allowed for kind forbidden',
        'e:prior: prior is not allowed for kind max_count',
        'f:max: max is not allowed for kind preceded_by',
      ],
    );
  });

  test('every problem of every file is listed, also several in one rule', () => {
    const problems = problemsOf([
      {
        file: 'a.yaml',
        text: `rules:
  - id: r
    severity: huge
    kind: preceded_by
    match: { when: "(" }
    extra: 1
`,
      },
      { file: 'b.yaml', text: 'rules: [' },
      { file: 'c.yaml', text: '' },
    ]);
    assert.deepEqual(
      problems.map((p) => p.file),
      ['a.yaml', 'a.yaml', 'a.yaml', 'a.yaml', 'b.yaml', 'c.yaml'],
    );
    const err = new PolicyLoadError(problems);
    assert.match(err.message, /6 problems/);
    assert.match(err.message, /a\.yaml:6:5 \[r\]: extra: unknown field/);
  });

  test('a rule id must be a plain identifier', () => {
    const problems = one('rules:\n  - { id: "has space", severity: low, kind: forbidden, match: {} }\n');
    assert.equal(problems[0]?.ruleId, 'has space');
    assert.match(problems[0]?.message ?? '', /^id: /);
  });
});

describe('policy set hash', () => {
  const hashOf = (...texts: string[]) =>
    loadPolicySet(texts.map((text, i) => ({ file: `f${i}.yaml`, text }))).hash;

  test('is the same for the same rules however they are written', () => {
    const a = hashOf(GOOD);
    const reformatted = `# a comment
rules:
  - kind: max_count
    id: at-most-three-retries
    match:
      type: [retry, retry]
    max: 3
    severity: medium
    scope: trace
  - id: refund-needs-approval
    severity: high
    kind: preceded_by
    match: { when: "event.attributes.args.amount > 100", name: [refund_payment], type: tool.call }
    prior: { type: approval.granted, when: "prior.attributes.tool == event.name", within: 60m }
`;
    assert.equal(hashOf(reformatted), a);
    const [first, second] = GOOD.split('  - id: at-most');
    assert.equal(hashOf(`${first}`, `rules:\n  - id: at-most${second}`), a, 'split over two files');
    assert.equal(hashOf(GOOD), a, 'deterministic');
  });

  test('changes with any change of meaning or description', () => {
    const a = hashOf(GOOD);
    assert.notEqual(hashOf(GOOD.replace('max: 3', 'max: 4')), a);
    assert.notEqual(hashOf(GOOD.replace('within: 1h', 'within: 2h')), a);
    assert.notEqual(hashOf(GOOD.replace('> 100', '>= 100')), a);
    assert.notEqual(hashOf(GOOD.replace('severity: high', 'severity: critical')), a);
    assert.notEqual(hashOf(GOOD.replace('kind: max_count', 'kind: max_count\n    description: d')), a);
    assert.notEqual(hashOf(GOOD.replace('kind: max_count', 'kind: max_count\n    scope: session')), a);
  });
});

describe('durations', () => {
  test('parse and canonical form', () => {
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('15m'), 900_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('7d'), 604_800_000);
    assert.equal(parseDuration('1H'), undefined);
    assert.equal(parseDuration(' 1h'), undefined);
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(90 * 60_000), '90m');
    assert.equal(formatDuration(86_400_000 * 2), '2d');
  });
});

describe('loading a folder', () => {
  test('reads *.yaml and *.yml directly in it, in name order, not tests/', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'policies-'));
    try {
      await writeFile(join(dir, 'b.yml'), 'rules:\n  - { id: b, severity: low, kind: forbidden, match: {} }\n');
      await writeFile(join(dir, 'a.yaml'), 'rules:\n  - { id: a, severity: low, kind: forbidden, match: {} }\n');
      await writeFile(join(dir, 'notes.txt'), 'not a policy');
      await mkdir(join(dir, 'tests'));
      await writeFile(join(dir, 'tests', 'x.yaml'), 'cases: []\n');
      const set = await loadPolicySetFromDir(dir);
      assert.deepEqual(set.files, [join(dir, 'a.yaml'), join(dir, 'b.yml')]);
      assert.deepEqual(
        set.rules.map((r) => r.id),
        ['a', 'b'],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a missing folder is a load error', async () => {
    await assert.rejects(loadPolicySetFromDir(join(tmpdir(), 'no-such-policies-dir')), PolicyLoadError);
  });
});
