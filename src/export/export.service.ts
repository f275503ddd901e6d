import { Readable } from 'node:stream';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Principal } from '../auth/principal';
import {
  BUNDLE_FORMAT,
  BundleWriter,
  bundleDigest,
  bundleEntry,
  signManifest,
  type BundleManifest,
  type BundleProducerKey,
  type ExportFilter,
} from '../core/bundle';
import { nodeKey, type NodeRef } from '../core/merkle';
import { key as nodeNumber, ProofBatch } from '../core/proof-batch';
import { LEDGER_KID } from '../core/record';
import { KeysService } from '../keys/keys.service';
import { CheckpointService, type SignedCheckpoint } from '../ledger/checkpoint.service';
import { LedgerService } from '../ledger/ledger.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { ExportError } from './export.errors';
import { ExportRepository, type ExportRow } from './export.repository';
import { pager } from './pager';

/** Entries read (and proven) per query: bounds the memory of one export. */
const PAGE = 1000;
/** Bytes the response stream buffers before it stops reading the ledger (backpressure). */
const STREAM_HIGH_WATER = 256 * 1024;
/** Recently written batch ids, to skip repeats (batches are contiguous, so repeats are rare). */
const RECENT_BATCHES = 10_000;

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

    // 1. Entries, page by page, each with its inclusion proof to the checkpoint. The page after
    //    this one, and its proof nodes, are read while this one is written.
    const kids = new Set<string>();
    const proofBatch = new ProofBatch(cp.size);
    const adaptive = !('trace_id' in filter || 'session_id' in filter);
    const pages = pager(
      async (after, upTo) => {
        const rows = await this.repo.page(tenant, filter, after, upTo, PAGE);
        const proofs = await this.proofTexts(tenant, rows.map((r) => r.seq), proofBatch);
        return rows.map((r) => ({ ...r, proof: proofs.get(r.seq)! }));
      },
      bounds,
      PAGE,
      adaptive,
    );
    for (let rows = await pages.next(); rows.length; rows = await pages.next()) {
      let out = '';
      for (const r of rows) {
        out += w.entryText(r.seq, r.record, r.body, r.leaf_hash, r.proof);
        if (r.kid !== LEDGER_KID) kids.add(r.kid);
      }
      yield out;
    }

    // 2. The producer keys those entries name, each with its registration entry.
    const producerKeys = await this.producerKeys(tenant, kids, proofBatch);

    // 3. Batches: a second pass over the matching entries, then the registrations' batches.
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
    const batchPages = pager((after, upTo) => this.repo.batchPage(tenant, filter, after, upTo, PAGE), bounds, PAGE, adaptive);
    for (let rows = await batchPages.next(); rows.length; rows = await batchPages.next()) {
      const out = await writeBatches(rows.map((r) => r.batch));
      if (out) yield out;
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

  /** Inclusion proofs of `seqs` in the tree of `size`: one node lookup for the whole page. */
  private async proofs(tenant: string, seqs: number[], batch: ProofBatch): Promise<Map<number, Buffer[]>> {
    const refs = batch.refs(seqs.map((s) => s - 1));
    const found = await this.ledger.nodes(tenant, refs);
    const nodes = new Map<number, Buffer>(refs.map((r) => [nodeNumber(r.level, r.index), found.get(nodeKey(r))!]));
    const lookup = (r: NodeRef) => nodes.get(nodeNumber(r.level, r.index))!;
    return new Map(seqs.map((seq) => [seq, batch.proof(seq - 1, lookup)]));
  }

  /**
   * The same proofs as JSON array text. Neighbouring entries share most of
   * their path, and ProofBatch hands out the same Buffer for the same node,
   * so each node is turned into quoted hex once per page.
   */
  private async proofTexts(tenant: string, seqs: number[], batch: ProofBatch): Promise<Map<number, string>> {
    const proofs = await this.proofs(tenant, seqs, batch);
    const quoted = new Map<Buffer, string>();
    const text = (b: Buffer) => {
      let q = quoted.get(b);
      if (q === undefined) quoted.set(b, (q = `"${b.toString('hex')}"`));
      return q;
    };
    const out = new Map<number, string>();
    for (const [seq, path] of proofs) out.set(seq, `[${path.map(text).join(',')}]`);
    return out;
  }

  private async producerKeys(tenant: string, kids: Set<string>, proofBatch: ProofBatch): Promise<BundleProducerKey[]> {
    if (!kids.size) return [];
    const registered = new Map((await this.keys.list(tenant)).filter((k) => kids.has(k.kid)).map((k) => [k.kid, k]));
    const missing = [...kids].filter((kid) => !registered.has(kid));
    if (missing.length) throw new Error(`producer keys ${missing.join(', ')} of tenant ${tenant} have no registration`);
    const rows = new Map<number, ExportRow>(
      (await this.repo.entriesAt(tenant, [...registered.values()].map((k) => k.registered_seq))).map((r) => [r.seq, r]),
    );
    const proofs = await this.proofs(tenant, [...rows.keys()], proofBatch);
    return [...registered.values()].map((k) => {
      const row = rows.get(k.registered_seq)!;
      const { kid: _kid, ...jwk } = k.jwk;
      return { kid: k.kid, alg: k.alg as 'EdDSA' | 'ES256', jwk, registration: bundleEntry(row.seq, row.record, row.body, proofs.get(row.seq)!) };
    });
  }
}
