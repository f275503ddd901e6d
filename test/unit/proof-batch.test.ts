import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { assembleInclusionProof, inclusionProofRefs, nodeKey, rootFromLeaves, type NodeRef } from '../../src/core/merkle';
import { ProofBatch } from '../../src/core/proof-batch';
import { leafHash } from '../../src/core/record';

test('ProofBatch gives the proofs and the node set of assembleInclusionProof, for any size and leaves', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 300 }), fc.array(fc.nat(), { minLength: 1, maxLength: 30 }), (size, picks) => {
      const leaves = Array.from({ length: size }, (_, i) => leafHash(`leaf ${i}`));
      const lookup = (r: NodeRef) => rootFromLeaves(leaves.slice(r.index * 2 ** r.level, (r.index + 1) * 2 ** r.level));
      const indexes = [...new Set(picks.map((p) => p % size))].sort((a, b) => a - b);
      const batch = new ProofBatch(size);
      const refs = new Set(batch.refs(indexes).map(nodeKey));
      const expected = new Set(indexes.flatMap((i) => inclusionProofRefs(i, size)).map(nodeKey));
      assert.deepEqual(refs, expected);
      const looked: string[] = [];
      const guarded = (r: NodeRef) => {
        looked.push(nodeKey(r));
        return lookup(r);
      };
      for (const i of indexes) assert.deepEqual(batch.proof(i, guarded), assembleInclusionProof(i, size, lookup));
      assert.ok(looked.every((k) => refs.has(k)), 'only the nodes refs() announced are looked up');
    }),
    { numRuns: 300 },
  );
});

test('ProofBatch refuses an index outside the tree', () => {
  assert.throws(() => new ProofBatch(4).proof(4, () => Buffer.alloc(32)), RangeError);
  assert.throws(() => new ProofBatch(4).refs([-1]), RangeError);
});
