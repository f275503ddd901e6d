import { randomBytes, randomUUID, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import { signBatch, type BatchAlgorithm } from '../../src/core/batch';
import {
  BUNDLE_FORMAT,
  bodyDigest,
  bundleEntry,
  ContentsDigest,
  matchesFilter,
  signManifest,
  type BundleManifest,
  type EvidenceBundle,
  type ExportFilter,
} from '../../src/core/bundle';
import { formatCheckpointBody, signCheckpoint } from '../../src/core/checkpoint';
import type { TraceEvent } from '../../src/core/event';
import { jcs } from '../../src/core/jcs';
import { assembleInclusionProof, hashChildren, rootFromLeaves, type NodeRef } from '../../src/core/merkle';
import { batchId, buildRecord, eventDigest, leafHash, LEDGER_KID, recordJcs, type LedgerRecord } from '../../src/core/record';
import { producerKey, type TestProducer } from './factories';

/**
 * A tenant's ledger in memory, built with the pure core exactly as the
 * service builds its own (records, batches, key registrations signed by the
 * ledger key, C2SP checkpoints), and the evidence bundles it would export.
 * For the bundle verifier's unit tests and benchmarks: no database.
 */

export interface MemoryEntry {
  seq: number;
  record: string;
  parsed: LedgerRecord;
  body: string | null;
  leaf: Buffer;
}

export const TEST_ORIGIN = 'agent-ledger.test';

export class MemoryLedger {
  readonly entries: MemoryEntry[] = [];
  readonly batches = new Map<string, string>();
  readonly registrations = new Map<string, { seq: number; jwk: JWK; alg: BatchAlgorithm }>();

  constructor(
    readonly tenant: string,
    readonly ledgerKey: { privateKey: KeyObject; publicKey: KeyObject; publicJwk: JWK; kid: string },
  ) {}

  static async create(tenant = 'acme'): Promise<MemoryLedger> {
    return new MemoryLedger(tenant, await newLedgerKey());
  }

  /** Registers a producer key, as KeysService does: a `ledger.key_registered` entry signed by the ledger. */
  async register(p: TestProducer, producer = 'test-producer'): Promise<void> {
    const { kty, crv, x, y } = p.publicJwk;
    const jwk = JSON.parse(JSON.stringify({ kty, crv, x, y })) as JWK;
    const [receipt] = await this.appendService([
      { type: 'ledger.key_registered', name: p.kid, attributes: { kid: p.kid, producer, alg: p.alg, jwk } },
    ]);
    this.registrations.set(p.kid, { seq: receipt, jwk, alg: p.alg });
  }

  async appendService(evs: { type: string; name: string; attributes: Record<string, unknown> }[]): Promise<number[]> {
    const full = evs.map((e) => ({
      id: randomUUID(),
      trace_id: randomBytes(16).toString('hex'),
      span_id: randomBytes(8).toString('hex'),
      parent_span_id: null,
      session_id: null,
      type: e.type,
      name: e.name,
      agent: 'agent-ledger',
      time: new Date().toISOString(),
      status: 'ok',
      attributes: e.attributes,
    })) as unknown as TraceEvent[];
    const jws = await signBatch(full, this.ledgerKey.privateKey, this.ledgerKey.kid, 'EdDSA');
    return this.appendSigned(full, jws, LEDGER_KID);
  }

  /** Appends a producer's signed batch. */
  async append(evs: TraceEvent[], p: TestProducer): Promise<number[]> {
    return this.appendSigned(evs, await signBatch(evs, p.privateKey, p.kid, p.alg), p.kid);
  }

  appendSigned(evs: TraceEvent[], jws: string, kid: string): number[] {
    const batch = batchId(jws);
    this.batches.set(batch, jws);
    const receivedAt = new Date().toISOString();
    return evs.map((e) => {
      const body = jcs(e);
      const seq = this.entries.length + 1;
      const parsed = buildRecord(this.tenant, seq, e, receivedAt, kid, batch, eventDigest(body));
      const record = recordJcs(parsed);
      this.entries.push({ seq, record, parsed, body, leaf: leafHash(record) });
      return seq;
    });
  }

  /** The signed checkpoint of the current tree. */
  checkpoint(size = this.entries.length): string {
    const root = rootFromLeaves(this.entries.slice(0, size).map((e) => e.leaf));
    return signCheckpoint(
      formatCheckpointBody({ origin: `${TEST_ORIGIN}/${this.tenant}`, size, rootHash: root }),
      TEST_ORIGIN,
      this.ledgerKey.privateKey,
    );
  }

  proof(seq: number, size: number): Buffer[] {
    const levels = this.levels(size);
    return assembleInclusionProof(seq - 1, size, (r: NodeRef) => levels[r.level][r.index]);
  }

  private levelsCache?: { size: number; levels: Buffer[][] };

  /** Every complete node by level (level 0 = leaves), computed once per tree size. */
  private levels(size: number): Buffer[][] {
    if (this.levelsCache?.size === size) return this.levelsCache.levels;
    const levels: Buffer[][] = [this.entries.slice(0, size).map((e) => e.leaf)];
    while (levels[levels.length - 1].length >= 2) {
      const below = levels[levels.length - 1];
      const up: Buffer[] = [];
      for (let i = 0; i + 1 < below.length; i += 2) up.push(hashChildren(below[i], below[i + 1]));
      levels.push(up);
    }
    this.levelsCache = { size, levels };
    return levels;
  }

  /** The bundle the service would export for `filter`, at the current size. */
  async bundle(filter: ExportFilter, opts: { exportedBy?: string; erase?: number[] } = {}): Promise<EvidenceBundle> {
    const size = this.entries.length;
    const checkpoint = this.checkpoint(size);
    const entry = (e: MemoryEntry) => bundleEntry(e.seq, e.record, opts.erase?.includes(e.seq) ? null : e.body, this.proof(e.seq, size));
    const selected = this.entries.filter((e) => matchesFilter(e.parsed, filter));
    const entries = selected.map(entry);
    const kids = [...new Set(selected.map((e) => e.parsed.kid).filter((k) => k !== LEDGER_KID))];
    const producer_keys = kids.map((kid) => {
      const reg = this.registrations.get(kid)!;
      return { kid, alg: reg.alg as 'EdDSA' | 'ES256', jwk: reg.jwk as Record<string, unknown>, registration: entry(this.entries[reg.seq - 1]) };
    });
    const batchIds = [...new Set([...selected, ...producer_keys.map((k) => this.entries[k.registration.seq - 1])].map((e) => e.parsed.batch))];
    const batches = batchIds.map((batch) => ({ batch, jws: this.batches.get(batch)! }));
    const digest = new ContentsDigest();
    digest.add('checkpoint', checkpoint);
    for (const e of entries) digest.addEntry(e.seq, e.leaf_hash, e.body === null ? null : bodyDigest(e.body));
    for (const b of batches) digest.add('batch', b);
    for (const k of producer_keys) digest.add('producer_key', k);
    const contents_digest = digest.hex();
    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT,
      tenant: this.tenant,
      filter,
      exported_by: opts.exportedBy ?? 'auditor',
      exported_at: new Date().toISOString(),
      count: entries.length,
      checkpoint_size: size,
    };
    const signature = await signManifest(manifest, contents_digest, this.ledgerKey.privateKey, this.ledgerKey.kid);
    return { format: BUNDLE_FORMAT, checkpoint, entries, batches, producer_keys, manifest, contents_digest, signature };
  }

  /** Re-signs a (tampered) bundle's manifest and digest with the ledger key, as a forger holding the key could. */
  async resign(b: EvidenceBundle): Promise<void> {
    const digest = new ContentsDigest();
    digest.add('checkpoint', b.checkpoint);
    for (const e of b.entries) digest.addEntry(e.seq, e.leaf_hash, e.body === null ? null : bodyDigest(e.body));
    for (const x of b.batches) digest.add('batch', x);
    for (const k of b.producer_keys) digest.add('producer_key', k);
    b.contents_digest = digest.hex();
    b.signature = await signManifest(b.manifest, b.contents_digest, this.ledgerKey.privateKey, this.ledgerKey.kid);
  }
}

export async function newLedgerKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const { kty, crv, x } = (await exportJWK(publicKey)) as JWK;
  const kid = await calculateJwkThumbprint({ kty, crv, x });
  return { privateKey, publicKey, publicJwk: { kty, crv, x, kid, alg: 'EdDSA' } as JWK, kid };
}

export { producerKey };
