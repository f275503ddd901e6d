import { timingSafeEqual } from 'node:crypto';
import { jcs } from './jcs';
import { eventDigest, genesisChainHash, leafHash, nextChainHash, type LedgerRecord } from './record';

/** One stored entry as the verifier sees it: the bytes, nothing derived. */
export interface StoredEntry {
  seq: number;
  record: string;
  leaf_hash: Uint8Array;
  chain_hash: Uint8Array;
  /** The event's JCS text; null once lawfully erased. */
  body: string | null;
}

export interface VerifyFailure {
  seq: number;
  reason: string;
}

const RECORD_KEYS = [
  'agent', 'batch', 'digest', 'id', 'kid', 'name', 'parent_span_id', 'received_at', 'seq', 'session_id',
  'span_id', 'tenant', 'time', 'trace_id', 'type', 'v',
];

const BODY_FIELDS = ['id', 'trace_id', 'span_id', 'parent_span_id', 'session_id', 'type', 'name', 'agent', 'time'] as const;

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Checks a tenant's entries in seq order from the stored bytes alone
 * (DESIGN.md §3): the record is the JCS of a v1 record for this tenant and
 * seq, the leaf and chain hashes recompute, and the body hashes to the
 * record's digest and agrees with it. Stateful so it can stream: feed
 * entries one by one; memory stays constant.
 */
export class ChainVerifier {
  private expectedSeq: number;
  private chain: Buffer;

  constructor(
    private readonly tenant: string,
    fromSeq = 1,
    prevChainHash?: Uint8Array,
  ) {
    this.expectedSeq = fromSeq;
    this.chain = Buffer.from(prevChainHash ?? genesisChainHash(tenant));
  }

  get nextSeq(): number {
    return this.expectedSeq;
  }

  /** Returns the parsed record, or the failure with the seq that is bad. */
  check(e: StoredEntry): { record: LedgerRecord } | { failure: VerifyFailure } {
    const seq = this.expectedSeq;
    const fail = (reason: string) => ({ failure: { seq, reason } });
    if (e.seq !== seq) {
      return fail(e.seq > seq ? `entry ${seq} is missing (the next stored entry is ${e.seq})` : `entry ${e.seq} is out of order`);
    }
    let record: LedgerRecord;
    try {
      record = JSON.parse(e.record) as LedgerRecord;
    } catch {
      return fail('the record is not JSON');
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) return fail('the record is not an object');
    const keys = Object.keys(record).sort();
    if (keys.join() !== RECORD_KEYS.join()) return fail('the record does not have exactly the v1 fields');
    if (jcs(record) !== e.record) return fail('the record text is not its canonical (RFC 8785) form');
    if (record.v !== 1) return fail(`unknown record version ${String(record.v)}`);
    if (record.tenant !== this.tenant) return fail(`the record belongs to tenant "${record.tenant}"`);
    if (record.seq !== seq) return fail(`the record says seq ${record.seq}`);
    const leaf = leafHash(e.record);
    if (!same(leaf, e.leaf_hash)) return fail('the stored leaf hash does not match the record');
    const chain = nextChainHash(this.chain, leaf);
    if (!same(chain, e.chain_hash)) return fail('the stored chain hash does not match the chain');
    if (e.body !== null) {
      if (eventDigest(e.body) !== record.digest) return fail("the body does not hash to the record's digest");
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(e.body) as Record<string, unknown>;
      } catch {
        return fail('the body is not JSON');
      }
      // every field the record copies from the event, absent ones as null
      for (const k of BODY_FIELDS) {
        if ((body[k] ?? null) !== record[k]) return fail(`the body's ${k} differs from the record's`);
      }
    }
    this.chain = chain;
    this.expectedSeq = seq + 1;
    return { record };
  }
}
