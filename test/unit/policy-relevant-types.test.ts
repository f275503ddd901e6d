import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { loadPolicySet } from '../../src/core/policy';
import { relevantTypes } from '../../src/policy/evaluator.service';

const ROOT = process.env.TEST_ROOT ?? resolve(__dirname, '..', '..', '..');

test('relevantTypes: the types the sample set can match or use as a prior', () => {
  const set = loadPolicySet([{ file: 'support-agent.yaml', text: readFileSync(join(ROOT, 'policies', 'support-agent.yaml'), 'utf8') }]);
  assert.deepEqual(relevantTypes(set), ['action.blocked', 'approval.denied', 'approval.granted', 'handoff', 'retry', 'tool.call']);
});

test('relevantTypes: a matcher or prior without a type filter means every event', () => {
  const untypedMatch = loadPolicySet([
    { file: 'a.yaml', text: 'rules:\n  - id: a\n    severity: low\n    kind: forbidden\n    match: { name: run_shell }\n' },
  ]);
  assert.equal(relevantTypes(untypedMatch), null);
  const untypedPrior = loadPolicySet([
    {
      file: 'b.yaml',
      text: 'rules:\n  - id: b\n    severity: low\n    kind: preceded_by\n    match: { type: tool.call }\n    prior: { name: approve }\n',
    },
  ]);
  assert.equal(relevantTypes(untypedPrior), null);
});
