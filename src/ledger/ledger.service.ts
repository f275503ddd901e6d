import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { importJWK, type JWK } from 'jose';
import { readBatchHeader, signBatch, signDigests, verifyBatchSignature, type BatchAlgorithm } from '../core/batch';
import { ChainVerifier } from '../core/chain-verifier';
import { toHex } from '../core/encoding';
import { serviceEventSchema, type TraceEvent } from '../core/event';
import { jcs } from '../core/jcs';
import { emptyRoot, frontierRefs, nodeKey, rootFromRefs, type NodeRef, type StoredNode } from '../core/merkle';
import type { NodeRange } from '../core/proof-batch';
import { batchId, eventDigest, LEDGER_KID, type LedgerRecord } from '../core/record';
import { MetricsService } from '../metrics/metrics.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { LedgerError } from './ledger.errors';
import { LedgerRepository, type ScanRow } from './ledger.repository';
import type { AppendBatch, InTransaction, PreparedEvent, Receipt } from './ledger.types';
import { IngestPriority } from './ingest-priority';
import { Sequencer } from './sequencer';

/** An entry the service writes itself (key registered, violation raised…). */
export interface ServiceEvent {
  type: `ledger.${string}` | `policy.${string}`;
  name?: string;
  attributes: Record<string, unknown>;
  trace_id?: string;
  span_id?: string;
  parent_span_id?: string | null;
  session_id?: string | null;
}

export const SERVICE_AGENT = 'agent-ledger';

export interface VerifyResult {
  ok: boolean;
  verified: number;
  from_seq: number;
  to_seq: number;
  first_bad_seq?: number;
  reason?: string;
}

const VERIFY_PAGE = 2000;

@Injectable()
export class LedgerService implements OnModuleDestroy {
  readonly sequencer: Sequencer;
  /** The policy evaluator asks it before each walk: ingest first while it is saturated. */
  readonly priority: IngestPriority;
  private readonly listeners: ((tenant: string) => void)[] = [];

  constructor(
    private readonly repo: LedgerRepository,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.sequencer = new Sequencer(
      {
        builder: (tenant, after) => this.repo.builder(tenant, after),
        commit: (tenant, batches, prepared, progress, after) => this.repo.commit(tenant, batches, prepared, progress, after),
        onCommitted: (tenant, events, _b, seconds) => {
          this.metrics.ingestedEvents.inc(events);
          if (events > 0) for (const l of this.listeners) l(tenant);
          this.metrics.commitDuration.observe(seconds);
          this.metrics.groupSize.observe(events);
        },
      },
      config.env.INGEST_MAX_GROUP_EVENTS,
      config.env.INGEST_MAX_GROUP_EVENTS * 20,
    );
    this.metrics.setQueueDepthSource(() => this.sequencer.depth);
    this.priority = new IngestPriority((now) => this.sequencer.busyMs(now), {
      maxLag: config.env.INGEST_PRIORITY_MAX_LAG,
      maxMs: config.env.INGEST_PRIORITY_MAX_MS,
    });
    this.priority.start();
  }

  onModuleDestroy(): void {
    this.priority.stop();
  }

  /**
   * How far a follower at `seq` is behind the tenant's head as this process
   * last committed it (0 when it does not know that head: not written here,
   * or its last commit fell back).
   */
  lagBehind(tenant: string, seq: number): number {
    return Math.max(0, (this.repo.knownSize(tenant) ?? 0) - seq);
  }

  /** Appends a verified producer batch; resolves after commit. */
  append(batch: AppendBatch): Promise<Receipt[]> {
    if (!this.sequencer.hasRoom(batch.events.length)) throw LedgerError.busy(this.sequencer.depth);
    return this.sequencer.submit(batch);
  }

  /**
   * Writes entries of the service's own, in a batch signed with the ledger's
   * key (record kid "ledger"), with optional writes in the same transaction.
   */
  async appendServiceEvents(tenant: string, events: ServiceEvent[], inTransaction?: InTransaction): Promise<Receipt[]> {
    const now = new Date().toISOString();
    const full: TraceEvent[] = events.map((e) =>
      serviceEventSchema.parse({
        id: randomUUID(),
        trace_id: e.trace_id ?? randomBytes(16).toString('hex'),
        span_id: e.span_id ?? randomBytes(8).toString('hex'),
        parent_span_id: e.parent_span_id ?? null,
        session_id: e.session_id ?? null,
        type: e.type,
        name: e.name ?? null,
        agent: SERVICE_AGENT,
        time: now,
        status: 'ok',
        attributes: e.attributes,
      }),
    );
    const key = this.config.ledgerKey;
    const jws = await signBatch(full, key.privateKey, key.kid, 'EdDSA');
    const prepared: PreparedEvent[] = full.map((event) => {
      const body = jcs(event);
      return { event, body, digest: eventDigest(body) };
    });
    return this.sequencer.submit({ tenant, kid: LEDGER_KID, jws, batch: batchId(jws), events: prepared, inTransaction });
  }

  /**
   * Appends ordinary (producer-typed, already validated and canonicalised)
   * events that the service formed itself from a trusted translation, such as
   * OTLP spans: no producer signed them, so the batch is signed with the
   * ledger's key (record kid "ledger"). The caller records where they came
   * from in the events themselves. Refused with 503 when the queue is full.
   */
  async appendLedgerSigned(tenant: string, events: PreparedEvent[]): Promise<Receipt[]> {
    if (!this.sequencer.hasRoom(events.length)) throw LedgerError.busy(this.sequencer.depth);
    const key = this.config.ledgerKey;
    const jws = await signDigests(events.map((e) => e.digest), key.privateKey, key.kid, 'EdDSA');
    return this.sequencer.submit({ tenant, kid: LEDGER_KID, jws, batch: batchId(jws), events });
  }

  /**
   * Calls `listener(tenant)` after every commit that appended entries (the
   * checkpointer and the policy evaluator wake up on it). Listeners must not
   * throw and must return quickly; the ledger itself is the source of truth.
   */
  onAppended(listener: (tenant: string) => void): void {
    this.listeners.push(listener);
  }

  /** Hashes of complete Merkle nodes (level 0 = leaf hashes) by `nodeKey`; throws if one is missing. */
  nodes(tenant: string, refs: readonly NodeRef[]): Promise<Map<string, Buffer>> {
    return this.repo.nodes(this.repo.dataSource, tenant, refs);
  }

  /** Hex hashes of stored complete nodes by index range, keyed by `nodeNumber` (absent nodes are not in the map). */
  nodeHexRanges(tenant: string, ranges: readonly NodeRange[]): Promise<Map<number, string>> {
    return this.repo.nodeHexRanges(tenant, ranges);
  }

  /** Number of entries in the tenant's ledger. */
  async size(tenant: string): Promise<number> {
    return (await this.repo.head(tenant)).size;
  }

  async head(tenant: string): Promise<{ tree_size: number; chain_hash: string; root_hash: string }> {
    const head = await this.repo.head(tenant);
    return { tree_size: head.size, chain_hash: toHex(head.chainHash), root_hash: toHex(await this.rootAt(tenant, head.size)) };
  }

  /** Root of the tree of `size` leaves, from stored complete nodes. */
  async rootAt(tenant: string, size: number): Promise<Buffer> {
    if (size === 0) return emptyRoot();
    const refs = frontierRefs(size);
    const nodes = await this.repo.nodes(this.repo.dataSource, tenant, refs);
    return rootFromRefs(size, (r) => nodes.get(nodeKey(r))!);
  }

  async entries(tenant: string, fromSeq: number, limit: number) {
    const rows = await this.repo.entries(tenant, fromSeq, limit + 1);
    const page = rows.slice(0, limit);
    return {
      entries: page.map((r) => ({
        seq: r.seq,
        record: r.record,
        leaf_hash: toHex(r.leaf_hash),
        chain_hash: toHex(r.chain_hash),
      })),
      next_from_seq: rows.length > limit ? rows[limit].seq : null,
    };
  }

  /**
   * Recomputes everything from the stored bytes, streaming in pages: record
   * canonical form, seq continuity, leaf and chain hashes, body digests, the
   * query columns against the record, and each batch signature (once per
   * batch) with digest membership. Names the first bad seq.
   */
  async verify(tenant: string, fromSeq: number, toSeq?: number): Promise<VerifyResult> {
    const head = await this.repo.head(tenant);
    const to = Math.min(toSeq ?? head.size, head.size);
    if (fromSeq > head.size + 1) throw LedgerError.badRange('from_seq', `the ledger has ${head.size} entries`);
    if (toSeq !== undefined && toSeq < fromSeq) throw LedgerError.badRange('to_seq', 'must not be below from_seq');
    const prev = await this.repo.chainHashAt(tenant, fromSeq - 1);
    const result = (extra: Partial<VerifyResult>, verified: number): VerifyResult => ({
      ok: extra.first_bad_seq === undefined,
      verified,
      from_seq: fromSeq,
      to_seq: to,
      ...extra,
    });
    if (!prev) return result({ first_bad_seq: fromSeq - 1, reason: `entry ${fromSeq - 1} is missing` }, 0);
    const verifier = new ChainVerifier(tenant, fromSeq, prev);
    const tree = await this.repo.frontierAt(tenant, fromSeq - 1);
    const batches = new BatchChecker(this.repo, tenant, this.config.ledgerKey.publicJwk);
    let after = fromSeq - 1;
    let verified = 0;
    while (after < to) {
      const page = await this.repo.scanPage(tenant, after, to, VERIFY_PAGE);
      if (page.length === 0) break;
      // the Merkle nodes these entries complete, recomputed, against the stored ones
      const expected = new Map<number, StoredNode[]>();
      for (const row of page) expected.set(row.seq, tree.append(row.leaf_hash));
      const stored = await this.repo.nodesIfPresent(tenant, [...expected.values()].flat());
      for (const row of page) {
        if (row.body === null) {
          // no lawful erasure path exists yet, so a missing body is a deletion
          return result({ first_bad_seq: row.seq, reason: 'the body is missing' }, verified);
        }
        const r = verifier.check(row);
        if ('failure' in r) return result({ first_bad_seq: r.failure.seq, reason: r.failure.reason }, verified);
        const bad =
          columnMismatch(row, r.record) ??
          nodeMismatch(expected.get(row.seq)!, stored) ??
          (await batches.check(r.record));
        if (bad) return result({ first_bad_seq: row.seq, reason: bad }, verified);
        verified++;
      }
      after = page[page.length - 1].seq;
    }
    if (verifier.nextSeq <= to) {
      return result({ first_bad_seq: verifier.nextSeq, reason: `entry ${verifier.nextSeq} is missing` }, verified);
    }
    if (to === head.size) {
      // Truncation: the newest batch says how many entries it appended; the ledger must end with them.
      const last = await this.repo.lastBatch(tenant);
      const end = last ? last.first_seq + last.entry_count - 1 : 0;
      if (end > head.size) {
        return result({ first_bad_seq: head.size + 1, reason: `entry ${head.size + 1} is missing: its batch lists entries up to ${end}` }, verified);
      }
    }
    return result({}, verified);
  }
}

function nodeMismatch(expected: StoredNode[], stored: Map<string, Buffer>): string | null {
  for (const n of expected) {
    const got = stored.get(nodeKey(n));
    if (!got) return `the Merkle node (level ${n.level}, index ${n.index}) is missing`;
    if (!got.equals(n.hash)) return `the Merkle node (level ${n.level}, index ${n.index}) does not match the leaves`;
  }
  return null;
}

function columnMismatch(row: ScanRow, rec: LedgerRecord): string | null {
  const body = JSON.parse(row.body!) as { status?: string; duration_ms?: number };
  const sameInstant = (d: Date, iso: string) => Math.abs(d.getTime() - Date.parse(iso)) <= 1;
  if (!sameInstant(row.event_time, rec.time)) return 'the stored event_time column differs from the record';
  if (!sameInstant(row.received_at, rec.received_at)) return 'the stored received_at column differs from the record';
  const pairs: [string, unknown, unknown][] = [
    ['status', row.status, body.status ?? null],
    ['duration_ms', row.duration_ms, body.duration_ms ?? null],
    ['trace_id', row.trace_id, rec.trace_id],
    ['span_id', row.span_id, rec.span_id],
    ['parent_span_id', row.parent_span_id, rec.parent_span_id],
    ['session_id', row.session_id, rec.session_id],
    ['type', row.type, rec.type],
    ['name', row.name, rec.name],
    ['agent', row.agent, rec.agent],
    ['kid', row.kid, rec.kid],
    ['batch', row.batch, rec.batch],
    ['digest', row.digest, rec.digest],
    ['event_id', row.event_id, rec.id.toLowerCase()],
  ];
  const bad = pairs.find(([, a, b]) => a !== b);
  return bad ? `the stored ${bad[0]} column differs from the record` : null;
}

interface SignedBatch {
  kid: string;
  digests: Set<string>;
  firstSeq: number;
  count: number;
}

/** Verifies each batch JWS once and remembers its digests (bounded cache). */
class BatchChecker {
  private readonly cache = new Map<string, SignedBatch | string>();
  private keys?: Map<string, JWK>;

  constructor(
    private readonly repo: LedgerRepository,
    private readonly tenant: string,
    private readonly ledgerJwk: JWK,
  ) {}

  async check(rec: LedgerRecord): Promise<string | null> {
    let entry = this.cache.get(rec.batch);
    if (entry === undefined) {
      entry = await this.load(rec.batch, rec.kid);
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(rec.batch, entry);
    }
    if (typeof entry === 'string') return entry;
    if (entry.kid !== rec.kid) return `the record's kid "${rec.kid}" is not the kid that signed its batch`;
    if (rec.seq < entry.firstSeq || rec.seq >= entry.firstSeq + entry.count) return 'the entry lies outside its batch';
    return entry.digests.has(rec.digest) ? null : "the record's digest is not in its batch's signed digests";
  }

  /** Verifies a batch once: its JWS, signed by the key its record and its stored row name. */
  private async load(batch: string, kid: string): Promise<SignedBatch | string> {
    const stored = (await this.repo.batches(this.tenant, [batch])).get(batch);
    if (!stored) return 'the batch signature of this entry is missing';
    if (batchId(stored.jws) !== batch) return 'the stored batch JWS does not hash to the batch id';
    if (stored.kid !== kid) return `the stored batch is attributed to "${stored.kid}", the record to "${kid}"`;
    let jwk: JWK | undefined;
    if (kid === LEDGER_KID) jwk = this.ledgerJwk;
    else {
      this.keys ??= await this.repo.producerKeys(this.tenant);
      jwk = this.keys.get(kid);
    }
    if (!jwk) return `the producer key "${kid}" is not registered`;
    try {
      const { alg, kid: headerKid } = readBatchHeader(stored.jws);
      if (headerKid !== (kid === LEDGER_KID ? this.ledgerJwk.kid : kid)) return 'the batch JWS header names another kid';
      const key = await importJWK(jwk, alg);
      if (key instanceof Uint8Array) return 'the producer key is not an asymmetric key';
      const payload = await verifyBatchSignature(stored.jws, key, alg as BatchAlgorithm);
      const digests = (JSON.parse(payload) as { digests: string[] }).digests;
      return { kid, digests: new Set(digests), firstSeq: stored.first_seq, count: stored.entry_count };
    } catch {
      return 'the batch signature does not verify';
    }
  }
}
