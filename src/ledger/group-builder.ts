import { toHex } from '../core/encoding';
import { Frontier } from '../core/merkle';
import { buildRecord, leafHash, nextChainHash, recordJcs } from '../core/record';
import { copyLine, copyPayload } from './copy';
import { LedgerError } from './ledger.errors';
import type { AppendBatch, Receipt } from './ledger.types';

/** Where a tenant's ledger ends: what the next entry chains onto. */
export interface TenantState {
  size: number;
  chainHash: Buffer;
  frontier: Frontier;
}

/** Outcome of one batch inside a group commit; `appended` counts its new entries. */
export type BatchOutcome = { ok: true; receipts: Receipt[]; appended: number } | { ok: false; error: Error };

export type ExistingReceipts = Map<string, { digest: string; receipt: Receipt }>;

export function cloneState(s: TenantState): TenantState {
  return {
    size: s.size,
    chainHash: s.chainHash,
    frontier: new Frontier(
      s.frontier.size,
      s.frontier.nodes().map((n) => n.hash),
    ),
  };
}

/**
 * Builds one group commit in memory: seqs, records, leaf and chain hashes,
 * Merkle nodes, and the COPY text of every row. The sequencer fills the next
 * group while the current one is committing, on the state that commit will
 * leave; the transaction then only checks that the ledger does end there (it
 * rebuilds the group on the real head otherwise) and streams the text.
 */
export class GroupBuilder {
  readonly batches: AppendBatch[] = [];
  readonly outcomes: BatchOutcome[] = [];
  readonly entries: string[] = [];
  readonly bodies: string[] = [];
  readonly nodes: string[] = [];
  readonly batchRows: [string, string, string, string, number, number][] = [];
  private readonly state: TenantState;
  private readonly seen: ExistingReceipts;
  /** Receipts of the entries this group appends, by lowercase id. */
  readonly fresh: ExistingReceipts = new Map();
  private readonly receivedAt = new Date().toISOString();
  events = 0;

  constructor(
    readonly tenant: string,
    /** The state this group starts from (not modified). */
    readonly base: { size: number; chainHash: Buffer },
    state: TenantState,
    existing: ExistingReceipts = new Map(),
    private readonly revoked: ReadonlySet<string> = new Set(),
  ) {
    this.state = cloneState(state);
    this.seen = new Map(existing);
  }

  /**
   * The group's COPY data, encoded once and kept: the repository asks for it
   * before it opens the transaction, so the three COPYs follow one another
   * without this process's CPU between them (while they wait on it, the
   * database backend idles in the transaction).
   */
  copyPayload(): { entries: Buffer[]; bodies: Buffer[]; nodes: Buffer[] } {
    this.payload ??= { entries: copyPayload(this.entries), bodies: copyPayload(this.bodies), nodes: copyPayload(this.nodes) };
    return this.payload;
  }

  private payload?: { entries: Buffer[]; bodies: Buffer[]; nodes: Buffer[] };

  /** The state after this group. */
  get end(): TenantState {
    return this.state;
  }

  add(b: AppendBatch): void {
    this.payload = undefined;
    this.batches.push(b);
    this.events += b.events.length;
    if (b.checkRevokedKid && this.revoked.has(b.checkRevokedKid)) {
      this.outcomes.push({ ok: false, error: LedgerError.keyRevoked(b.checkRevokedKid) });
      return;
    }
    const conflict = b.events.findIndex((p) => {
      const prior = this.seen.get(p.event.id.toLowerCase());
      return prior !== undefined && prior.digest !== p.digest;
    });
    if (conflict >= 0) {
      this.outcomes.push({ ok: false, error: LedgerError.eventConflict(conflict, b.events[conflict].event.id) });
      return;
    }
    const { tenant, state, receivedAt } = this;
    const receipts: Receipt[] = [];
    let firstSeq = 0;
    for (const p of b.events) {
      const key = p.event.id.toLowerCase();
      const prior = this.seen.get(key);
      if (prior) {
        receipts.push({ ...prior.receipt, id: p.event.id });
        continue;
      }
      const seq = ++state.size;
      if (!firstSeq) firstSeq = seq;
      const e = p.event;
      const text = recordJcs(buildRecord(tenant, seq, e, receivedAt, b.kid, b.batch, p.digest));
      const leaf = leafHash(text);
      state.chainHash = nextChainHash(state.chainHash, leaf);
      for (const n of state.frontier.append(leaf)) this.nodes.push(copyLine([tenant, n.level, n.index, n.hash]));
      const receipt = { id: e.id, seq, leaf_hash: toHex(leaf), chain_hash: toHex(state.chainHash) };
      receipts.push(receipt);
      this.seen.set(key, { digest: p.digest, receipt });
      this.fresh.set(key, { digest: p.digest, receipt });
      this.entries.push(
        copyLine([
          tenant, seq, e.id, text, leaf, state.chainHash, e.trace_id, e.span_id, e.parent_span_id ?? null,
          e.session_id ?? null, e.type, e.name ?? null, e.agent, e.status ?? null, e.duration_ms ?? null, e.time,
          receivedAt, b.kid, b.batch, p.digest,
        ]),
      );
      this.bodies.push(copyLine([tenant, seq, p.body]));
    }
    if (firstSeq) this.batchRows.push([tenant, b.batch, b.kid, b.jws, firstSeq, state.size - firstSeq + 1]);
    this.outcomes.push({ ok: true, receipts, appended: firstSeq ? state.size - firstSeq + 1 : 0 });
  }
}
