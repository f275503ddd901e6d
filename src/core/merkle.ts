/**
 * RFC 9162 Merkle tree over the ledger's leaf hashes (DESIGN.md §3, §4).
 *
 * Pure code: no framework, no database. The service persists every *complete*
 * subtree node and asks this module which nodes a proof needs; the offline
 * verifier uses only the hashing and `verify*` functions.
 *
 * Node model. Node (level, index) is the root of the complete subtree that
 * covers leaves [index·2^level, (index+1)·2^level). Level 0 nodes are the leaf
 * hashes themselves (the ledger stores them with its entries, leaf index =
 * seq − 1); nodes of level >= 1 live in a node table. A node exists once all
 * of its leaves exist and never changes afterwards, which is what makes the
 * table append-only. The root of a tree whose size is not a power of two is
 * not a stored node: it is folded from the complete nodes of the size's binary
 * decomposition (its "frontier").
 *
 * Numbers. Leaf indexes and tree sizes are JavaScript `number`s, exact up to
 * Number.MAX_SAFE_INTEGER (2^53 − 1), far above any ledger this service will
 * hold. Every function checks that its inputs are safe non-negative integers
 * and never uses the 32-bit bitwise operators on them.
 */
import { createHash, hash } from 'node:crypto';

/** Size in bytes of every node hash (SHA-256). */
export const HASH_SIZE = 32;

/** A complete subtree: covers leaves [index·2^level, (index+1)·2^level). */
export interface NodeRef {
  readonly level: number;
  readonly index: number;
}

/** A complete subtree node together with its hash. */
export interface StoredNode extends NodeRef {
  readonly hash: Buffer;
}

/**
 * Returns the hash of a stored complete node. Level 0 refs are leaf hashes.
 * It must throw (not return garbage) when the node is unknown.
 */
export type NodeLookup = (ref: NodeRef) => Uint8Array;

/** A half-open leaf range [start, end) whose MTH is one proof element. */
export interface LeafRange {
  readonly start: number;
  readonly end: number;
}

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** Leaf hash, RFC 9162 §2.1.1: SHA-256(0x00 || data). */
export function hashLeaf(data: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

/** 0x01 || left || right, reused: hashChildren is synchronous. */
const NODE_INPUT = Buffer.alloc(1 + 2 * HASH_SIZE);

/** Interior node hash, RFC 9162 §2.1.1: SHA-256(0x01 || left || right). One-shot `hash` when both are hashes (the hot path of proofs). */
export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
  }
  NODE_INPUT[0] = 0x01;
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 1 + HASH_SIZE);
  return hash('sha256', NODE_INPUT, 'buffer');
}

/** MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1). */
export function emptyRoot(): Buffer {
  return createHash('sha256').digest();
}

/** A stable string key for a node, e.g. to index the rows of one SQL query in a Map. */
export function nodeKey(ref: NodeRef): string {
  return `${ref.level}:${ref.index}`;
}

/**
 * MTH(D[n]) straight from the definition (RFC 9162 §2.1.1): the reference the
 * stored-node code is tested against, and what a verifier uses for small sets.
 */
export function rootFromLeaves(leafHashes: readonly Uint8Array[]): Buffer {
  if (leafHashes.length === 0) return emptyRoot();
  return mthOfRange(leafHashes, 0, leafHashes.length);
}

function mthOfRange(leaves: readonly Uint8Array[], start: number, end: number): Buffer {
  if (end - start === 1) return Buffer.from(leaves[start] as Uint8Array);
  const k = largestPowerOfTwoBelow(end - start);
  return hashChildren(mthOfRange(leaves, start, start + k), mthOfRange(leaves, start + k, end));
}

/**
 * The complete nodes of the binary decomposition of `size`, left to right
 * (largest first). Folding their hashes from the right gives MTH(D[size]); they
 * are also exactly the state an appender needs to continue the tree.
 */
export function frontierRefs(size: number): NodeRef[] {
  assertCount(size, 'size');
  return rangeRefs({ start: 0, end: size });
}

/** Root of the tree of `size` leaves, from stored nodes (at most ~53 lookups). */
export function rootFromRefs(size: number, lookup: NodeLookup): Buffer {
  assertCount(size, 'size');
  if (size === 0) return emptyRoot();
  return hashRange({ start: 0, end: size }, lookup);
}

/**
 * The compact range over the right edge of the tree: the hashes of the
 * complete subtrees of the size's binary decomposition. The sequencer keeps one
 * per tenant so that appending a leaf costs O(1) amortised hashes and yields
 * the new complete nodes to insert in the same transaction as the entry.
 */
export class Frontier {
  private readonly stack: StoredNode[];
  private leafCount: number;

  /**
   * @param size the tree size this frontier describes
   * @param hashes the hashes of `frontierRefs(size)`, in that order
   */
  constructor(size: number, hashes: readonly Uint8Array[]) {
    const refs = frontierRefs(size);
    if (hashes.length !== refs.length) {
      throw new RangeError(`a frontier of size ${size} needs ${refs.length} hashes, got ${hashes.length}`);
    }
    this.stack = refs.map((ref, i) => ({ ...ref, hash: checkedHash(hashes[i] as Uint8Array, ref) }));
    this.leafCount = size;
  }

  /** Rebuilds the frontier of `size` from the node store. */
  static fromStore(size: number, lookup: NodeLookup): Frontier {
    return new Frontier(size, frontierRefs(size).map((ref) => lookup(ref)));
  }

  get size(): number {
    return this.leafCount;
  }

  /** The current frontier nodes, left to right (copies: callers cannot corrupt the state). */
  nodes(): StoredNode[] {
    return this.stack.map((n) => ({ level: n.level, index: n.index, hash: Buffer.from(n.hash) }));
  }

  /**
   * Appends one leaf hash and returns the complete nodes of level >= 1 that
   * this append created, lowest first: exactly the rows to add to the node
   * table (the leaf itself is stored with its entry).
   */
  append(leafHash: Uint8Array): StoredNode[] {
    if (this.leafCount >= Number.MAX_SAFE_INTEGER) throw new RangeError('tree size would exceed 2^53 - 1');
    let carry: StoredNode = { level: 0, index: this.leafCount, hash: checkedHash(leafHash, { level: 0, index: this.leafCount }) };
    const created: StoredNode[] = [];
    for (let last = this.stack.at(-1); last !== undefined && last.level === carry.level; last = this.stack.at(-1)) {
      this.stack.pop();
      carry = { level: carry.level + 1, index: last.index / 2, hash: hashChildren(last.hash, carry.hash) };
      created.push({ level: carry.level, index: carry.index, hash: Buffer.from(carry.hash) });
    }
    this.stack.push(carry);
    this.leafCount += 1;
    return created;
  }

  /** MTH of the current tree. */
  root(): Buffer {
    if (this.stack.length === 0) return emptyRoot();
    return foldRight(this.stack.map((n) => n.hash));
  }
}

/**
 * The stored nodes (level 0 = leaf hashes) from which the inclusion proof of
 * leaf `index` in the tree of `size` is assembled: at most ~2·log2(size) refs,
 * distinct, in proof order. One query fetches them all.
 */
export function inclusionProofRefs(index: number, size: number): NodeRef[] {
  return refsOf(inclusionRanges(index, size));
}

/** The stored nodes from which the consistency proof from size `m` to size `n` is assembled. */
export function consistencyProofRefs(m: number, n: number): NodeRef[] {
  return refsOf(consistencyRanges(m, n));
}

/**
 * PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf sibling first. An element
 * that is the root of an incomplete right-edge subtree (at most one per proof)
 * is folded from the complete nodes it decomposes into.
 */
export function assembleInclusionProof(index: number, size: number, lookup: NodeLookup): Buffer[] {
  return inclusionRanges(index, size).map((range) => hashRange(range, lookup));
}

/**
 * PROOF(m, D[n]) of RFC 9162 §2.1.4.1 for 0 < m < n. For m == n the proof is
 * empty (SUBPROOF(m, D[m], true) = {}), and so it is for m == 0: the empty tree
 * is a prefix of every tree (the RFC defines proofs only for 0 < m).
 */
export function assembleConsistencyProof(m: number, n: number, lookup: NodeLookup): Buffer[] {
  return consistencyRanges(m, n).map((range) => hashRange(range, lookup));
}

/**
 * RFC 9162 §2.1.3.2, step by step. Returns false (never throws) for any
 * malformed input: index >= size, a proof of the wrong length, hashes that
 * are not 32 bytes.
 */
export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isCount(index) || !isCount(size) || index >= size) return false;
  if (!isHash(leafHash) || !isHash(root) || !proof.every(isHash)) return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leafHash;
  for (const p of proof) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      r = hashChildren(p, r);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && bytesEqual(r, root);
}

/**
 * RFC 9162 §2.1.4.2, step by step, for 0 < m < n. The RFC leaves the other
 * cases to the caller; here m == n holds iff the proof is empty and the roots
 * are equal, m == 0 holds iff the proof is empty and oldRoot is the empty-tree
 * hash, and m > n never holds.
 */
export function verifyConsistency(
  m: number,
  n: number,
  proof: readonly Uint8Array[],
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
): boolean {
  if (!isCount(m) || !isCount(n) || m > n) return false;
  if (!isHash(oldRoot) || !isHash(newRoot) || !proof.every(isHash)) return false;
  if (m === 0) return proof.length === 0 && bytesEqual(oldRoot, emptyRoot());
  if (m === n) return proof.length === 0 && bytesEqual(oldRoot, newRoot);
  // Step 1: an empty path proves nothing between different sizes.
  if (proof.length === 0) return false;
  // Step 2: when m is a power of two the old root is itself a node of the path.
  const path = isPowerOfTwo(m) ? [oldRoot, ...proof] : [...proof];
  // Steps 3-4.
  let fn = m - 1;
  let sn = n - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // Step 5.
  let fr: Uint8Array = path[0] as Uint8Array;
  let sr: Uint8Array = fr;
  // Step 6.
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  // Step 7.
  return bytesEqual(fr, oldRoot) && bytesEqual(sr, newRoot) && sn === 0;
}

/**
 * The leaf ranges of PATH(index, D[size]), leaf sibling first. Walking down
 * from the root, the sibling of a left turn is the (possibly incomplete)
 * remainder of the tree and the sibling of a right turn is a complete subtree;
 * after the first left turn every subtree is complete.
 */
function inclusionRanges(index: number, size: number): LeafRange[] {
  assertCount(index, 'index');
  assertCount(size, 'size');
  if (index >= size) throw new RangeError(`leaf index ${index} is not below tree size ${size}`);
  const topDown: LeafRange[] = [];
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const k = largestPowerOfTwoBelow(end - start);
    if (index < start + k) {
      topDown.push({ start: start + k, end });
      end = start + k;
    } else {
      topDown.push({ start, end: start + k });
      start += k;
    }
  }
  return topDown.reverse();
}

/** The leaf ranges of PROOF(m, D[n]) = SUBPROOF(m, D[n], true), innermost first. */
function consistencyRanges(m: number, n: number): LeafRange[] {
  assertCount(m, 'm');
  assertCount(n, 'n');
  if (m > n) throw new RangeError(`old size ${m} is larger than new size ${n}`);
  if (m === 0 || m === n) return [];
  const topDown: LeafRange[] = [];
  let start = 0;
  let end = n;
  let wholeOldTreeIsKnown = true; // the "b" flag of SUBPROOF
  for (;;) {
    if (m - start === end - start) {
      if (!wholeOldTreeIsKnown) topDown.push({ start, end });
      break;
    }
    const k = largestPowerOfTwoBelow(end - start);
    if (m - start <= k) {
      topDown.push({ start: start + k, end });
      end = start + k;
    } else {
      topDown.push({ start, end: start + k });
      start += k;
      wholeOldTreeIsKnown = false;
    }
  }
  return topDown.reverse();
}

/**
 * The complete nodes whose fold is MTH(D[start:end]), left to right. Valid for
 * the ranges proofs use: `start` is a multiple of the largest power of two not
 * above end − start, so each piece of the size's binary decomposition is an
 * aligned, stored node.
 */
export function rangeRefs(range: LeafRange): NodeRef[] {
  const refs: NodeRef[] = [];
  let pos = range.start;
  let remaining = range.end - range.start;
  for (let level = remaining > 0 ? log2(largestPowerOfTwoAtMost(remaining)) : 0; remaining > 0; level -= 1) {
    const width = 2 ** level;
    if (remaining >= width) {
      refs.push({ level, index: pos / width });
      pos += width;
      remaining -= width;
    }
  }
  return refs;
}

function hashRange(range: LeafRange, lookup: NodeLookup): Buffer {
  return foldRight(rangeRefs(range).map((ref) => checkedHash(lookup(ref), ref)));
}

function refsOf(ranges: readonly LeafRange[]): NodeRef[] {
  const seen = new Set<string>();
  const refs: NodeRef[] = [];
  for (const ref of ranges.flatMap(rangeRefs)) {
    const key = nodeKey(ref);
    if (!seen.has(key)) {
      seen.add(key);
      refs.push(ref);
    }
  }
  return refs;
}

/** MTH of a run of complete subtrees of strictly decreasing size: hash them together from the right. */
function foldRight(hashes: readonly Uint8Array[]): Buffer {
  let acc: Buffer = Buffer.from(hashes[hashes.length - 1] as Uint8Array);
  for (let i = hashes.length - 2; i >= 0; i -= 1) acc = hashChildren(hashes[i] as Uint8Array, acc);
  return acc;
}

/**
 * The largest power of two strictly below n (n >= 2): the split point k of
 * RFC 9162 §2.1.1. Math.clz32 (exact below 2^32, where it reads n as an
 * unsigned 32-bit integer) instead of a loop: this runs for every level of
 * every proof the export and the verifier build; a loop beyond.
 */
export function largestPowerOfTwoBelow(n: number): number {
  return n <= 2 ** 31 ? 2 ** (31 - Math.clz32(n - 1)) : largestPowerOfTwoAtMost(n - 1);
}

/** The largest power of two not above n (n >= 1). */
export function largestPowerOfTwoAtMost(n: number): number {
  if (n < 2 ** 32) return 2 ** (31 - Math.clz32(n));
  let k = 2 ** 32;
  while (k * 2 <= n) k *= 2;
  return k;
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && largestPowerOfTwoAtMost(n) === n;
}

/** log2 of a power of two. */
export function log2(n: number): number {
  return n < 2 ** 32 ? 31 - Math.clz32(n) : Math.round(Math.log2(n));
}

function isOdd(n: number): boolean {
  return n % 2 === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function assertCount(n: number, name: string): void {
  if (!isCount(n)) throw new RangeError(`${name} must be a safe non-negative integer, got ${n}`);
}

function isHash(h: Uint8Array): boolean {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

function checkedHash(hash: Uint8Array, ref: NodeRef): Buffer {
  if (!isHash(hash)) throw new RangeError(`node ${nodeKey(ref)} hash must be ${HASH_SIZE} bytes`);
  return Buffer.from(hash);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
