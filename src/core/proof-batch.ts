import { hashChildren, isPowerOfTwo, largestPowerOfTwoBelow, log2, rangeRefs, type NodeRef } from './merkle';

/** Stored nodes of one level read as one index range: `from..to` inclusive. */
export interface NodeRange {
  readonly level: number;
  readonly from: number;
  readonly to: number;
}

/** Gives the hex of a stored complete node (level 0 = leaf hash); must throw when it is unknown. */
export type NodeHex = (level: number, index: number) => string;

/**
 * RFC 9162 inclusion proofs of many leaves of one tree at once, as the JSON
 * text the evidence bundle writes (`["<hex>",…]`, leaf sibling first): the
 * export proves every entry of a page to one checkpoint.
 *
 * One descent of the tree from the root, visiting only the subtrees that hold
 * a requested leaf, does both halves of the work. `needs()` lists the stored
 * nodes the proofs take (for one read: a page of contiguous seqs needs about
 * one contiguous run of nodes per level, see `nodeRanges`). `texts()` builds
 * the proofs: the siblings from the root down to a subtree are common to all
 * its leaves, so each subtree's tail of proof text is built once and shared
 * by its leaves, and each node's hex is quoted once per page. Same proofs as
 * `assembleInclusionProof` leaf by leaf (a property test checks it).
 *
 * An incomplete subtree (only on the right edge of the tree) is folded from
 * the complete nodes it decomposes into, once per tree: the fold is kept, and
 * `needs()` stops asking for its parts.
 */
export class ProofBatch {
  /** Quoted hex of folded right-edge ranges, by their first leaf (at most log2(size) of them). */
  private readonly folded = new Map<number, string>();

  /** `size`: below 2^47 leaves, so that `nodeNumber` keys stay exact. */
  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 1 || size >= 2 ** 47) throw new RangeError(`tree size ${size} is not an integer in [1, 2^47)`);
  }

  /** The distinct stored nodes the proofs of these leaf indexes (ascending, distinct) take. */
  needs(indexes: readonly number[]): NodeRef[] {
    this.check(indexes);
    const seen = new Set<number>();
    const out: NodeRef[] = [];
    const add = (level: number, index: number) => {
      const k = nodeNumber(level, index);
      if (!seen.has(k)) {
        seen.add(k);
        out.push({ level, index });
      }
    };
    const sibling = (start: number, end: number) => {
      const width = end - start;
      if (isPowerOfTwo(width)) add(log2(width), start / width);
      else if (!this.folded.has(start)) for (const r of rangeRefs({ start, end })) add(r.level, r.index);
    };
    const visit = (lo: number, hi: number, start: number, end: number): void => {
      if (end - start === 1) return;
      const m = start + largestPowerOfTwoBelow(end - start);
      const p = firstAtLeast(indexes, lo, hi, m);
      if (p > lo) {
        sibling(m, end);
        visit(lo, p, start, m);
      }
      if (p < hi) {
        sibling(start, m);
        visit(p, hi, m, end);
      }
    };
    if (indexes.length) visit(0, indexes.length, 0, this.size);
    return out;
  }

  /** The proofs of these leaf indexes (ascending, distinct) as JSON array text, in the same order. */
  texts(indexes: readonly number[], hex: NodeHex): string[] {
    this.check(indexes);
    const out = new Array<string>(indexes.length);
    const visit = (lo: number, hi: number, start: number, end: number, tail: string): void => {
      if (end - start === 1) {
        out[lo] = `[${tail}]`;
        return;
      }
      const m = start + largestPowerOfTwoBelow(end - start);
      const p = firstAtLeast(indexes, lo, hi, m);
      if (p > lo) visit(lo, p, start, m, prepend(this.rangeText(m, end, hex), tail));
      if (p < hi) visit(p, hi, m, end, prepend(this.rangeText(start, m, hex), tail));
    };
    if (indexes.length) visit(0, indexes.length, 0, this.size, '');
    return out;
  }

  /** Quoted hex of MTH(leaves [start, end)): one stored node when complete, else the fold of its decomposition. */
  private rangeText(start: number, end: number, hex: NodeHex): string {
    const width = end - start;
    if (isPowerOfTwo(width)) return `"${hex(log2(width), start / width)}"`;
    let text = this.folded.get(start);
    if (text === undefined) {
      const refs = rangeRefs({ start, end });
      let acc: Buffer = Buffer.from(hex(refs[refs.length - 1].level, refs[refs.length - 1].index), 'hex');
      for (let i = refs.length - 2; i >= 0; i--) acc = hashChildren(Buffer.from(hex(refs[i].level, refs[i].index), 'hex'), acc);
      text = `"${acc.toString('hex')}"`;
      this.folded.set(start, text);
    }
    return text;
  }

  private check(indexes: readonly number[]): void {
    for (let i = 0; i < indexes.length; i++) {
      const x = indexes[i];
      if (!Number.isSafeInteger(x) || x < 0 || x >= this.size) throw new RangeError(`leaf index ${x} is not below tree size ${this.size}`);
      if (i > 0 && x <= indexes[i - 1]) throw new RangeError(`leaf indexes must ascend without repeats (${indexes[i - 1]}, ${x})`);
    }
  }
}

/**
 * The nodes as index ranges per level, for one read by range: nodes of a
 * level at most `maxGap` indexes apart share a range (the gap's nodes are
 * read too, and cost less than another probe). Levels ascending, ranges
 * ascending within a level.
 */
export function nodeRanges(refs: readonly NodeRef[], maxGap = 4): NodeRange[] {
  const sorted = [...refs].sort((a, b) => a.level - b.level || a.index - b.index);
  const out: NodeRange[] = [];
  let cur: { level: number; from: number; to: number } | undefined;
  for (const r of sorted) {
    if (cur && cur.level === r.level && r.index - cur.to - 1 <= maxGap) cur.to = Math.max(cur.to, r.index);
    else {
      if (cur) out.push(cur);
      cur = { level: r.level, from: r.index, to: r.index };
    }
  }
  if (cur) out.push(cur);
  return out;
}

/** A numeric key for a node (index below 2^47), for maps of looked-up nodes. */
export function nodeNumber(level: number, index: number): number {
  return index * 64 + level;
}

function prepend(item: string, tail: string): string {
  return tail ? `${item},${tail}` : item;
}

/** The first position p in [lo, hi) with indexes[p] >= x, or hi. */
function firstAtLeast(indexes: readonly number[], lo: number, hi: number, x: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (indexes[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
