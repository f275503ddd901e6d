import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  Frontier,
  type NodeLookup,
  type NodeRef,
  assembleConsistencyProof,
  assembleInclusionProof,
  consistencyProofRefs,
  emptyRoot,
  frontierRefs,
  hashChildren,
  hashLeaf,
  inclusionProofRefs,
  nodeKey,
  rootFromLeaves,
  rootFromRefs,
  verifyConsistency,
  verifyInclusion,
} from '../../src/core/merkle';

const hex = (h: string): Buffer => Buffer.from(h, 'hex');

// ---------------------------------------------------------------------------
// Test vectors. Source: github.com/transparency-dev/merkle, proof/verify_test.go
// (`leaves`, `roots`, `inclusionProofs`, `consistencyProofs`), which carries the
// vectors of google/certificate-transparency; rfc6962/rfc6962_test.go for the
// hasher; proof/proof_test.go for which stored nodes each proof needs.
// ---------------------------------------------------------------------------

const VECTOR_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);

/** MTH of the first 1..8 vector leaves. */
const VECTOR_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(hex);

/** verify_test.go lists leaves 1-based; `index` here is the 0-based leaf index. */
const VECTOR_INCLUSION: { index: number; size: number; proof: Buffer[] }[] = [
  { index: 0, size: 1, proof: [] },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ].map(hex),
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ].map(hex),
  },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'].map(hex) },
  {
    index: 1,
    size: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ].map(hex),
  },
];

const VECTOR_CONSISTENCY: { m: number; n: number; proof: Buffer[] }[] = [
  { m: 1, n: 1, proof: [] },
  {
    m: 1,
    n: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ].map(hex),
  },
  {
    m: 6,
    n: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ].map(hex),
  },
  {
    m: 2,
    n: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ].map(hex),
  },
  {
    m: 6,
    n: 7,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ].map(hex),
  },
];

/** proof/proof_test.go TestInclusion: the stored nodes (level, index) each proof is built from. */
const VECTOR_INCLUSION_REFS: { index: number; size: number; refs: [number, number][] }[] = [
  { size: 1, index: 0, refs: [] },
  { size: 2, index: 0, refs: [[0, 1]] },
  { size: 2, index: 1, refs: [[0, 0]] },
  { size: 3, index: 1, refs: [[0, 0], [0, 2]] },
  { size: 7, index: 0, refs: [[0, 1], [1, 1], [0, 6], [1, 2]] },
  { size: 7, index: 1, refs: [[0, 0], [1, 1], [0, 6], [1, 2]] },
  { size: 7, index: 2, refs: [[0, 3], [1, 0], [0, 6], [1, 2]] },
  { size: 7, index: 3, refs: [[0, 2], [1, 0], [0, 6], [1, 2]] },
  { size: 7, index: 4, refs: [[0, 5], [0, 6], [2, 0]] },
  { size: 7, index: 5, refs: [[0, 4], [0, 6], [2, 0]] },
  { size: 7, index: 6, refs: [[1, 2], [2, 0]] },
  { size: 4, index: 2, refs: [[0, 3], [1, 0]] },
  { size: 5, index: 3, refs: [[0, 2], [1, 0], [0, 4]] },
  { size: 6, index: 3, refs: [[0, 2], [1, 0], [1, 2]] },
  { size: 6, index: 4, refs: [[0, 5], [2, 0]] },
  { size: 15, index: 10, refs: [[0, 11], [1, 4], [0, 14], [1, 6], [3, 0]] },
  { size: 31, index: 24, refs: [[0, 25], [1, 13], [0, 30], [1, 14], [3, 2], [4, 0]] },
  { size: 95, index: 81, refs: [[0, 80], [1, 41], [2, 21], [0, 94], [1, 46], [2, 22], [4, 4], [6, 0]] },
];

/** proof/proof_test.go TestConsistency. */
const VECTOR_CONSISTENCY_REFS: { m: number; n: number; refs: [number, number][] }[] = [
  { m: 1, n: 2, refs: [[0, 1]] },
  { m: 1, n: 4, refs: [[0, 1], [1, 1]] },
  { m: 1, n: 6, refs: [[0, 1], [1, 1], [1, 2]] },
  { m: 2, n: 3, refs: [[0, 2]] },
  { m: 2, n: 8, refs: [[1, 1], [2, 1]] },
  { m: 3, n: 7, refs: [[0, 2], [0, 3], [1, 0], [0, 6], [1, 2]] },
  { m: 4, n: 7, refs: [[0, 6], [1, 2]] },
  { m: 5, n: 7, refs: [[0, 4], [0, 5], [0, 6], [2, 0]] },
  { m: 6, n: 7, refs: [[1, 2], [0, 6], [2, 0]] },
  { m: 7, n: 8, refs: [[0, 6], [0, 7], [1, 2], [2, 0]] },
  { m: 1, n: 1, refs: [] },
  { m: 5, n: 5, refs: [] },
  { m: 8, n: 8, refs: [] },
  { m: 2, n: 4, refs: [[1, 1]] },
  { m: 3, n: 5, refs: [[0, 2], [0, 3], [1, 0], [0, 4]] },
  { m: 3, n: 6, refs: [[0, 2], [0, 3], [1, 0], [1, 2]] },
  { m: 4, n: 6, refs: [[1, 2]] },
  { m: 1, n: 7, refs: [[0, 1], [1, 1], [0, 6], [1, 2]] },
  { m: 10, n: 15, refs: [[1, 4], [1, 5], [0, 14], [1, 6], [3, 0]] },
  { m: 24, n: 31, refs: [[3, 2], [0, 30], [1, 14], [2, 6], [4, 0]] },
  { m: 81, n: 95, refs: [[0, 80], [0, 81], [1, 41], [2, 21], [0, 94], [1, 46], [2, 22], [4, 4], [6, 0]] },
];

// ---------------------------------------------------------------------------
// Reference implementation straight from RFC 9162 §2.1, over leaf hashes.
// ---------------------------------------------------------------------------

function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * MTH(D[start:end]) etc. over one list of leaf hashes, memoised by range so the
 * property tests can afford every proof of every size; otherwise the RFC text.
 */
class ReferenceTree {
  private readonly memo = new Map<string, Buffer>();

  constructor(private readonly leaves: readonly Buffer[]) {}

  /** MTH(D[start:end]), RFC 9162 §2.1.1. */
  mth(start = 0, end = this.leaves.length): Buffer {
    if (end === start) return createHash('sha256').digest();
    if (end - start === 1) return this.leaves[start] as Buffer;
    const key = `${start}:${end}`;
    let hash = this.memo.get(key);
    if (hash === undefined) {
      const k = splitPoint(end - start);
      hash = hashChildren(this.mth(start, start + k), this.mth(start + k, end));
      this.memo.set(key, hash);
    }
    return hash;
  }

  /** PATH(m, D[start:end]), RFC 9162 §2.1.3.1 (m relative to start). */
  path(m: number, start = 0, end = this.leaves.length): Buffer[] {
    if (end - start <= 1) return [];
    const k = splitPoint(end - start);
    return m < k
      ? [...this.path(m, start, start + k), this.mth(start + k, end)]
      : [...this.path(m - k, start + k, end), this.mth(start, start + k)];
  }

  /** SUBPROOF(m, D[start:end], b), RFC 9162 §2.1.4.1; PROOF(m, D[n]) = subproof(m). */
  subproof(m: number, start = 0, end = this.leaves.length, b = true): Buffer[] {
    if (m === end - start) return b ? [] : [this.mth(start, end)];
    const k = splitPoint(end - start);
    return m <= k
      ? [...this.subproof(m, start, start + k, b), this.mth(start + k, end)]
      : [...this.subproof(m - k, start + k, end, false), this.mth(start, start + k)];
  }
}

function mth(leaves: readonly Buffer[]): Buffer {
  return new ReferenceTree(leaves).mth();
}

function refPath(m: number, leaves: readonly Buffer[]): Buffer[] {
  return new ReferenceTree(leaves).path(m);
}

function refSubproof(m: number, leaves: readonly Buffer[]): Buffer[] {
  return new ReferenceTree(leaves).subproof(m);
}

/** For each PATH element: is the sibling to the left of the leaf's path? (the verifier's only freedom) */
function pathDirections(m: number, n: number): boolean[] {
  if (n <= 1) return [];
  const k = splitPoint(n);
  return m < k ? [...pathDirections(m, k), false] : [...pathDirections(m - k, n - k), true];
}

/** Distinct leaf hashes (a tamper test must not be fooled by two equal subtrees). */
function makeLeaves(count: number, salt = 'leaf'): Buffer[] {
  return Array.from({ length: count }, (_, i) => hashLeaf(Buffer.from(`${salt}:${i}`)));
}

/** Every complete node of a tree (the service's node table plus leaf hashes), keyed by nodeKey. */
function buildStore(leaves: readonly Buffer[]): Map<string, Buffer> {
  const tree = new ReferenceTree(leaves);
  const store = new Map<string, Buffer>();
  for (let level = 0; 2 ** level <= leaves.length; level += 1) {
    const width = 2 ** level;
    for (let index = 0; (index + 1) * width <= leaves.length; index += 1) {
      store.set(nodeKey({ level, index }), tree.mth(index * width, (index + 1) * width));
    }
  }
  return store;
}

/** A lookup that only answers for `allowed` refs: proves the assembler needs nothing else. */
function restrictedLookup(store: Map<string, Buffer>, allowed: readonly NodeRef[]): NodeLookup {
  const keys = new Set(allowed.map(nodeKey));
  return (ref) => {
    const key = nodeKey(ref);
    const hash = store.get(key);
    if (!keys.has(key) || hash === undefined) throw new Error(`unexpected lookup of node ${key}`);
    return hash;
  };
}

function fullLookup(store: Map<string, Buffer>): NodeLookup {
  return (ref) => {
    const hash = store.get(nodeKey(ref));
    if (hash === undefined) throw new Error(`node ${nodeKey(ref)} is not stored`);
    return hash;
  };
}

function flipBit(buf: Uint8Array, bit: number): Buffer {
  const copy = Buffer.from(buf);
  copy[Math.floor(bit / 8) % copy.length] ^= 1 << bit % 8;
  return copy;
}

const sortedKeys = (refs: readonly NodeRef[]): string[] => refs.map(nodeKey).sort();
const pairs = (refs: readonly [number, number][]): NodeRef[] => refs.map(([level, index]) => ({ level, index }));

// ---------------------------------------------------------------------------

describe('RFC 9162 hashing', () => {
  test('matches the transparency-dev rfc6962 hasher vectors', () => {
    assert.equal(emptyRoot().toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(rootFromLeaves([]).toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(hashLeaf(new Uint8Array()).toString('hex'), '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    assert.equal(hashLeaf(Buffer.from('L123456')).toString('hex'), '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56');
    assert.equal(
      hashChildren(Buffer.from('N123'), Buffer.from('N456')).toString('hex'),
      'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb',
    );
  });

  test('leaf and node hashes are domain separated', () => {
    const a = hashLeaf(Buffer.from('a'));
    const b = hashLeaf(Buffer.from('b'));
    assert.notDeepEqual(hashChildren(a, b), hashLeaf(Buffer.concat([a, b])));
    assert.notDeepEqual(hashChildren(a, b), hashChildren(b, a));
  });
});

describe('8-leaf vectors (transparency-dev/merkle proof/verify_test.go)', () => {
  const leafHashes = VECTOR_LEAVES.map(hashLeaf);
  const store = buildStore(leafHashes);

  test('roots of sizes 1..8: rootFromLeaves, Frontier and rootFromRefs', () => {
    const frontier = new Frontier(0, []);
    assert.deepEqual(frontier.root(), emptyRoot());
    for (let size = 1; size <= 8; size += 1) {
      const want = VECTOR_ROOTS[size - 1];
      assert.deepEqual(rootFromLeaves(leafHashes.slice(0, size)), want, `rootFromLeaves(${size})`);
      frontier.append(leafHashes[size - 1] as Buffer);
      assert.deepEqual(frontier.root(), want, `Frontier(${size})`);
      assert.deepEqual(rootFromRefs(size, fullLookup(store)), want, `rootFromRefs(${size})`);
    }
  });

  for (const v of VECTOR_INCLUSION) {
    test(`inclusion proof for leaf ${v.index} in tree ${v.size}`, () => {
      const refs = inclusionProofRefs(v.index, v.size);
      const proof = assembleInclusionProof(v.index, v.size, restrictedLookup(store, refs));
      assert.deepEqual(proof, v.proof);
      const root = VECTOR_ROOTS[v.size - 1] as Buffer;
      assert.equal(verifyInclusion(leafHashes[v.index] as Buffer, v.index, v.size, v.proof, root), true);
    });
  }

  for (const v of VECTOR_CONSISTENCY) {
    test(`consistency proof from ${v.m} to ${v.n}`, () => {
      const refs = consistencyProofRefs(v.m, v.n);
      const proof = assembleConsistencyProof(v.m, v.n, restrictedLookup(store, refs));
      assert.deepEqual(proof, v.proof);
      const oldRoot = VECTOR_ROOTS[v.m - 1] as Buffer;
      const newRoot = VECTOR_ROOTS[v.n - 1] as Buffer;
      assert.equal(verifyConsistency(v.m, v.n, v.proof, oldRoot, newRoot), true);
    });
  }

  test('every inclusion and consistency proof of the 8-leaf tree matches the RFC definition', () => {
    for (let size = 1; size <= 8; size += 1) {
      const leaves = leafHashes.slice(0, size);
      for (let index = 0; index < size; index += 1) {
        assert.deepEqual(assembleInclusionProof(index, size, fullLookup(store)), refPath(index, leaves));
      }
      for (let m = 1; m <= size; m += 1) {
        assert.deepEqual(assembleConsistencyProof(m, size, fullLookup(store)), refSubproof(m, leaves));
      }
    }
  });
});

describe('stored nodes a proof needs (transparency-dev/merkle proof/proof_test.go)', () => {
  for (const v of VECTOR_INCLUSION_REFS) {
    test(`inclusion ${v.index} in ${v.size}`, () => {
      assert.deepEqual(sortedKeys(inclusionProofRefs(v.index, v.size)), sortedKeys(pairs(v.refs)));
    });
  }
  for (const v of VECTOR_CONSISTENCY_REFS) {
    test(`consistency ${v.m} to ${v.n}`, () => {
      assert.deepEqual(sortedKeys(consistencyProofRefs(v.m, v.n)), sortedKeys(pairs(v.refs)));
    });
  }

  test('refs are listed left to right within an incomplete subtree', () => {
    // 95 = 64 + 16 + 8 + 4 + 2 + 1; the sibling [88, 95) folds (2,22), (1,46), (0,94).
    assert.deepEqual(inclusionProofRefs(81, 95), pairs([[0, 80], [1, 41], [2, 21], [2, 22], [1, 46], [0, 94], [4, 4], [6, 0]]));
  });

  test('frontier refs follow the binary decomposition of the size', () => {
    assert.deepEqual(frontierRefs(0), []);
    assert.deepEqual(frontierRefs(1), pairs([[0, 0]]));
    assert.deepEqual(frontierRefs(8), pairs([[3, 0]]));
    assert.deepEqual(frontierRefs(7), pairs([[2, 0], [1, 2], [0, 6]]));
    assert.deepEqual(frontierRefs(95), pairs([[6, 0], [4, 4], [3, 10], [2, 22], [1, 46], [0, 94]]));
  });

  test('bad parameters are refused', () => {
    assert.throws(() => inclusionProofRefs(0, 0), RangeError);
    assert.throws(() => inclusionProofRefs(1, 1), RangeError);
    assert.throws(() => inclusionProofRefs(8, 7), RangeError);
    assert.throws(() => inclusionProofRefs(-1, 7), RangeError);
    assert.throws(() => inclusionProofRefs(0.5, 7), RangeError);
    assert.throws(() => inclusionProofRefs(0, 2 ** 53), RangeError);
    assert.throws(() => consistencyProofRefs(5, 0), RangeError);
    assert.throws(() => consistencyProofRefs(9, 8), RangeError);
    assert.throws(() => frontierRefs(-1), RangeError);
    assert.throws(() => frontierRefs(Number.NaN), RangeError);
  });

  test('m == 0 and m == n need no nodes and give empty proofs', () => {
    assert.deepEqual(consistencyProofRefs(0, 0), []);
    assert.deepEqual(consistencyProofRefs(0, 17), []);
    assert.deepEqual(consistencyProofRefs(17, 17), []);
    const lookup: NodeLookup = () => assert.fail('no lookup expected');
    assert.deepEqual(assembleConsistencyProof(0, 17, lookup), []);
    assert.deepEqual(assembleConsistencyProof(17, 17, lookup), []);
  });

  test('a lookup that returns a malformed hash is refused', () => {
    assert.throws(() => assembleInclusionProof(0, 2, () => Buffer.alloc(31)), /32 bytes/);
    assert.throws(() => rootFromRefs(3, () => Buffer.alloc(33)), /32 bytes/);
  });

  test('at 10 million entries and at 2^53 - 1 a proof needs O(log n) nodes', () => {
    const maxRefs = (size: number): number => 2 * Math.ceil(Math.log2(size + 1));
    for (const [index, size] of [[0, 10_000_000], [9_999_999, 10_000_000], [4_194_303, 10_000_000], [123_456_789_012, 2 ** 53 - 1], [2 ** 53 - 2, 2 ** 53 - 1]] as const) {
      const refs = inclusionProofRefs(index, size);
      assert.ok(refs.length <= maxRefs(size), `inclusion ${index}/${size}: ${refs.length} refs`);
    }
    for (const [m, n] of [[1, 10_000_000], [5_000_001, 10_000_000], [9_999_999, 10_000_000], [2 ** 40 + 12345, 2 ** 53 - 1]] as const) {
      const refs = consistencyProofRefs(m, n);
      assert.ok(refs.length <= maxRefs(n), `consistency ${m}/${n}: ${refs.length} refs`);
    }
  });
});

/**
 * A tree whose leaves are all the same hash: every node of level l has the same
 * hash, so trees of any size up to 2^53 - 1 can be checked without 2^53 work.
 * This exercises the index arithmetic where 32-bit operators would break.
 */
describe('huge trees (uniform leaves)', () => {
  const levelHash: Buffer[] = [hashLeaf(Buffer.from('uniform'))];
  for (let l = 1; l <= 53; l += 1) levelHash.push(hashChildren(levelHash[l - 1] as Buffer, levelHash[l - 1] as Buffer));
  const lookup: NodeLookup = (ref) => {
    assert.ok(ref.index * 2 ** ref.level < 2 ** 53, `node ${nodeKey(ref)} is out of range`);
    return levelHash[ref.level] as Buffer;
  };
  const leaf = levelHash[0] as Buffer;

  test('inclusion and consistency proofs verify near 2^53', () => {
    const sizes = [2 ** 32 + 1, 2 ** 52, 2 ** 52 + 3, 2 ** 53 - 1];
    for (const size of sizes) {
      const root = rootFromRefs(size, lookup);
      for (const index of [0, 1, 2 ** 31, 2 ** 32, size - 2, size - 1]) {
        const proof = assembleInclusionProof(index, size, lookup);
        assert.equal(verifyInclusion(leaf, index, size, proof, root), true, `inclusion ${index}/${size}`);
      }
      for (const m of [1, 2 ** 31 - 1, 2 ** 32, 2 ** 32 + 1, size - 1]) {
        const proof = assembleConsistencyProof(m, size, lookup);
        const oldRoot = rootFromRefs(m, lookup);
        assert.equal(verifyConsistency(m, size, proof, oldRoot, root), true, `consistency ${m}/${size}`);
      }
    }
  });

  test('a frontier restored near 2^53 keeps appending', () => {
    const size = 2 ** 53 - 3;
    const frontier = Frontier.fromStore(size, lookup);
    assert.deepEqual(frontier.root(), rootFromRefs(size, lookup));
    frontier.append(leaf);
    assert.deepEqual(frontier.root(), rootFromRefs(size + 1, lookup));
    frontier.append(leaf);
    assert.equal(frontier.size, 2 ** 53 - 1);
    assert.deepEqual(frontier.root(), rootFromRefs(2 ** 53 - 1, lookup));
    assert.throws(() => frontier.append(leaf), RangeError);
  });
});

describe('verification edge cases (RFC 9162 §2.1.3.2, §2.1.4.2)', () => {
  const someHash = hex('abacaba000000000000000000000000000000000000000000060061e00123456');
  const leafHashes = VECTOR_LEAVES.map(hashLeaf);

  test('inclusion: index >= size, size 0 and malformed hashes are rejected', () => {
    for (const [index, size] of [[0, 0], [1, 0], [1, 1], [2, 1], [8, 8]] as const) {
      assert.equal(verifyInclusion(someHash, index, size, [], someHash), false, `${index}/${size}`);
      assert.equal(verifyInclusion(someHash, index, size, [], emptyRoot()), false, `${index}/${size}`);
    }
    assert.equal(verifyInclusion(someHash, -1, 2, [someHash], someHash), false);
    assert.equal(verifyInclusion(someHash, 0.5, 2, [someHash], someHash), false);
    // A one-leaf tree: the root is the leaf hash and the proof is empty.
    const h = hashLeaf(Buffer.from('data'));
    assert.equal(verifyInclusion(h, 0, 1, [], h), true);
    assert.equal(verifyInclusion(h, 0, 1, [], someHash), false);
    assert.equal(verifyInclusion(h, 0, 1, [], new Uint8Array()), false);
    assert.equal(verifyInclusion(new Uint8Array(), 0, 1, [], new Uint8Array()), false);
    assert.equal(verifyInclusion(h.subarray(0, 31), 0, 1, [], h.subarray(0, 31)), false);
  });

  test('consistency: the trivial cases', () => {
    const r1 = VECTOR_ROOTS[0] as Buffer;
    const r2 = VECTOR_ROOTS[1] as Buffer;
    assert.equal(verifyConsistency(1, 1, [], r1, r1), true);
    assert.equal(verifyConsistency(1, 1, [], r1, r2), false);
    assert.equal(verifyConsistency(1, 1, [emptyRoot()], r1, r1), false);
    assert.equal(verifyConsistency(0, 0, [], emptyRoot(), emptyRoot()), true);
    assert.equal(verifyConsistency(0, 5, [], emptyRoot(), r2), true);
    assert.equal(verifyConsistency(0, 5, [emptyRoot()], emptyRoot(), r2), false);
    // Stricter than transparency-dev: an "old root" of the empty tree must be MTH({}).
    assert.equal(verifyConsistency(0, 5, [], r1, r2), false);
    // Time travel to the past.
    assert.equal(verifyConsistency(1, 0, [], r1, r2), false);
    assert.equal(verifyConsistency(2, 1, [], r1, r2), false);
    // Step 1: an empty path between different sizes.
    assert.equal(verifyConsistency(1, 2, [], r1, r2), false);
    assert.equal(verifyConsistency(-1, 2, [], r1, r2), false);
  });

  test('corrupted vector proofs are rejected (the probes of verify_test.go)', () => {
    for (const v of VECTOR_INCLUSION.filter((x) => x.proof.length > 0)) {
      const root = VECTOR_ROOTS[v.size - 1] as Buffer;
      const leaf = leafHashes[v.index] as Buffer;
      const bad: [number, number, Uint8Array, Uint8Array[], Uint8Array][] = [
        [v.index - 1, v.size, leaf, v.proof, root],
        [v.index + 1, v.size, leaf, v.proof, root],
        [v.index ^ 2, v.size, leaf, v.proof, root],
        [v.index, v.size * 2, leaf, v.proof, root],
        [v.index, Math.floor(v.size / 2), leaf, v.proof, root],
        [v.index, v.size, Buffer.from('WrongLeaf'), v.proof, root],
        [v.index, v.size, leaf, v.proof, emptyRoot()],
        [v.index, v.size, leaf, v.proof, someHash],
        [v.index, v.size, leaf, [...v.proof, new Uint8Array()], root],
        [v.index, v.size, leaf, [...v.proof, root], root],
        [v.index, v.size, leaf, [new Uint8Array(), ...v.proof], root],
        [v.index, v.size, leaf, [root, ...v.proof], root],
        [v.index, v.size, leaf, v.proof.slice(0, -1), root],
        [v.index, v.size, leaf, [v.proof[0] as Buffer, someHash, ...v.proof.slice(1)], root],
      ];
      bad.forEach(([index, size, leafHash, proof, r], i) => {
        assert.equal(verifyInclusion(leafHash, index, size, proof, r), false, `inclusion ${v.index}/${v.size} probe ${i}`);
      });
    }
    for (const v of VECTOR_CONSISTENCY.filter((x) => x.proof.length > 0)) {
      const r1 = VECTOR_ROOTS[v.m - 1] as Buffer;
      const r2 = VECTOR_ROOTS[v.n - 1] as Buffer;
      const bad: [number, number, Uint8Array, Uint8Array, Uint8Array[]][] = [
        [v.m - 1, v.n, r1, r2, v.proof],
        [v.m + 1, v.n, r1, r2, v.proof],
        [v.m ^ 2, v.n, r1, r2, v.proof],
        [v.m, v.n * 2, r1, r2, v.proof],
        [v.m, Math.floor(v.n / 2), r1, r2, v.proof],
        [v.m, v.n, Buffer.from('WrongRoot'), r2, v.proof],
        [v.m, v.n, r1, Buffer.from('WrongRoot'), v.proof],
        [v.m, v.n, r2, r1, v.proof],
        [v.m, v.n, r1, r2, []],
        [v.m, v.n, r1, r2, [...v.proof, new Uint8Array()]],
        [v.m, v.n, r1, r2, [...v.proof, r1]],
        [v.m, v.n, r1, r2, [...v.proof, r2]],
        [v.m, v.n, r1, r2, [new Uint8Array(), ...v.proof]],
        [v.m, v.n, r1, r2, [r1, ...v.proof]],
        [v.m, v.n, r1, r2, [r2, ...v.proof]],
        [v.m, v.n, r1, r2, [v.proof[0] as Buffer, ...v.proof]],
        [v.m, v.n, r1, r2, v.proof.slice(0, -1)],
        ...v.proof.map((_, i): [number, number, Uint8Array, Uint8Array, Uint8Array[]] => [
          v.m,
          v.n,
          r1,
          r2,
          v.proof.map((p, j) => (i === j ? flipBit(p, 4) : p)),
        ]),
      ];
      bad.forEach(([m, n, a, b, proof], i) => {
        assert.equal(verifyConsistency(m, n, proof, a, b), false, `consistency ${v.m}/${v.n} probe ${i}`);
      });
    }
  });

  test('a tree size is bound by the signed root, not by the proof', () => {
    // PATH(0, D[6]) and PATH(0, D[7]) have the same shape, so the size-6 proof
    // and root also "verify" at size 7: only a checkpoint ties a size to a root.
    const leaves = makeLeaves(6);
    const proof = refPath(0, leaves);
    assert.equal(verifyInclusion(leaves[0] as Buffer, 0, 7, proof, mth(leaves)), true);
    assert.equal(verifyInclusion(leaves[0] as Buffer, 0, 9, proof, mth(leaves)), false);
  });
});

describe('properties over random trees (fast-check)', () => {
  const sizeArb = fc.integer({ min: 1, max: 300 });

  test('every inclusion proof from stored refs equals PATH from the leaves, verifies, and needs O(log n) refs', () => {
    fc.assert(
      fc.property(sizeArb, fc.string({ maxLength: 8 }), (size, salt) => {
        const leaves = makeLeaves(size, salt);
        const tree = new ReferenceTree(leaves);
        const store = buildStore(leaves);
        const root = tree.mth();
        assert.deepEqual(rootFromRefs(size, fullLookup(store)), root);
        for (let index = 0; index < size; index += 1) {
          const refs = inclusionProofRefs(index, size);
          assert.ok(refs.length <= 2 * Math.ceil(Math.log2(size + 1)));
          const proof = assembleInclusionProof(index, size, restrictedLookup(store, refs));
          assert.deepEqual(proof, tree.path(index));
          assert.ok(verifyInclusion(leaves[index] as Buffer, index, size, proof, root));
        }
      }),
      { numRuns: 40 },
    );
  });

  test('every consistency proof from stored refs equals SUBPROOF from the leaves and verifies', () => {
    fc.assert(
      fc.property(sizeArb, fc.string({ maxLength: 8 }), (n, salt) => {
        const leaves = makeLeaves(n, salt);
        const tree = new ReferenceTree(leaves);
        const store = buildStore(leaves);
        const newRoot = tree.mth();
        for (let m = 0; m <= n; m += 1) {
          const refs = consistencyProofRefs(m, n);
          assert.ok(refs.length <= 2 * Math.ceil(Math.log2(n + 1)));
          const proof = assembleConsistencyProof(m, n, restrictedLookup(store, refs));
          assert.deepEqual(proof, m === 0 ? [] : tree.subproof(m));
          assert.ok(verifyConsistency(m, n, proof, tree.mth(0, m), newRoot), `${m} -> ${n}`);
        }
      }),
      { numRuns: 40 },
    );
  });

  test('flipping any bit of a proof element, the leaf or the root breaks inclusion', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 300 }), fc.nat(), fc.nat(), fc.nat({ max: 255 }), (size, i, e, bit) => {
        const index = i % size;
        const leaves = makeLeaves(size);
        const proof = refPath(index, leaves);
        const root = mth(leaves);
        const leaf = leaves[index] as Buffer;
        const at = e % proof.length;
        const tampered = proof.map((p, j) => (j === at ? flipBit(p, bit) : p));
        assert.equal(verifyInclusion(leaf, index, size, tampered, root), false);
        assert.equal(verifyInclusion(leaf, index, size, proof, flipBit(root, bit)), false);
        assert.equal(verifyInclusion(flipBit(leaf, bit), index, size, proof, root), false);
      }),
      { numRuns: 300 },
    );
  });

  test('a wrong index never verifies; a wrong size verifies only where PATH has the same shape', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 600 }), (size, i, j, otherSize) => {
        const index = i % size;
        const otherIndex = j % size;
        const leaves = makeLeaves(size);
        const proof = refPath(index, leaves);
        const root = mth(leaves);
        const leaf = leaves[index] as Buffer;
        if (otherIndex !== index) assert.equal(verifyInclusion(leaf, otherIndex, size, proof, root), false);
        if (otherSize !== size) {
          const sameShape = index < otherSize && pathDirections(index, otherSize).join() === pathDirections(index, size).join();
          assert.equal(verifyInclusion(leaf, index, otherSize, proof, root), sameShape);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('flipping any bit of a proof element or either root breaks consistency', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 300 }), fc.nat(), fc.nat(), fc.nat({ max: 255 }), (n, mm, e, bit) => {
        const m = 1 + (mm % (n - 1));
        const leaves = makeLeaves(n);
        const proof = refSubproof(m, leaves);
        const oldRoot = mth(leaves.slice(0, m));
        const newRoot = mth(leaves);
        const at = e % proof.length;
        const tampered = proof.map((p, j) => (j === at ? flipBit(p, bit) : p));
        assert.equal(verifyConsistency(m, n, tampered, oldRoot, newRoot), false);
        assert.equal(verifyConsistency(m, n, proof, flipBit(oldRoot, bit), newRoot), false);
        assert.equal(verifyConsistency(m, n, proof, oldRoot, flipBit(newRoot, bit)), false);
        assert.equal(verifyConsistency(m, n, proof, newRoot, oldRoot), false);
        assert.equal(verifyConsistency(m, n, proof.slice(0, -1), oldRoot, newRoot), false);
        assert.equal(verifyConsistency(m, n, [...proof, newRoot], oldRoot, newRoot), false);
      }),
      { numRuns: 300 },
    );
  });

  test('a consistency proof does not verify for a different old size with a differently shaped proof', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 300 }), fc.nat(), fc.nat(), (n, a, b) => {
        const m = 1 + (a % (n - 1));
        const otherM = 1 + (b % (n - 1));
        fc.pre(otherM !== m);
        const tree = new ReferenceTree(makeLeaves(n));
        const proof = tree.subproof(m);
        // The old root stays that of size m: a verifier told (otherM, root(m)) is being lied to.
        const verified = verifyConsistency(otherM, n, proof, tree.mth(0, m), tree.mth());
        if (tree.subproof(otherM).length !== proof.length) assert.equal(verified, false);
        // With the honest old root of otherM it never verifies.
        assert.equal(verifyConsistency(otherM, n, proof, tree.mth(0, otherM), tree.mth()), false);
      }),
      { numRuns: 300 },
    );
  });

  test('Frontier.append matches rootFromLeaves and emits exactly the complete nodes', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 16 }), { maxLength: 300, size: 'max' }), fc.nat(), (data, cut) => {
        const leaves = data.map(hashLeaf);
        const frontier = new Frontier(0, []);
        const emitted = new Map<string, Buffer>();
        leaves.forEach((leaf, i) => {
          for (const node of frontier.append(leaf)) {
            assert.ok(node.level >= 1);
            assert.ok(!emitted.has(nodeKey(node)), `node ${nodeKey(node)} emitted twice`);
            emitted.set(nodeKey(node), node.hash);
          }
          assert.equal(frontier.size, i + 1);
          assert.deepEqual(frontier.root(), rootFromLeaves(leaves.slice(0, i + 1)));
        });
        const complete = new Map([...buildStore(leaves)].filter(([key]) => !key.startsWith('0:')));
        assert.deepEqual(emitted, complete);
        assert.deepEqual(
          frontier.nodes().map(({ level, index }) => ({ level, index })),
          frontierRefs(leaves.length),
        );

        // A frontier restored from the store at any size continues identically.
        const at = leaves.length === 0 ? 0 : cut % (leaves.length + 1);
        const store = buildStore(leaves);
        const restored = Frontier.fromStore(at, fullLookup(store));
        assert.deepEqual(restored.root(), rootFromLeaves(leaves.slice(0, at)));
        for (const leaf of leaves.slice(at)) restored.append(leaf);
        assert.deepEqual(restored.root(), frontier.root());
      }),
      { numRuns: 60 },
    );
  });

  test('the Frontier refuses a state of the wrong shape', () => {
    const h = hashLeaf(Buffer.from('x'));
    assert.throws(() => new Frontier(3, [h]), RangeError);
    assert.throws(() => new Frontier(1, [h, h]), RangeError);
    assert.throws(() => new Frontier(1, [h.subarray(1)]), RangeError);
    assert.throws(() => new Frontier(-1, []), RangeError);
    assert.throws(() => new Frontier(0, []).append(Buffer.alloc(31)), RangeError);
  });
});
