import { Readable } from 'node:stream';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import {
  BUNDLE_FORMAT,
  BundleWriter,
  bundleDigest,
  signManifest,
  type BundleManifest,
  type BundleProducerKey,
  type ExportFilter,
} from '../core/bundle';
import { toHex } from '../core/encoding';
import { nodeNumber, nodeRanges, ProofBatch } from '../core/proof-batch';
import { LEDGER_KID, leafHash } from '../core/record';
import { KeysService } from '../keys/keys.service';
import { CheckpointService, type SignedCheckpoint } from '../ledger/checkpoint.service';
import { LedgerService } from '../ledger/ledger.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { ExportError } from './export.errors';
import { ExportRepository, type ExportPageRow, type ExportRow } from './export.repository';
import { pager } from './pager';

/** Entries read (and proven) per query: bounds the memory of one export. */
const PAGE = 1000;
/** Pages of entries read ahead of the one being written (each about 2.5 MB of text once written). */
const PAGES_AHEAD = 2;
/**
 * Bytes the response stream buffers before it stops reading the ledger
 * (backpressure): about two pages of entries, so that the next page is
 * written while the client still reads the ones before it, rather than the
 * service and the client taking turns.
 */
const STREAM_HIGH_WATER = 6 * 1024 * 1024;
/** Recently written batch ids, to skip repeats (batches are contiguous, so repeats are rare). */
const RECENT_BATCHES = 10_000;
/** Batch JWSs read per query (a JWS of 1000 events is about 45 KB). */
const BATCH_JWS_CHUNK = 16;

export interface OpenedExport {
  filename: string;
  checkpointSize: number;
  stream: Readable;
}

/**
 * Evidence export (DESIGN.md §8, docs/evidence-bundle.md): cuts one
 * checkpoint, then streams the bundle: matching entries with bodies and
 * inclusion proofs (node lookups batched per page), their batch JWSs, the
 * producer keys with their registration entries, and the manifest signed by
 * the ledger. The export is recorded as a `ledger.export` entry before the
 * signature is written: a bundle whose export is not in the ledger never
 * ends, and fails to parse.
 */
@Injectable()
export class ExportService {
  private readonly logger = new Logger(ExportService.name);
  /**
   * Distinct batch ids the entries pass keeps for the batches section (about
   * 100 bytes each); an export naming more lists them in a second pass over
   * the entries instead. (A test lowers it to take the second pass.)
   */
  batchIdsKept = 50_000;

  constructor(
    private readonly repo: ExportRepository,
    private readonly ledger: LedgerService,
    private readonly checkpoints: CheckpointService,
    private readonly keys: KeysService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Everything that can fail with a problem response happens here, before the first byte. */
  async open(p: Principal, filter: ExportFilter): Promise<OpenedExport> {
    const checkpoint = await this.checkpoints.cutNow(p.tenant);
    const whole = 'trace_id' in filter ? `trace ${filter.trace_id}` : 'session_id' in filter ? `session ${JSON.stringify(filter.session_id)}` : undefined;
    if (!checkpoint) throw whole ? ExportError.notFound(whole) : ExportError.emptyLedger();
    const bounds = await this.repo.bounds(p.tenant, filter, checkpoint.size);
    if (whole && !bounds) throw ExportError.notFound(whole);
    const exportedAt = new Date().toISOString();
    const stream = Readable.from(this.write(p, filter, checkpoint, bounds, exportedAt), { objectMode: false, highWaterMark: STREAM_HIGH_WATER });
    stream.on('error', (err) => this.logger.error({ err, tenant: p.tenant }, 'evidence export aborted'));
    return { filename: `evidence-${p.tenant}-${exportedAt.replace(/[:.]/g, '-')}.json`, checkpointSize: checkpoint.size, stream };
  }

  /** `bounds`: the first and last matching seq (none match when undefined); the pages walk only that range. */
  private async *write(
    p: Principal,
    filter: ExportFilter,
    cp: SignedCheckpoint,
    bounds: { first: number; last: number } | undefined,
    exportedAt: string,
  ): AsyncGenerator<string> {
    const tenant = p.tenant;
    const w = new BundleWriter();
    yield w.start(cp.note);

    // 1. Entries, page by page, each with its inclusion proof to the checkpoint. The keyset reads
    //    run PAGES_AHEAD pages ahead; each page's proof nodes are read as soon as its rows are in,
    //    while the page before it is written.
    const kids = new Set<string>();
    /** The batch ids named so far, in order of first appearance (undefined once past batchIdsKept). */
    let batchIds: Set<string> | undefined = new Set<string>();
    const proofBatch = new ProofBatch(cp.size);
    const adaptive = !('trace_id' in filter || 'session_id' in filter);
    const pages = pager((after, upTo) => this.repo.page(tenant, filter, after, upTo, PAGE), bounds, PAGE, adaptive, PAGES_AHEAD);
    const proven = () => {
      const p = pages.next().then(async (rows) => ({ rows, proofs: await this.pageProofs(tenant, rows, proofBatch) }));
      p.catch(() => undefined); // awaited below; a client gone away must not make it unhandled
      return p;
    };
    for (let next = proven(); ; ) {
      const { rows, proofs } = await next;
      if (!rows.length) break;
      next = proven();
      const items = new Array<string>(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i];
        items[i] = w.entryJson(r.seq, r.leaf_hash, r.record_json, r.body_json, r.body_digest, proofs[i]);
        if (r.kid !== LEDGER_KID) kids.add(r.kid);
        if (batchIds && !batchIds.has(r.batch)) {
          if (batchIds.size < this.batchIdsKept) batchIds.add(r.batch);
          else batchIds = undefined;
        }
      }
      yield items.join('');
    }

    // 2. The producer keys those entries name, each with its registration entry.
    const producerKeys = await this.producerKeys(tenant, kids, proofBatch);

    // 3. Batches: those the entries named (kept by the first pass, or listed by a second one), then the
    //    registrations' batches.
    const pending = new Set(producerKeys.map((k) => (JSON.parse(k.registration.record) as { batch: string }).batch));
    const recent = new Set<string>();
    const writeBatches = async (ids: string[]): Promise<string> => {
      const fresh = [...new Set(ids)].filter((id) => !recent.has(id));
      const jws = await this.repo.batchJws(tenant, fresh);
      let out = '';
      for (const id of fresh) {
        const text = jws.get(id);
        if (text === undefined) throw new Error(`batch ${id} of tenant ${tenant} is missing`);
        out += w.batch({ batch: id, jws: text });
        pending.delete(id);
        if (recent.size >= RECENT_BATCHES) recent.clear();
        recent.add(id);
      }
      return out;
    };
    if (batchIds) {
      const ids = [...batchIds];
      batchIds = undefined;
      for (let i = 0; i < ids.length; i += BATCH_JWS_CHUNK) {
        const out = await writeBatches(ids.slice(i, i + BATCH_JWS_CHUNK));
        if (out) yield out;
      }
    } else {
      const batchPages = pager((after, upTo) => this.repo.batchPage(tenant, filter, after, upTo, PAGE), bounds, PAGE, adaptive);
      for (let rows = await batchPages.next(); rows.length; rows = await batchPages.next()) {
        const out = await writeBatches(rows.map((r) => r.batch));
        if (out) yield out;
      }
    }
    yield await writeBatches([...pending]);
    let keysText = '';
    for (const k of producerKeys) keysText += w.producerKey(k);
    const closed = w.close();
    yield keysText + closed.text;

    // 4. The manifest, signed; the export is recorded before the signature is written.
    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT,
      tenant,
      filter,
      exported_by: p.sub,
      exported_at: exportedAt,
      count: w.count,
      checkpoint_size: cp.size,
    };
    const key = this.config.ledgerKey;
    const signature = await signManifest(manifest, closed.contentsDigest, key.privateKey, key.kid);
    await this.ledger.appendServiceEvents(tenant, [
      {
        type: 'ledger.export',
        name: 'evidence_bundle',
        attributes: {
          exported_by: p.sub,
          filter,
          count: w.count,
          checkpoint_size: cp.size,
          contents_digest: closed.contentsDigest,
          bundle_digest: bundleDigest(manifest, closed.contentsDigest),
        },
      },
    ]);
    yield w.finish(manifest, signature);
  }

  /**
   * The inclusion proofs of a page's entries (JSON array text, in row order)
   * from one read of stored nodes by range. The page's own leaf hashes are
   * the leaf siblings inside the page; only the others are read.
   */
  private async pageProofs(tenant: string, rows: readonly ExportPageRow[], batch: ProofBatch): Promise<string[]> {
    if (!rows.length) return [];
    const own = new Map<number, string>();
    for (const r of rows) own.set(r.seq - 1, r.leaf_hash);
    return this.proofTexts(tenant, rows.map((r) => r.seq), batch, own);
  }

  /** Proofs of `seqs` (ascending) as JSON array text; `leaves`: leaf hashes (hex, by index) already at hand. */
  private async proofTexts(tenant: string, seqs: readonly number[], batch: ProofBatch, leaves = new Map<number, string>()): Promise<string[]> {
    const indexes = seqs.map((s) => s - 1);
    const wanted = batch.needs(indexes).filter((r) => r.level > 0 || !leaves.has(r.index));
    const found = await this.ledger.nodeHexRanges(tenant, nodeRanges(wanted));
    return batch.texts(indexes, (level, index) => {
      const hex = level === 0 ? (leaves.get(index) ?? found.get(nodeNumber(0, index))) : found.get(nodeNumber(level, index));
      if (hex === undefined) throw new Error(`Merkle node ${level}:${index} of tenant ${tenant} is missing`);
      return hex;
    });
  }

  private async producerKeys(tenant: string, kids: Set<string>, proofBatch: ProofBatch): Promise<BundleProducerKey[]> {
    if (!kids.size) return [];
    const registered = new Map((await this.keys.list(tenant)).filter((k) => kids.has(k.kid)).map((k) => [k.kid, k]));
    const missing = [...kids].filter((kid) => !registered.has(kid));
    if (missing.length) throw new Error(`producer keys ${missing.join(', ')} of tenant ${tenant} have no registration`);
    const found: ExportRow[] = await this.repo.entriesAt(tenant, [...new Set([...registered.values()].map((k) => k.registered_seq))]);
    const texts = await this.proofTexts(tenant, found.map((r) => r.seq), proofBatch);
    const rows = new Map(found.map((r, i) => [r.seq, { ...r, proof: JSON.parse(texts[i]) as string[] }]));
    return [...registered.values()].map((k) => {
      const row = rows.get(k.registered_seq)!;
      const { kid: _kid, ...jwk } = k.jwk;
      const registration = { seq: row.seq, record: row.record, body: row.body, leaf_hash: toHex(leafHash(row.record)), inclusion_proof: row.proof };
      return { kid: k.kid, alg: k.alg as 'EdDSA' | 'ES256', jwk, registration };
    });
  }
}
