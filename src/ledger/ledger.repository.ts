import { Injectable } from '@nestjs/common';
import type { PoolClient } from 'pg';
import { InjectDataSource } from '@nestjs/typeorm';
import type { JWK } from 'jose';
import type { DataSource, EntityManager } from 'typeorm';
import { toHex } from '../core/encoding';
import { Frontier, frontierRefs, nodeKey, type NodeRef } from '../core/merkle';
import { nodeNumber, type NodeRange } from '../core/proof-batch';
import { copyColumns, copyLines } from './copy';
import { GroupBuilder, type BatchOutcome, type TenantState } from './group-builder';
import { genesisChainHash } from '../core/record';
import type { AppendBatch, Receipt } from './ledger.types';
import { Progress } from './sequencer';

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
const BODY_COLUMNS = ['tenant_id', 'seq', 'body'] as const;
const NODE_COLUMNS = ['tenant_id', 'level', 'idx', 'hash'] as const;

/**
 * Groups of up to this many entries are written by the functions of
 * migration 1765000000000 (one round trip: ledger_append for a whole commit,
 * ledger_write_rows and ledger_write_batches inside a transaction) instead of
 * three COPYs and an INSERT (seven round trips). A single-event batch's commit
 * is mostly round trips: each one costs ~0.3-0.6 ms here. Bigger groups keep
 * COPY, whose row input is cheaper than parsing array parameters.
 */
const SMALL_GROUP = 32;

/** `$from, …` for `count` parameters. */
const placeholders = (from: number, count: number) => Array.from({ length: count }, (_, i) => `$${from + i}`).join(', ');

/**
 * A group's rows as the functions take them after the tenant: one array per
 * column of its entries, bodies and Merkle nodes. The builder writes COPY text
 * for every group (it cannot know the group's final size while it adds to
 * it); a small group's few lines are decoded back into fields here.
 */
function rowArrays(g: GroupBuilder): (string | null)[][] {
  const columns = (lines: readonly string[], width: number) => copyColumns(lines, width).slice(1);
  return [...columns(g.entries, ENTRY_COLUMNS.length), ...columns(g.bodies, BODY_COLUMNS.length), ...columns(g.nodes, NODE_COLUMNS.length)];
}
const ROW_ARRAYS = ENTRY_COLUMNS.length + BODY_COLUMNS.length + NODE_COLUMNS.length - 3;

/** A group's batch rows as ledger_write_batches takes them after the tenant: batch, kid, jws, first seq, count. */
const batchArrays = (g: GroupBuilder) => [1, 2, 3, 4, 5].map((i) => g.batchRows.map((r) => r[i]));
const BATCH_ARRAYS = 5;

const WRITE_ROWS = `SELECT ledger_write_rows($1, ${placeholders(2, ROW_ARRAYS)})`;
const WRITE_BATCHES = `SELECT ledger_write_batches($1, ${placeholders(2, BATCH_ARRAYS)})`;
const WRITE_ROWS_AND_BATCHES = `${WRITE_ROWS}, ledger_write_batches($1, ${placeholders(2 + ROW_ARRAYS, BATCH_ARRAYS)})`;
/** Lock key, tenant, kids, base seq and chain hash, then the rows and the batch rows. */
const LEDGER_APPEND = `SELECT ledger_append(${placeholders(1, 5 + ROW_ARRAYS + BATCH_ARRAYS)}) AS appended`;

export interface StoredBatch {
  kid: string;
  jws: string;
  first_seq: number;
  entry_count: number;
}

/** Raised inside an optimistic attempt when an event id turns out to be in the ledger already. */
class ReplayDetected extends Error {}

/** A pipelined attempt that cannot commit as built: rolled back, the group then commits the ordinary way. */
class GiveUp extends Error {}

const lockKey = (tenant: string) => `agent-ledger:${tenant}`;

/** The producer kids whose revocation a commit checks under the lock. */
const checkedKids = (batches: readonly AppendBatch[]) => [...new Set(batches.map((b) => b.checkRevokedKid).filter((k): k is string => !!k))];

/**
 * Whether a group goes to ledger_append: something to write, small, and no
 * batch with writes of its own in the transaction (a service entry's hook).
 */
const fitsOneStatement = (g: GroupBuilder, batches: readonly AppendBatch[]) =>
  g.entries.length > 0 && g.entries.length <= SMALL_GROUP && batches.every((b) => !b.inTransaction);

/**
 * The SQL of `nodeHexRanges` (exported for a test's EXPLAIN): $1 tenant,
 * $2/$3 leaf index ranges (from, to), $4/$5/$6 inner node ranges (level,
 * from, to).
 */
export const NODE_RANGES_SQL = `SELECT 0::smallint AS level, l.seq - 1 AS idx, encode(l.leaf_hash, 'hex') AS hash
       FROM unnest($2::bigint[], $3::bigint[]) AS want(lo, hi)
       CROSS JOIN LATERAL (SELECT e.seq, e.leaf_hash FROM ledger_entries e
                           WHERE e.tenant_id = $1 AND e.seq BETWEEN want.lo + 1 AND want.hi + 1
                           ORDER BY e.seq LIMIT want.hi - want.lo + 1) l
       UNION ALL
       SELECT want.level, n.idx, encode(n.hash, 'hex')
       FROM unnest($4::smallint[], $5::bigint[], $6::bigint[]) AS want(level, lo, hi)
       CROSS JOIN LATERAL (SELECT m.idx, m.hash FROM merkle_nodes m
                           WHERE m.tenant_id = $1 AND m.level = want.level AND m.idx BETWEEN want.lo AND want.hi
                           ORDER BY m.idx LIMIT want.hi - want.lo + 1) n`;

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

  /** The tenant's ledger size after this process's last commit, if it knows it (no query). */
  knownSize(tenant: string): number | undefined {
    return this.states.get(tenant)?.size;
  }

  /**
   * A builder for the group after `after` (a group in flight, on the state it
   * will leave, knowing its receipts) or after the last known commit;
   * undefined when this process does not know where the ledger ends (the
   * transaction then builds the group).
   */
  builder(tenant: string, after?: GroupBuilder): GroupBuilder | undefined {
    if (after) return new GroupBuilder(tenant, { size: after.end.size, chainHash: after.end.chainHash }, after.end, after.fresh);
    const s = this.states.get(tenant);
    return s && new GroupBuilder(tenant, { size: s.size, chainHash: s.chainHash }, s);
  }

  /**
   * Commits a group (built ahead by `prepared`, or built here), reporting on
   * `progress` (see Progress). Optimistic about idempotency: fresh event ids
   * are the rule, so the first attempt does not look up existing ids and lets
   * the unique index (tenant_id, event_id) object; on that objection the
   * group is rebuilt with the lookup, which hands out the original receipts.
   *
   * With `after` (the group before, still in flight), the group is pipelined:
   * see `commitPipelined`. If that attempt cannot commit as built, it is
   * rolled back and the group commits the ordinary way: under the lock, on
   * the real head. A small group built ahead with nothing in flight before
   * it (an idle tenant's next batch) commits in one statement
   * (`appendAtOnce`), falling back to the ordinary way likewise.
   */
  async commit(
    tenant: string,
    batches: AppendBatch[],
    prepared?: GroupBuilder,
    progress = new Progress(),
    after?: Progress,
  ): Promise<{ outcomes: BatchOutcome[]; end: TenantState }> {
    // a large group's COPY data, encoded before any transaction opens (see GroupBuilder.copyPayload)
    if (prepared && prepared.entries.length > SMALL_GROUP) prepared.copyPayload();
    try {
      let attempts = [false, true];
      if (prepared && !after && fitsOneStatement(prepared, batches)) {
        const r = await this.appendAtOnce(tenant, prepared);
        if (r === 'committed') {
          this.states.set(tenant, prepared.end);
          progress.built(true);
          return { outcomes: prepared.outcomes, end: prepared.end };
        }
        // 'stale' (another writer moved the head, or a kid was revoked): the ordinary path reads the real head
        this.states.delete(tenant);
        if (r === 'replay') attempts = [true];
      } else if (prepared && after) {
        const r = await this.commitPipelined(tenant, prepared, progress, after);
        if (r === 'committed') {
          this.states.set(tenant, prepared.end);
          progress.built(true);
          return { outcomes: prepared.outcomes, end: prepared.end };
        }
        // before any retry: the group behind this one stops waiting for it
        progress.built(false);
        this.states.delete(tenant);
        if (r === 'replay') attempts = [true];
      }
      for (const lookup of attempts) {
        try {
          const g = await this.transaction((tx) => this.commitInTx(tx, tenant, batches, lookup ? undefined : prepared, lookup, progress));
          this.states.set(tenant, g.end);
          progress.built(g === prepared);
          return { outcomes: g.outcomes, end: g.end };
        } catch (err) {
          this.states.delete(tenant);
          progress.built(false);
          if (!(err instanceof ReplayDetected)) throw err;
        }
      }
      throw new Error('unreachable: the lookup attempt cannot detect a replay');
    } finally {
      progress.built(false);
    }
  }

  /**
   * A small group built ahead on the head this process last saw, committed
   * by one statement outside a transaction block (ledger_append: lock, check
   * the head and the kids, write every row; one round trip). 'stale' when
   * the head moved or a kid is revoked (nothing written), 'replay' when an
   * event id is in the ledger already.
   */
  private async appendAtOnce(tenant: string, g: GroupBuilder): Promise<'committed' | 'stale' | 'replay'> {
    const runner = this.ds.createQueryRunner();
    try {
      const client = (await runner.connect()) as PoolClient;
      const { rows } = await client.query<{ appended: boolean }>(LEDGER_APPEND, [
        lockKey(tenant),
        tenant,
        checkedKids(g.batches),
        g.base.size,
        g.base.chainHash,
        ...rowArrays(g),
        ...batchArrays(g),
      ]);
      return rows[0].appended ? 'committed' : 'stale';
    } catch (err) {
      if ((err as { constraint?: string }).constraint === 'ledger_entries_event_id') return 'replay';
      throw err;
    } finally {
      await runner.release();
    }
  }

  /**
   * A transaction, retried once if PostgreSQL chose it as a deadlock victim
   * (40P01): a deadlock can only involve a pipelined transaction that is
   * being given up (e.g. when the group before it had to be rebuilt and now
   * writes where it wrote), and that one rolls back.
   */
  private async transaction<T>(work: (tx: EntityManager) => Promise<T>): Promise<T> {
    try {
      return await this.ds.transaction(work);
    } catch (err) {
      if ((err as { code?: string }).code !== '40P01') throw err;
      return this.ds.transaction(work);
    }
  }

  /**
   * One group written on a second connection while the group before it
   * (`after`) still writes or commits on the first. Why this stays gap-free
   * and safe with several processes on one database:
   *
   * - It starts writing only once `after` is on track: `after` holds the
   *   tenant lock on the head it was built for (or is itself pipelined behind
   *   such a group), so `after` writes only its own seqs, event ids and Merkle
   *   nodes, never this group's (its receipts are in this group's builder, so
   *   an id repeated across the two is not written twice), and can never
   *   wait for this transaction: the in-process wait below cannot deadlock.
   * - Its rows claim seqs base+1.. through the primary key (tenant_id, seq):
   *   another process that takes the lock meanwhile waits for this
   *   transaction (or this COPY fails if it committed them first), so no seq
   *   is ever committed twice. The batch rows (which a resent batch may share
   *   with `after`) are written only after `after` committed.
   * - It commits only if `after` committed exactly as built, and, like every
   *   ledger commit, while holding the tenant lock, having read under it that
   *   the entry at seq `base` is the one it chains onto. The lock is only
   *   tried: if another process holds it (and may be waiting for the seqs
   *   claimed here), this transaction rolls back at once rather than wait.
   * - A revoked kid or any error: roll back; the ordinary path decides.
   *
   * A crash at any point leaves at most an uncommitted transaction, which
   * PostgreSQL rolls back.
   */
  private async commitPipelined(
    tenant: string,
    g: GroupBuilder,
    progress: Progress,
    after: Progress,
  ): Promise<'committed' | 'replay' | 'gave-up'> {
    if (!(await after.onTrack)) return 'gave-up';
    progress.track(true);
    try {
      await this.ds.transaction(async (tx) => {
        const client = (await tx.queryRunner!.connect()) as PoolClient;
        await this.writeRows(client, g, false, false);
        if (!(await after.asBuilt)) throw new GiveUp();
        const [{ locked }]: { locked: boolean }[] = await tx.query(
          `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked`,
          [lockKey(tenant)],
        );
        if (!locked) throw new GiveUp();
        if (g.base.size > 0) {
          // the entry this group chains onto, committed by `after` (primary key)
          const rows: { chain_hash: Buffer }[] = await tx.query(
            `SELECT chain_hash FROM ledger_entries WHERE tenant_id = $1 AND seq = $2`,
            [tenant, g.base.size],
          );
          if (!rows[0]?.chain_hash.equals(g.base.chainHash)) throw new GiveUp();
        }
        if ((await this.revokedKids(tx, tenant, g.batches)).size) throw new GiveUp();
        await this.insertBatchRows(tx, g);
      });
      return 'committed';
    } catch (err) {
      if (err instanceof ReplayDetected) return 'replay';
      return 'gave-up';
    }
  }

  private async commitInTx(
    tx: EntityManager,
    tenant: string,
    batches: AppendBatch[],
    prepared: GroupBuilder | undefined,
    lookupExisting: boolean,
    progress: Progress,
  ): Promise<GroupBuilder> {
    // One writer per tenant across processes: the lock is released at commit or rollback. The head and the
    // revoked kids are read under it (ledger_lock_head: one round trip).
    const [locked]: { seq: string | null; chain_hash: Buffer | null; revoked: string[] }[] = await tx.query(
      `SELECT seq, chain_hash, revoked FROM ledger_lock_head($1, $2, $3)`,
      [lockKey(tenant), tenant, checkedKids(batches)],
    );
    const head: Head =
      locked.seq === null ? { size: 0, chainHash: genesisChainHash(tenant) } : { size: Number(locked.seq), chainHash: locked.chain_hash! };
    const revoked = new Set(locked.revoked);
    let g = prepared;
    if (!g || lookupExisting || revoked.size || g.base.size !== head.size || !g.base.chainHash.equals(head.chainHash)) {
      const existing = lookupExisting ? await this.existingReceipts(tx, tenant, batches) : undefined;
      g = new GroupBuilder(tenant, head, await this.stateAt(tx, tenant, head), existing, revoked);
      for (const b of batches) g.add(b);
    }
    // under the lock, on the head it was built for: a group pipelined behind this one may start writing
    progress.track(g === prepared);
    if (g.entries.length) {
      const client = (await tx.queryRunner!.connect()) as PoolClient;
      await this.writeRows(client, g, lookupExisting, true);
    }
    for (const [i, b] of g.batches.entries()) {
      const o = g.outcomes[i];
      if (b.inTransaction && o.ok) await b.inTransaction(tx, o.receipts);
    }
    return g;
  }

  /**
   * A group's entries, bodies and Merkle nodes (the entries first: see
   * commitPipelined), and its batch rows when `withBatches`: one statement
   * for a small group, COPY otherwise.
   */
  private async writeRows(client: PoolClient, g: GroupBuilder, lookupExisting: boolean, withBatches: boolean): Promise<void> {
    if (!g.entries.length) return;
    const small = g.entries.length <= SMALL_GROUP;
    try {
      if (small) {
        await client.query(withBatches ? WRITE_ROWS_AND_BATCHES : WRITE_ROWS, [
          g.tenant,
          ...rowArrays(g),
          ...(withBatches ? batchArrays(g) : []),
        ]);
        return;
      }
      await copyLines(client, 'ledger_entries', ENTRY_COLUMNS, g.copyPayload().entries);
    } catch (err) {
      if ((err as { constraint?: string }).constraint === 'ledger_entries_event_id' && !lookupExisting) {
        throw new ReplayDetected();
      }
      throw err;
    }
    await copyLines(client, 'ledger_bodies', BODY_COLUMNS, g.copyPayload().bodies);
    await copyLines(client, 'merkle_nodes', NODE_COLUMNS, g.copyPayload().nodes);
    if (withBatches) await this.insertBatchRows(client, g);
  }

  private async insertBatchRows(client: { query(sql: string, params: unknown[]): Promise<unknown> }, g: GroupBuilder): Promise<void> {
    if (!g.batchRows.length) return;
    await client.query(WRITE_BATCHES, [g.tenant, ...batchArrays(g)]);
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
    const kids = checkedKids(batches);
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
    if (refs.length) {
      // One round trip for both kinds. Inner nodes: one primary-key probe each (LATERAL … LIMIT 1 keeps
      // the planner from hashing all of the tenant's nodes, which it does on a fresh table's statistics).
      const rows: { level: number; idx: string; hash: Buffer }[] = await q.query(
        `SELECT 0::smallint AS level, e.seq - 1 AS idx, e.leaf_hash AS hash
         FROM ledger_entries e WHERE e.tenant_id = $1 AND e.seq = ANY($2::bigint[])
         UNION ALL
         SELECT want.level, want.idx, n.hash FROM unnest($3::smallint[], $4::bigint[]) AS want(level, idx)
         CROSS JOIN LATERAL (SELECT m.hash FROM merkle_nodes m
                             WHERE m.tenant_id = $1 AND m.level = want.level AND m.idx = want.idx LIMIT 1) n`,
        [tenant, leaves, inner.map((r) => r.level), inner.map((r) => r.index)],
      );
      for (const r of rows) out.set(nodeKey({ level: r.level, index: Number(r.idx) }), r.hash);
    }
    for (const r of refs) {
      if (!out.has(nodeKey(r))) throw new Error(`Merkle node ${nodeKey(r)} of tenant ${tenant} is missing`);
    }
    return out;
  }

  /**
   * Hex hashes of stored complete nodes read by index range (level 0 = leaf
   * hashes from ledger_entries, by seq), keyed by `nodeNumber`: a page of
   * contiguous entries needs about one range per level instead of a probe per
   * node. Each range is one primary-key range scan; ORDER BY … LIMIT keeps the
   * planner on the index on a fresh table's statistics (as LIMIT 1 does in
   * `nodes`). Nodes absent from storage are absent from the map.
   */
  async nodeHexRanges(tenant: string, ranges: readonly NodeRange[]): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    if (!ranges.length) return out;
    const leaves = ranges.filter((r) => r.level === 0);
    const inner = ranges.filter((r) => r.level > 0);
    const rows: { level: number; idx: string; hash: string }[] = await this.ds.query(NODE_RANGES_SQL, [
      tenant,
      leaves.map((r) => r.from),
      leaves.map((r) => r.to),
      inner.map((r) => r.level),
      inner.map((r) => r.from),
      inner.map((r) => r.to),
    ]);
    for (const r of rows) out.set(nodeNumber(r.level, Number(r.idx)), r.hash);
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
