import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { assembleInclusionProof, inclusionProofRefs, nodeKey, rootFromLeaves, verifyInclusion, type NodeRef } from '../../src/core/merkle';
import { nodeNumber, nodeRanges, ProofBatch } from '../../src/core/proof-batch';
import { leafHash } from '../../src/core/record';

/** A stand-in hash for every node of any tree (what a proof assembler sees of storage). */
const fake = (level: number, index: number) => createHash('sha256').update(`${level}/${index}`).digest();

/** Per-leaf proof text, the reference: assembleInclusionProof, hex, as JSON. */
const expected = (index: number, size: number, lookup: (r: NodeRef) => Buffer) =>
  JSON.stringify(assembleInclusionProof(index, size, lookup).map((b) => b.toString('hex')));

/** Pages as the export makes them: consecutive runs of ascending indexes, some with gaps (a filter), one ProofBatch for all. */
const pagesOf = (size: number) =>
  fc
    .tuple(fc.nat(), fc.array(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 6 }))
    .map(([startPick, shapes]) => {
      const pages: number[][] = [];
      let next = startPick % size;
      for (const [count, gap] of shapes) {
        const page: number[] = [];
        for (let i = 0; i < count && next < size; i++, next += 1 + gap) page.push(next);
        if (page.length) pages.push(page);
      }
      return pages;
    });

test('ProofBatch.texts gives the proof of assembleInclusionProof for each leaf, across pages, for any tree size', () => {
  const sizes = fc.oneof(
    fc.integer({ min: 1, max: 70 }),
    fc.integer({ min: 1, max: 5000 }),
    fc.integer({ min: 0, max: 20 }).chain((b) => fc.constantFrom(2 ** b - 1, 2 ** b, 2 ** b + 1)).filter((n) => n >= 1),
    fc.integer({ min: 2 ** 31 - 3, max: 2 ** 33 }),
    fc.integer({ min: 1, max: 2 ** 47 - 1 }),
  );
  fc.assert(
    fc.property(
      sizes.chain((size) => fc.tuple(fc.constant(size), pagesOf(size))),
      ([size, pages]) => {
        const lookup = (r: NodeRef) => fake(r.level, r.index);
        const batch = new ProofBatch(size);
        for (const page of pages) {
          const needed = new Set(batch.needs(page).map((r) => nodeNumber(r.level, r.index)));
          const looked = new Set<number>();
          const texts = batch.texts(page, (level, index) => {
            looked.add(nodeNumber(level, index));
            assert.ok(needed.has(nodeNumber(level, index)), `node ${level}:${index} looked up but not announced by needs()`);
            return fake(level, index).toString('hex');
          });
          assert.equal(texts.length, page.length);
          page.forEach((index, i) => assert.equal(texts[i], expected(index, size, lookup), `leaf ${index} of ${size}`));
          // needs() asks for nothing the proofs do not use
          assert.deepEqual([...needed].sort(), [...looked].sort());
        }
      },
    ),
    { numRuns: 250 },
  );
});

test('ProofBatch.needs of a fresh batch is the union of the per-leaf node sets', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 40 }).chain((size) => fc.tuple(fc.constant(size), fc.uniqueArray(fc.integer({ min: 0, max: size - 1 }), { minLength: 1, maxLength: 40 }))),
      ([size, picks]) => {
        const indexes = [...picks].sort((a, b) => a - b);
        const got = new Set(new ProofBatch(size).needs(indexes).map(nodeKey));
        const want = new Set(indexes.flatMap((i) => inclusionProofRefs(i, size)).map(nodeKey));
        assert.deepEqual(got, want);
      },
    ),
    { numRuns: 300 },
  );
});

test('ProofBatch proofs over real leaves verify against the root; a page of contiguous leaves needs about one range per level', () => {
  const size = 2500;
  const leaves = Array.from({ length: size }, (_, i) => leafHash(`leaf ${i}`));
  const levels: Buffer[][] = [leaves];
  for (let l = 1; 2 ** l <= size; l++) {
    const below = levels[l - 1];
    levels.push(Array.from({ length: Math.floor(below.length / 2) }, (_, i) => createHash('sha256').update(Buffer.from([1])).update(below[2 * i]).update(below[2 * i + 1]).digest()));
  }
  const root = rootFromLeaves(leaves);
  const batch = new ProofBatch(size);
  for (const [from, to] of [[0, 1000], [1000, 2000], [2000, 2500]]) {
    const page = Array.from({ length: to - from }, (_, i) => from + i);
    const ranges = nodeRanges(batch.needs(page));
    assert.ok(ranges.length <= 2 * 12, `${ranges.length} ranges for a page of ${page.length}`);
    const texts = batch.texts(page, (level, index) => levels[level][index].toString('hex'));
    page.forEach((index, i) => {
      const path = (JSON.parse(texts[i]) as string[]).map((h) => Buffer.from(h, 'hex'));
      assert.ok(verifyInclusion(leaves[index], index, size, path, root), `leaf ${index}`);
    });
  }
});

test('nodeRanges covers exactly the nodes asked for plus gaps of at most maxGap, one level per range', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 200 })), { maxLength: 80, selector: ([l, i]) => `${l}:${i}` }),
      fc.integer({ min: 0, max: 6 }),
      (pairs, maxGap) => {
        const refs = pairs.map(([level, index]) => ({ level, index }));
        const ranges = nodeRanges(refs, maxGap);
        for (const r of refs) assert.equal(ranges.filter((g) => g.level === r.level && g.from <= r.index && r.index <= g.to).length, 1);
        const asked = new Set(refs.map(nodeKey));
        for (let i = 0; i < ranges.length; i++) {
          const g = ranges[i];
          assert.ok(asked.has(nodeKey({ level: g.level, index: g.from })) && asked.has(nodeKey({ level: g.level, index: g.to })));
          // no gap inside a range is wider than maxGap
          let last = g.from;
          for (let x = g.from + 1; x <= g.to; x++) {
            if (asked.has(nodeKey({ level: g.level, index: x }))) {
              assert.ok(x - last - 1 <= maxGap);
              last = x;
            }
          }
          // ranges of a level that could have been merged are not left apart
          const prev = ranges[i - 1];
          if (prev && prev.level === g.level) assert.ok(g.from - prev.to - 1 > maxGap);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('ProofBatch refuses an index outside the tree and indexes out of order', () => {
  const hex = () => '00'.repeat(32);
  assert.throws(() => new ProofBatch(4).texts([4], hex), RangeError);
  assert.throws(() => new ProofBatch(4).needs([-1]), RangeError);
  assert.throws(() => new ProofBatch(4).needs([2, 1]), RangeError);
  assert.throws(() => new ProofBatch(4).texts([1, 1], hex), RangeError);
  assert.throws(() => new ProofBatch(0), RangeError);
  assert.throws(() => new ProofBatch(2 ** 47), RangeError);
  assert.deepEqual(new ProofBatch(1).texts([0], hex), ['[]']);
});
