import { hashChildren, inclusionProofRefs, assembleInclusionProof, type NodeRef } from './merkle';

/**
 * RFC 9162 inclusion proofs for many leaves of one tree at once (the export
 * proves every entry of a page to one checkpoint): first the distinct stored
 * nodes they need, for one lookup, then the proofs. Same result as
 * `assembleInclusionProof` per leaf (a unit test checks it), without its
 * per-leaf allocation: integer arithmetic on the path, numeric node keys, and
 * each incomplete right-edge subtree folded once for the whole batch.
 *
 * Sizes up to 2^31 − 1 take the fast path; larger trees fall back to the
 * general functions of merkle.ts.
 */
export class ProofBatch {
  private readonly fast: boolean;
  private readonly folded = new Map<number, Buffer>();

  constructor(private readonly size: number) {
    this.fast = size < 2 ** 31;
  }

  /** The distinct stored nodes (level 0 = leaves) the proofs of these leaf indexes need. */
  refs(indexes: readonly number[]): NodeRef[] {
    if (!this.fast) {
      const all = new Map<string, NodeRef>();
      for (const i of indexes) for (const r of inclusionProofRefs(i, this.size)) all.set(`${r.level}:${r.index}`, r);
      return [...all.values()];
    }
    const seen = new Set<number>();
    const out: NodeRef[] = [];
    for (const i of indexes) {
      this.walk(i, (start, end) => {
        for (const r of decompose(start, end)) {
          const k = key(r.level, r.index);
          if (!seen.has(k)) {
            seen.add(k);
            out.push(r);
          }
        }
      });
    }
    return out;
  }

  /** The proof of leaf `index`, leaf sibling first, from the looked-up nodes. */
  proof(index: number, lookup: (ref: NodeRef) => Uint8Array): Buffer[] {
    if (!this.fast) return assembleInclusionProof(index, this.size, lookup);
    const topDown: Buffer[] = [];
    this.walk(index, (start, end) => topDown.push(this.rangeHash(start, end, lookup)));
    return topDown.reverse();
  }

  /** Calls `sibling(start, end)` for each sibling range on the path from the root down to leaf `index`. */
  private walk(index: number, sibling: (start: number, end: number) => void): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) {
      throw new RangeError(`leaf index ${index} is not below tree size ${this.size}`);
    }
    let start = 0;
    let end = this.size;
    while (end - start > 1) {
      const k = 2 ** (31 - Math.clz32(end - start - 1)); // largest power of two < end - start
      if (index < start + k) {
        sibling(start + k, end);
        end = start + k;
      } else {
        sibling(start, start + k);
        start += k;
      }
    }
  }

  /** MTH of leaves [start, end): one stored node when complete, else the fold of its decomposition (memoised). */
  private rangeHash(start: number, end: number, lookup: (ref: NodeRef) => Uint8Array): Buffer {
    const width = end - start;
    if ((width & (width - 1)) === 0) {
      const level = 31 - Math.clz32(width);
      // the looked-up object itself when it is a Buffer: callers may key caches by identity
      const node = lookup({ level, index: start / width });
      return Buffer.isBuffer(node) ? node : Buffer.from(node);
    }
    const memo = this.folded.get(start);
    if (memo) return memo;
    const refs = decompose(start, end);
    let acc: Buffer = Buffer.from(lookup(refs[refs.length - 1]));
    for (let i = refs.length - 2; i >= 0; i--) acc = hashChildren(lookup(refs[i]), acc);
    this.folded.set(start, acc);
    return acc;
  }
}

/** The complete nodes covering [start, end), largest first (start is aligned to each piece, as proof ranges are). */
function decompose(start: number, end: number): NodeRef[] {
  const refs: NodeRef[] = [];
  let pos = start;
  let remaining = end - start;
  while (remaining > 0) {
    const level = 31 - Math.clz32(remaining);
    const width = 2 ** level;
    refs.push({ level, index: pos / width });
    pos += width;
    remaining -= width;
  }
  return refs;
}

/** A numeric key for a node of a tree under 2^31 leaves. */
export function key(level: number, index: number): number {
  return level * 2 ** 32 + index;
}
