import { Injectable } from '@nestjs/common';
import type { PoolClient } from 'pg';
import { InjectDataSource } from '@nestjs/typeorm';
import type { JWK } from 'jose';
import type { DataSource, EntityManager } from 'typeorm';
import { toHex } from '../core/encoding';
import { Frontier, frontierRefs, nodeKey, type NodeRef } from '../core/merkle';
import { copyLines } from './copy';
import { GroupBuilder, type BatchOutcome, type TenantState } from './group-builder';
import { genesisChainHash } from '../core/record';
import type { AppendBatch, Receipt } from './ledger.types';

export interface Head {
  size: number;
  chainHash: Buffer;
}

export interface StoredEntryRow {
  seq: number;
  record: string;
  leaf_hash: Buffer;
  chain_hash: Buffer;
}

/** A row as the verifier scans it: the stored bytes and the query columns. */
export interface ScanRow extends StoredEntryRow {
  body: string | null;
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  session_id: string | null;
  type: string;
  name: string | null;
  agent: string;
  kid: string;
  batch: string;
  digest: string;
  event_id: string;
  status: string | null;
  duration_ms: number | null;
  event_time: Date;
  received_at: Date;
}

const ENTRY_COLUMNS = [
  'tenant_id', 'seq', 'event_id', 'record', 'leaf_hash', 'chain_hash', 'trace_id', 'span_id', 'parent_span_id',
  'session_id', 'type', 'name', 'agent', 'status', 'duration_ms', 'event_time', 'received_at', 'kid', 'batch', 'digest',
] as const;

export interface StoredBatch {
  kid: string;
  jws: string;
  first_seq: number;
  entry_count: number;
}

/** Raised inside an optimistic attempt when an event id turns out to be in the ledger already. */
class ReplayDetected extends Error {}

/**
 * The only code that writes the ledger tables. Appends run in one transaction
 * per group under a per-tenant advisory lock, so two service processes on one
 * database still assign gap-free seqs and one chain.
 */
@Injectable()
export class LedgerRepository {
  /** Where each tenant's ledger ended after this process's last commit. */
  private readonly states = new Map<string, TenantState>();

  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * A builder for the group after `after` (the state an in-flight commit will
   * leave) or after the last known commit; undefined when this process does
   * not know where the ledger ends (the transaction then builds the group).
   */
  builder(tenant: string, after?: TenantState): GroupBuilder | undefined {
    const s = after ?? this.states.get(tenant);
    return s && new GroupBuilder(tenant, { size: s.size, chainHash: s.chainHash }, s);
  }

  /**
   * Commits a group (built ahead by `prepared`, or built here). Optimistic
   * about idempotency: fresh event ids are the rule, so the first attempt
   * does not look up existing ids and lets the unique index (tenant_id,
   * event_id) object; on that objection the group is rebuilt with the lookup,
   * which hands out the original receipts.
   */
  async commit(tenant: string, batches: AppendBatch[], prepared?: GroupBuilder): Promise<{ outcomes: BatchOutcome[]; end: TenantState }> {
    for (const lookup of [false, true]) {
      try {
        const g = await this.ds.transaction((tx) => this.commitInTx(tx, tenant, batches, lookup ? undefined : prepared, lookup));
        this.states.set(tenant, g.end);
        return { outcomes: g.outcomes, end: g.end };
      } catch (err) {
        this.states.delete(tenant);
        if (!(err instanceof ReplayDetected)) throw err;
      }
    }
    throw new Error('unreachable: the lookup attempt cannot detect a replay');
  }

  private async commitInTx(
    tx: EntityManager,
    tenant: string,
    batches: AppendBatch[],
    prepared: GroupBuilder | undefined,
    lookupExisting: boolean,
  ): Promise<GroupBuilder> {
    // One writer per tenant across processes: the lock is released at commit or rollback.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`agent-ledger:${tenant}`]);
    const head = await this.headIn(tx, tenant);
    const revoked = await this.revokedKids(tx, tenant, batches);
    let g = prepared;
    if (!g || lookupExisting || revoked.size || g.base.size !== head.size || !g.base.chainHash.equals(head.chainHash)) {
      const existing = lookupExisting ? await this.existingReceipts(tx, tenant, batches) : undefined;
      g = new GroupBuilder(tenant, head, await this.stateAt(tx, tenant, head), existing, revoked);
      for (const b of batches) g.add(b);
    }
    if (g.entries.length) {
      const client = (await tx.queryRunner!.connect()) as PoolClient;
      try {
        await copyLines(client, 'ledger_entries', ENTRY_COLUMNS, g.entries);
      } catch (err) {
        if ((err as { constraint?: string }).constraint === 'ledger_entries_event_id' && !lookupExisting) {
          throw new ReplayDetected();
        }
        throw err;
      }
      await copyLines(client, 'ledger_bodies', ['tenant_id', 'seq', 'body'], g.bodies);
      // A batch id repeats only when a producer resends a batch whose events were partly stored.
      await tx.query(
        `INSERT INTO ledger_batches (tenant_id, batch, kid, jws, first_seq, entry_count)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[]) ON CONFLICT DO NOTHING`,
        [0, 1, 2, 3, 4, 5].map((i) => g!.batchRows.map((r) => r[i])),
      );
      await copyLines(client, 'merkle_nodes', ['tenant_id', 'level', 'idx', 'hash'], g.nodes);
    }
    for (const [i, b] of g.batches.entries()) {
      const o = g.outcomes[i];
      if (b.inTransaction && o.ok) await b.inTransaction(tx, o.receipts);
    }
    return g;
  }

  /** The state at `head`: the cached one if it is that, else the frontier loaded from stored nodes. */
  private async stateAt(tx: EntityManager, tenant: string, head: Head): Promise<TenantState> {
    const cached = this.states.get(tenant);
    if (cached && cached.size === head.size && cached.chainHash.equals(head.chainHash)) return cached;
    const refs = frontierRefs(head.size);
    const found = await this.nodes(tx, tenant, refs);
    return {
      size: head.size,
      chainHash: head.chainHash,
      frontier: new Frontier(
        head.size,
        refs.map((r) => found.get(nodeKey(r))!),
      ),
    };
  }

  private async revokedKids(tx: EntityManager, tenant: string, batches: AppendBatch[]): Promise<Set<string>> {
    const kids = [...new Set(batches.map((b) => b.checkRevokedKid).filter((k): k is string => !!k))];
    if (!kids.length) return new Set();
    const rows: { kid: string }[] = await tx.query(
      `SELECT kid FROM producer_keys WHERE tenant_id = $1 AND kid = ANY($2::text[]) AND revoked_at IS NOT NULL`,
      [tenant, kids],
    );
    return new Set(rows.map((r) => r.kid));
  }

  /** Receipts of events already in the ledger, by lowercase id (index ledger_entries_event_id). */
  private async existingReceipts(
    tx: EntityManager,
    tenant: string,
    batches: AppendBatch[],
  ): Promise<Map<string, { digest: string; receipt: Receipt }>> {
    const ids = batches.flatMap((b) => b.events.map((p) => p.event.id));
    const rows: { event_id: string; digest: string; seq: string; leaf_hash: Buffer; chain_hash: Buffer }[] =
      await tx.query(
        `SELECT event_id::text, digest, seq, leaf_hash, chain_hash FROM ledger_entries
         WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])`,
        [tenant, ids],
      );
    return new Map(
      rows.map((r) => [
        r.event_id,
        {
          digest: r.digest,
          receipt: { id: r.event_id, seq: Number(r.seq), leaf_hash: toHex(r.leaf_hash), chain_hash: toHex(r.chain_hash) },
        },
      ]),
    );
  }

  /** The newest entry (primary key, backwards). */
  private async headIn(q: Pick<EntityManager, 'query'>, tenant: string): Promise<Head> {
    const rows: { seq: string; chain_hash: Buffer }[] = await q.query(
      `SELECT seq, chain_hash FROM ledger_entries WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`,
      [tenant],
    );
    return rows.length
      ? { size: Number(rows[0].seq), chainHash: rows[0].chain_hash }
      : { size: 0, chainHash: genesisChainHash(tenant) };
  }

  head(tenant: string): Promise<Head> {
    return this.headIn(this.ds, tenant);
  }

  /**
   * Hashes of complete Merkle nodes: level 0 from the entries' leaf hashes,
   * higher levels from merkle_nodes (both by primary key). Throws when one is
   * missing: a proof is never built from a guess.
   */
  async nodes(q: Pick<EntityManager, 'query'>, tenant: string, refs: readonly NodeRef[]): Promise<Map<string, Buffer>> {
    const leaves = refs.filter((r) => r.level === 0).map((r) => r.index + 1);
    const inner = refs.filter((r) => r.level > 0);
    const out = new Map<string, Buffer>();
    if (leaves.length) {
      const rows: { seq: string; leaf_hash: Buffer }[] = await q.query(
        `SELECT seq, leaf_hash FROM ledger_entries WHERE tenant_id = $1 AND seq = ANY($2::bigint[])`,
        [tenant, leaves],
      );
      for (const r of rows) out.set(nodeKey({ level: 0, index: Number(r.seq) - 1 }), r.leaf_hash);
    }
    if (inner.length) {
      const rows: { level: number; idx: string; hash: Buffer }[] = await q.query(
        // One primary-key probe per wanted node (LATERAL … LIMIT 1 keeps the planner from hashing
        // all of the tenant's nodes, which it does on a fresh table's statistics: O(ledger) per lookup).
        `SELECT want.level, want.idx, n.hash FROM unnest($2::smallint[], $3::bigint[]) AS want(level, idx)
         CROSS JOIN LATERAL (SELECT m.hash FROM merkle_nodes m
                             WHERE m.tenant_id = $1 AND m.level = want.level AND m.idx = want.idx LIMIT 1) n`,
        [tenant, inner.map((r) => r.level), inner.map((r) => r.index)],
      );
      for (const r of rows) out.set(nodeKey({ level: r.level, index: Number(r.idx) }), r.hash);
    }
    for (const r of refs) {
      if (!out.has(nodeKey(r))) throw new Error(`Merkle node ${nodeKey(r)} of tenant ${tenant} is missing`);
    }
    return out;
  }

  /** The Merkle frontier of the tree of `size` leaves, from stored nodes. */
  async frontierAt(tenant: string, size: number): Promise<Frontier> {
    const refs = frontierRefs(size);
    const found = await this.nodes(this.ds, tenant, refs);
    return new Frontier(
      size,
      refs.map((r) => found.get(nodeKey(r))!),
    );
  }

  /** Stored inner nodes among `refs` (absent ones are simply not in the map). */
  async nodesIfPresent(tenant: string, refs: readonly NodeRef[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (!refs.length) return out;
    const rows: { level: number; idx: string; hash: Buffer }[] = await this.ds.query(
      `SELECT want.level, want.idx, n.hash FROM unnest($2::smallint[], $3::bigint[]) AS want(level, idx)
       CROSS JOIN LATERAL (SELECT m.hash FROM merkle_nodes m
                           WHERE m.tenant_id = $1 AND m.level = want.level AND m.idx = want.idx LIMIT 1) n`,
      [tenant, refs.map((r) => r.level), refs.map((r) => r.index)],
    );
    for (const r of rows) out.set(nodeKey({ level: r.level, index: Number(r.idx) }), r.hash);
    return out;
  }

  /** Entries from `fromSeq` on, by primary key. */
  async entries(tenant: string, fromSeq: number, limit: number): Promise<StoredEntryRow[]> {
    const rows: (StoredEntryRow & { seq: string })[] = await this.ds.query(
      `SELECT seq, record, leaf_hash, chain_hash FROM ledger_entries
       WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3`,
      [tenant, fromSeq, limit],
    );
    return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
  }

  /** One page of the verifier's scan: entries with bodies, by primary key. */
  async scanPage(tenant: string, afterSeq: number, toSeq: number, limit: number): Promise<ScanRow[]> {
    const rows: (ScanRow & { seq: string })[] = await this.ds.query(
      `SELECT e.seq, e.record, e.leaf_hash, e.chain_hash, b.body, e.trace_id, e.span_id, e.parent_span_id,
              e.session_id, e.type, e.name, e.agent, e.kid, e.batch, e.digest, e.event_id::text,
              e.status, e.duration_ms, e.event_time, e.received_at
       FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4`,
      [tenant, afterSeq, toSeq, limit],
    );
    return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
  }

  async chainHashAt(tenant: string, seq: number): Promise<Buffer | undefined> {
    if (seq === 0) return genesisChainHash(tenant);
    const rows: { chain_hash: Buffer }[] = await this.ds.query(
      `SELECT chain_hash FROM ledger_entries WHERE tenant_id = $1 AND seq = $2`,
      [tenant, seq],
    );
    return rows[0]?.chain_hash;
  }

  async batches(tenant: string, ids: string[]): Promise<Map<string, StoredBatch>> {
    const rows: (StoredBatch & { batch: string; first_seq: string })[] = await this.ds.query(
      `SELECT batch, kid, jws, first_seq, entry_count FROM ledger_batches WHERE tenant_id = $1 AND batch = ANY($2::text[])`,
      [tenant, ids],
    );
    return new Map(rows.map((r) => [r.batch, { kid: r.kid, jws: r.jws, first_seq: Number(r.first_seq), entry_count: r.entry_count }]));
  }

  /** The batch with the highest first seq (index ledger_batches_first_seq). */
  async lastBatch(tenant: string): Promise<{ first_seq: number; entry_count: number } | undefined> {
    const rows: { first_seq: string; entry_count: number }[] = await this.ds.query(
      `SELECT first_seq, entry_count FROM ledger_batches WHERE tenant_id = $1 ORDER BY first_seq DESC LIMIT 1`,
      [tenant],
    );
    return rows[0] && { first_seq: Number(rows[0].first_seq), entry_count: rows[0].entry_count };
  }

  /**
   * Producer public keys by kid, revoked ones included (old batches stay
   * verifiable). Read-only: the keys module owns producer_keys; the ledger
   * reads it here and in the revocation check under its lock.
   */
  async producerKeys(tenant: string): Promise<Map<string, JWK>> {
    const rows: { kid: string; jwk: JWK }[] = await this.ds.query(
      `SELECT kid, jwk FROM producer_keys WHERE tenant_id = $1`,
      [tenant],
    );
    return new Map(rows.map((r) => [r.kid, r.jwk]));
  }

  get dataSource(): DataSource {
    return this.ds;
  }
}
