import { createHash, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { toHex } from './encoding';
import { jcs } from './jcs';
import type { LedgerRecord } from './record';
import { leafHash } from './record';

/**
 * The evidence bundle (DESIGN.md §8, docs/evidence-bundle.md): what a
 * reviewer downloads from `POST /v1/exports` and checks offline with nothing
 * but the bundle and the ledger's public key. Pure code: the service writes
 * bundles with these functions, the verifier and the tests read them.
 *
 * The file is one JSON object written one item per line, so the service can
 * stream it and a reader can split it into lines:
 *
 *   {"format":"agent-ledger-evidence/v1",
 *   "checkpoint":<signed note>,
 *   "entries":[
 *   <entry>,            one per line, seq ascending
 *   ],"batches":[
 *   <batch>,
 *   ],"producer_keys":[
 *   <producer key>,
 *   ],"manifest":<manifest>,
 *   "contents_digest":"<hex>",
 *   "signature":"<JWS>"}
 *
 * The manifest comes last because its `count` is known only at the end.
 */

export const BUNDLE_FORMAT = 'agent-ledger-evidence/v1';
/** `typ` of the ledger's JWS over the manifest. */
export const BUNDLE_JWS_TYP = 'evidence-bundle+jws';

/** Which entries were exported: one trace, one session, or agent and/or time range (`from` inclusive, `to` exclusive, on the event's `time`). */
export type ExportFilter =
  | { trace_id: string }
  | { session_id: string }
  | { agent?: string; from?: string; to?: string };

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  tenant: string;
  filter: ExportFilter;
  /** `sub` of the token that asked for the export. */
  exported_by: string;
  /** RFC 3339 UTC with milliseconds. */
  exported_at: string;
  /** Number of entries in `entries`. */
  count: number;
  /** Tree size of the checkpoint every inclusion proof leads to. */
  checkpoint_size: number;
}

/** One ledger entry with its evidence. */
export interface BundleEntry {
  seq: number;
  /** The exact stored JCS text of the record (DESIGN.md §3). */
  record: string;
  /** The event's JCS text, or null when the body was lawfully erased (the record's digest still names it). */
  body: string | null;
  /** hex H(0x00 || record). */
  leaf_hash: string;
  /** RFC 9162 PATH(seq - 1, D[checkpoint_size]), leaf sibling first, hex. */
  inclusion_proof: string[];
}

export interface BundleBatch {
  /** b64u(H(jws)): the `batch` of the records it carried. */
  batch: string;
  /** The producer's (or the ledger's) JWS; its payload is the batch's digest list, never other events' bodies. */
  jws: string;
}

export interface BundleProducerKey {
  kid: string;
  alg: 'EdDSA' | 'ES256';
  /** The public JWK as registered. */
  jwk: Record<string, unknown>;
  /** The `ledger.key_registered` entry that registered it, with its body (its batch is in `batches`). */
  registration: BundleEntry;
}

export interface EvidenceBundle {
  format: typeof BUNDLE_FORMAT;
  /** C2SP signed checkpoint note (DESIGN.md §4). */
  checkpoint: string;
  entries: BundleEntry[];
  batches: BundleBatch[];
  producer_keys: BundleProducerKey[];
  manifest: BundleManifest;
  /** hex, see ContentsDigest. */
  contents_digest: string;
  /** The ledger's JWS (EdDSA) over signedPayload(manifest, contents_digest). */
  signature: string;
}

export type BundleSection = 'checkpoint' | 'entry' | 'batch' | 'producer_key';

/**
 * contents_digest = hex SHA-256 of one line per item, in file order:
 *
 *   ["checkpoint",<note>]                          the checkpoint note
 *   ["entry",<seq>,"<leaf_hash>",<body digest>]    each entry: its leaf hash commits to the
 *                                                  record, the body digest b64u(H(body)) (null
 *                                                  when erased) to the body
 *   ["batch",{"batch":…,"jws":…}]                  each batch
 *   ["producer_key",{…}]                           each producer key, whole
 *
 * each line being the JCS text of that array followed by 0x0A. JCS text has
 * no raw newline, so the lines are unambiguous; the section name keeps an
 * item from moving between arrays. Entries are hashed by their leaf hash and
 * body digest rather than by their whole text so that neither side has to
 * re-serialise a record and a body per entry (the verifier checks the leaf
 * hash against the record and the proof against the checkpoint anyway).
 */
export class ContentsDigest {
  private readonly hash = createHash('sha256');

  add(section: Exclude<BundleSection, 'entry'>, item: unknown): void {
    this.addJcs(section, jcs(item));
  }

  /** An entry by its leaf hash (hex, as in the file) and its body digest (b64u(H(body)), null when erased). */
  addEntry(seq: number, leafHashHex: string, bodyDigest: string | null): void {
    this.hash.update(`["entry",${seq},${JSON.stringify(leafHashHex)},${bodyDigest === null ? 'null' : JSON.stringify(bodyDigest)}]\n`);
  }

  private addJcs(section: BundleSection, itemJcs: string): void {
    this.hash.update(`[${JSON.stringify(section)},`).update(itemJcs).update(']\n');
  }

  hex(): string {
    return this.hash.digest('hex');
  }
}

/** b64u(H(body)): equals the record's `digest` for an untouched body. */
export function bodyDigest(body: string): string {
  return createHash('sha256').update(body).digest('base64url');
}

/** The JCS text the ledger signs: `{"contents_digest": …, "manifest": …}`. */
export function signedPayload(manifest: BundleManifest, contentsDigest: string): string {
  return jcs({ contents_digest: contentsDigest, manifest });
}

/** The ledger's signature over the manifest and the contents digest. */
export function signManifest(
  manifest: BundleManifest,
  contentsDigest: string,
  privateKey: KeyObject,
  kid: string,
): Promise<string> {
  return new CompactSign(Buffer.from(signedPayload(manifest, contentsDigest), 'utf8'))
    .setProtectedHeader({ alg: 'EdDSA', kid, typ: BUNDLE_JWS_TYP })
    .sign(privateKey);
}

/** SHA-256 of the signed payload: the bundle's identity, recorded in the `ledger.export` entry. */
export function bundleDigest(manifest: BundleManifest, contentsDigest: string): string {
  return createHash('sha256').update(signedPayload(manifest, contentsDigest)).digest('hex');
}

/** An entry item from the stored bytes and its proof. */
export function bundleEntry(seq: number, record: string, body: string | null, proof: readonly Uint8Array[]): BundleEntry {
  return { seq, record, body, leaf_hash: toHex(leafHash(record)), inclusion_proof: proof.map(toHex) };
}

/** Whether a record matches an export filter (the service's SQL and the verifier agree on this). */
export function matchesFilter(record: Pick<LedgerRecord, 'trace_id' | 'session_id' | 'agent' | 'time'>, filter: ExportFilter): boolean {
  return filterMatcher(filter)(record);
}

/** matchesFilter with the filter's times parsed once, for one call per entry. */
export function filterMatcher(filter: ExportFilter): (record: Pick<LedgerRecord, 'trace_id' | 'session_id' | 'agent' | 'time'>) => boolean {
  if ('trace_id' in filter) return (r) => r.trace_id === filter.trace_id;
  if ('session_id' in filter) return (r) => r.session_id === filter.session_id;
  const { agent } = filter;
  const from = filter.from !== undefined ? Date.parse(filter.from) : undefined;
  const to = filter.to !== undefined ? Date.parse(filter.to) : undefined;
  return (r) => {
    if (agent !== undefined && r.agent !== agent) return false;
    if (from === undefined && to === undefined) return true;
    const t = Date.parse(r.time);
    if (from !== undefined && !(t >= from)) return false;
    if (to !== undefined && !(t < to)) return false;
    return true;
  };
}

/**
 * JCS text of an entry item. Its members are fixed and typed (strings, null,
 * one safe integer, an array of hex strings), so RFC 8785 reduces to "keys in
 * order, values as JSON.stringify writes them" (a unit test checks it against
 * the generic canonicaliser): the writer and the verifier call it per entry.
 */
export function entryJcs(e: BundleEntry): string {
  return (
    `{"body":${e.body === null ? 'null' : JSON.stringify(e.body)},"inclusion_proof":${JSON.stringify(e.inclusion_proof)},` +
    `"leaf_hash":${JSON.stringify(e.leaf_hash)},"record":${JSON.stringify(e.record)},"seq":${e.seq}}`
  );
}

/**
 * Writes a bundle as it is read, one item per line, in the fixed order
 * checkpoint, entries, batches, producer keys, manifest, and keeps the
 * contents digest as it goes: constant memory whatever the entry count.
 * Each method returns the text to append to the output.
 */
export class BundleWriter {
  private readonly digest = new ContentsDigest();
  private section: 'entries' | 'batches' | 'producer_keys' | 'done' = 'entries';
  private first = true;
  private entryCount = 0;
  private contents?: string;

  start(checkpoint: string): string {
    this.digest.add('checkpoint', checkpoint);
    return `{"format":${JSON.stringify(BUNDLE_FORMAT)},\n"checkpoint":${JSON.stringify(checkpoint)},\n"entries":[`;
  }

  entry(e: BundleEntry): string {
    this.expect('entries');
    this.entryCount++;
    this.digest.addEntry(e.seq, e.leaf_hash, e.body === null ? null : bodyDigest(e.body));
    return this.item(entryJcs(e));
  }

  /**
   * The same item as `entry()` from its parts as JSON text, for the export's
   * hot loop: record and body as JSON string literals (`null` for an erased
   * body), the leaf hash as stored (hex), the body digest b64u(H(body)) of
   * those same body bytes (null when erased), the proof as JSON array text
   * (`["<hex>",…]`). The export reads the JSON text and the digest from the
   * same row, so the writer neither escapes nor hashes the bodies.
   */
  entryJson(seq: number, leafHashHex: string, recordJson: string, bodyJson: string, bodyDigest: string | null, proofJson: string): string {
    this.expect('entries');
    if ((bodyDigest === null) !== (bodyJson === 'null')) throw new Error(`entry ${seq}: a body digest goes with a body, and only with one`);
    this.entryCount++;
    this.digest.addEntry(seq, leafHashHex, bodyDigest);
    return this.item(`{"body":${bodyJson},"inclusion_proof":${proofJson},"leaf_hash":"${leafHashHex}","record":${recordJson},"seq":${seq}}`);
  }

  batch(b: BundleBatch): string {
    const item = { batch: b.batch, jws: b.jws };
    this.digest.add('batch', item);
    return this.moveTo('batches') + this.item(jcs(item));
  }

  producerKey(k: BundleProducerKey): string {
    this.digest.add('producer_key', k);
    return this.moveTo('producer_keys') + this.item(jcs(k));
  }

  get count(): number {
    return this.entryCount;
  }

  /** Closes the arrays and returns the contents digest (call once, after the last item). */
  close(): { text: string; contentsDigest: string } {
    const text = this.moveTo('producer_keys') + (this.first ? '' : '\n') + ']';
    this.section = 'done';
    this.contents = this.digest.hex();
    return { text, contentsDigest: this.contents };
  }

  /** The signed tail: manifest, contents digest (the computed one unless given), signature. */
  finish(manifest: BundleManifest, signature: string, contentsDigest = this.contents): string {
    if (contentsDigest === undefined) throw new Error('close() the bundle before finishing it');
    return `,"manifest":${jcs(manifest)},\n"contents_digest":${JSON.stringify(contentsDigest)},\n"signature":${JSON.stringify(signature)}}\n`;
  }

  private item(text: string): string {
    const sep = this.first ? '\n' : ',\n';
    this.first = false;
    return sep + text;
  }

  private moveTo(section: 'batches' | 'producer_keys'): string {
    const order = ['entries', 'batches', 'producer_keys', 'done'];
    const from = order.indexOf(this.section);
    const to = order.indexOf(section);
    if (from > to) throw new Error(`bundle items must come in the order entries, batches, producer keys (got a ${section} item after ${this.section})`);
    let out = '';
    for (let i = from; i < to; i++) {
      out += (this.first ? '' : '\n') + `],"${order[i + 1]}":[`;
      this.first = true;
    }
    this.section = section;
    return out;
  }

  private expect(section: 'entries'): void {
    if (this.section !== section) throw new Error(`an entry after the ${this.section}`);
  }
}

/** A whole bundle as the service writes it (for tests and tools; the service streams the same text). */
export function bundleText(b: EvidenceBundle): string {
  const w = new BundleWriter();
  let text = w.start(b.checkpoint);
  for (const e of b.entries) text += w.entry(e);
  for (const x of b.batches) text += w.batch(x);
  for (const k of b.producer_keys) text += w.producerKey(k);
  return text + w.close().text + w.finish(b.manifest, b.signature, b.contents_digest);
}
