import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { importJWK, type JWK } from 'jose';
import { readBatchHeader, signBatch, verifyBatchSignature, type BatchAlgorithm } from '../core/batch';
import { ChainVerifier } from '../core/chain-verifier';
import { toHex } from '../core/encoding';
import { serviceEventSchema, type TraceEvent } from '../core/event';
import { jcs } from '../core/jcs';
import { emptyRoot, frontierRefs, nodeKey, rootFromRefs } from '../core/merkle';
import { batchId, eventDigest, LEDGER_KID, type LedgerRecord } from '../core/record';
import { MetricsService } from '../metrics/metrics.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { LedgerError } from './ledger.errors';
import { LedgerRepository, type ScanRow } from './ledger.repository';
import type { AppendBatch, InTransaction, PreparedEvent, Receipt } from './ledger.types';
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
export class LedgerService {
  readonly sequencer: Sequencer;

  constructor(
    private readonly repo: LedgerRepository,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.sequencer = new Sequencer(
      {
        commit: (tenant, batches) => this.repo.appendGroup(tenant, batches),
        onCommitted: (_t, events, _b, seconds) => {
          this.metrics.ingestedEvents.inc(events);
          this.metrics.commitDuration.observe(seconds);
          this.metrics.groupSize.observe(events);
        },
      },
      config.env.INGEST_MAX_GROUP_EVENTS,
      config.env.INGEST_MAX_GROUP_EVENTS * 20,
    );
    this.metrics.setQueueDepthSource(() => this.sequencer.depth);
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
    if (fromSeq < 1) throw LedgerError.badRange('from_seq', 'must be at least 1');
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
    const batches = new BatchChecker(this.repo, tenant, this.config.ledgerKey.publicJwk);
    let after = fromSeq - 1;
    let verified = 0;
    while (after < to) {
      const page = await this.repo.scanPage(tenant, after, to, VERIFY_PAGE);
      if (page.length === 0) break;
      for (const row of page) {
        const r = verifier.check(row);
        if ('failure' in r) return result({ first_bad_seq: r.failure.seq, reason: r.failure.reason }, verified);
        const bad = columnMismatch(row, r.record) ?? (await batches.check(r.record));
        if (bad) return result({ first_bad_seq: row.seq, reason: bad }, verified);
        verified++;
      }
      after = page[page.length - 1].seq;
    }
    if (verifier.nextSeq <= to) {
      return result({ first_bad_seq: verifier.nextSeq, reason: `entry ${verifier.nextSeq} is missing` }, verified);
    }
    return result({}, verified);
  }
}

function columnMismatch(row: ScanRow, rec: LedgerRecord): string | null {
  const pairs: [string, unknown, unknown][] = [
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

/** Verifies each batch JWS once and remembers its digests (bounded cache). */
class BatchChecker {
  private readonly cache = new Map<string, Set<string> | string>();
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
    return entry.has(rec.digest) ? null : "the record's digest is not in its batch's signed digests";
  }

  private async load(batch: string, kid: string): Promise<Set<string> | string> {
    const stored = (await this.repo.batches(this.tenant, [batch])).get(batch);
    if (!stored) return 'the batch signature of this entry is missing';
    if (batchId(stored.jws) !== batch) return 'the stored batch JWS does not hash to the batch id';
    let jwk: JWK | undefined;
    if (kid === LEDGER_KID) jwk = this.ledgerJwk;
    else {
      this.keys ??= await this.repo.producerKeys(this.tenant);
      jwk = this.keys.get(kid);
    }
    if (!jwk) return `the producer key "${kid}" is not registered`;
    try {
      const { alg } = readBatchHeader(stored.jws);
      const key = await importJWK(jwk, alg);
      if (key instanceof Uint8Array) return 'the producer key is not an asymmetric key';
      const payload = await verifyBatchSignature(stored.jws, key, alg as BatchAlgorithm);
      const digests = (JSON.parse(payload) as { digests: string[] }).digests;
      return new Set(digests);
    } catch {
      return 'the batch signature does not verify';
    }
  }
}
