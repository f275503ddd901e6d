import { createPublicKey, hash, type JsonWebKey, type KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, type JWK } from 'jose';
import { BATCH_JWS_TYP } from './batch';
import {
  BUNDLE_FORMAT,
  BUNDLE_JWS_TYP,
  ContentsDigest,
  filterMatcher,
  signedPayload,
  type BundleEntry,
  type EvidenceBundle,
  type ExportFilter,
} from './bundle';
import { checkpointKeyId, ed25519PublicKeyRaw, parseNote, verifyCheckpoint, type Checkpoint } from './checkpoint';
import { hashChildren, HASH_SIZE, largestPowerOfTwoBelow } from './merkle';
import { batchId, LEDGER_KID, parseCommonRecord, recordJcs, type LedgerRecord } from './record';

/**
 * Offline verification of an evidence bundle (DESIGN.md §8). Trust flows from
 * the ledger's public key alone:
 *
 *   checkpoint signature → inclusion proof of each entry's leaf → record
 *   (canonical, tenant, seq) → producer keys as registered (each by its own
 *   `ledger.key_registered` entry, itself proven and signed by the ledger) →
 *   batch signatures and digest membership → event digests → bodies →
 *   the ledger's JWS over the manifest and the digest of the contents.
 *
 * Every failure names the check and, when it concerns one entry, its seq.
 * An erased body (null) is reported apart, as "body erased, digest <d>".
 */

export type BundleCheck =
  | 'format'
  | 'checkpoint'
  | 'signature'
  | 'contents_digest'
  | 'count'
  | 'seq'
  | 'record'
  | 'tenant'
  | 'leaf_hash'
  | 'inclusion'
  | 'filter'
  | 'producer_key'
  | 'batch'
  | 'batch_signature'
  | 'digest_membership'
  | 'body';

export interface BundleFailure {
  /** The seq of the entry the failure concerns (for a producer key: its registration entry). */
  entry?: number;
  check: BundleCheck;
  message: string;
}

export interface BundleSummary {
  tenant: string;
  entries: number;
  traces: number;
  /** Earliest and latest event `time` among the entries (the producers' strings), null when empty. */
  from: string | null;
  to: string | null;
  checkpointSize: number;
  filter: ExportFilter | null;
  exportedBy: string | null;
  exportedAt: string | null;
}

export interface BundleResult {
  ok: boolean;
  summary: BundleSummary;
  failures: BundleFailure[];
  /** Entries whose body was erased: not a failure, their digest still stands. */
  erased: { entry: number; digest: string; message: string }[];
}

export interface VerifyBundleOptions {
  /** Require this checkpoint origin (e.g. `agent-ledger.local/acme`). */
  origin?: string;
  /** Require this tenant. */
  tenant?: string;
  /** Stop after this many failures (default 1000). */
  maxFailures?: number;
}

const RECORD_KEY_COUNT = 16;
const NULLABLE = new Set(['name', 'parent_span_id', 'session_id']);
const BODY_FIELDS = ['id', 'trace_id', 'span_id', 'parent_span_id', 'session_id', 'type', 'name', 'agent', 'time'] as const;
const ENTRY_KEYS = new Set(['body', 'inclusion_proof', 'leaf_hash', 'record', 'seq']);
/**
 * Verified digest lists kept at once (a batch holds up to 1000 digests): a
 * batch's entries are consecutive in the ledger, so the list is needed for a
 * run of entries and rarely again; one needed again after its eviction is
 * verified again (its JWS stays), which is correct in any order, only slower.
 */
const VERIFIED_BATCHES_KEPT = 32;

class TooManyFailures extends Error {}

interface BatchState {
  /** Verified digest list, or why the batch does not verify. */
  result?: { digests: Set<string> } | { error: string; check: BundleCheck };
  /** The record kid whose key the signature was checked with. */
  kid?: string;
  /**
   * The JWS as UTF-8 bytes, outside V8's heap: the JWSs are ~62 bytes per
   * exported entry (each holds its batch's digest list), the largest thing a
   * verification keeps, and V8 lets its heap grow to a multiple of what lives
   * on it (1M entries: peak RSS 374 MB with them as strings).
   */
  jws: Buffer;
}

interface KeyState {
  key: KeyObject;
  alg: 'EdDSA' | 'ES256';
  registeredSeq: number;
}

interface EntryOutcome {
  rec?: LedgerRecord;
  ok: boolean;
  bodyDigest: string | null;
}

/** Everything of a bundle but its entries: what entries are checked against, and the signed tail. */
export type BundleHead = Omit<EvidenceBundle, 'entries'>;

export async function verifyBundle(
  bundle: unknown,
  ledgerPublicKey: KeyObject | JWK,
  options: VerifyBundleOptions = {},
): Promise<BundleResult> {
  const v = new BundleVerification(ledgerPublicKey, options);
  const b = v.shape(bundle);
  if (!b) return v.result();
  if (await v.start(b)) {
    for (const e of b.entries) {
      const pending = v.entry(e);
      if (pending) await pending;
    }
  }
  return v.finish();
}

/**
 * One verification, in three steps, so that a bundle too big to hold can be
 * checked as it is read (bundle-file.ts): `start` with everything but the
 * entries, `entry` for each entry in file order (shape checked there), then
 * `finish` (the count and the contents digest; the manifest signature too if
 * the signature was not known at `start`). A format failure, and the
 * thousandth failure, end the verification: later calls do nothing.
 */
export class BundleVerification {
  readonly failures: BundleFailure[] = [];
  readonly erased: BundleResult['erased'] = [];
  private summary: BundleSummary = {
    tenant: '',
    entries: 0,
    traces: 0,
    from: null,
    to: null,
    checkpointSize: 0,
    filter: null,
    exportedBy: null,
    exportedAt: null,
  };
  private stopped = false;
  private tenant = '';
  private checkpoint?: Checkpoint;
  private ledgerKey?: KeyObject;
  /** From the head, what `finish` needs (the batches are in batchList). */
  private head?: { manifest: BundleHead['manifest']; contents_digest?: string; signature?: string; producer_keys: BundleHead['producer_keys'] };
  /** The batches as listed, for the contents digest: by their state (JWS kept as bytes), or as given when not kept. */
  private readonly batchList: (BundleHead['batches'][number] | { batch: string; state: BatchState })[] = [];
  private signatureChecked = false;
  private readonly batches = new Map<string, BatchState>();
  /** Batches whose verified digest list is kept, oldest first (VERIFIED_BATCHES_KEPT). */
  private readonly verifiedBatches: BatchState[] = [];
  private readonly keys = new Map<string, KeyState>();
  private inclusion?: InclusionVerifier;
  private readonly maxFailures: number;
  // per-entry state
  private readonly digest = new ContentsDigest();
  private readonly traces = new Set<string>();
  private matches: (r: LedgerRecord) => boolean = () => true;
  private count = 0;
  private prevSeq = 0;
  private from: { t: number; s: string } | null = null;
  private to: { t: number; s: string } | null = null;

  constructor(
    private readonly ledgerPublicKey: KeyObject | JWK,
    private readonly options: VerifyBundleOptions = {},
  ) {
    this.maxFailures = options.maxFailures ?? 1000;
  }

  /** Whether a format failure or too many failures ended the verification. */
  get done(): boolean {
    return this.stopped;
  }

  fail(check: BundleCheck, message: string, entry?: number): void {
    this.failures.push(entry === undefined ? { check, message } : { entry, check, message });
    if (this.failures.length >= this.maxFailures) throw new TooManyFailures();
  }

  result(): BundleResult {
    return { ok: this.failures.length === 0, summary: this.summary, failures: this.failures, erased: this.erased };
  }

  /** A whole bundle's structure (entries included), before anything is trusted; undefined (and a format failure) when it cannot be checked at all. */
  shape(input: unknown): EvidenceBundle | undefined {
    const head = this.shapeHead(input, { entries: true });
    if (!head) return undefined;
    const entries = (input as { entries: unknown[] }).entries;
    const badEntry = entries.findIndex((e) => !entryOk(e));
    if (badEntry >= 0) {
      this.badEntry(entries[badEntry], badEntry);
      return undefined;
    }
    return input as EvidenceBundle;
  }

  /**
   * Everything but the entries' elements (`entries: true`: it must be an
   * array too). With `tailLater`, `contents_digest` and `signature` may be
   * absent (they come after the entries in the file): `finish` gets them.
   */
  shapeHead(input: unknown, opts: { entries: boolean; tailLater?: boolean }): BundleHead | undefined {
    const bad = (why: string) => this.formatFailure(why);
    if (!isObject(input)) return bad('the bundle is not a JSON object');
    const b = input as Record<string, unknown>;
    if (b.format !== BUNDLE_FORMAT) return bad(`format is ${JSON.stringify(b.format)}, expected "${BUNDLE_FORMAT}"`);
    for (const k of ['checkpoint', 'contents_digest', 'signature'] as const) {
      const later = opts.tailLater && k !== 'checkpoint' && b[k] === undefined;
      if (typeof b[k] !== 'string' && !later) return bad(`${k} must be a string`);
    }
    for (const k of opts.entries ? (['entries', 'batches', 'producer_keys'] as const) : (['batches', 'producer_keys'] as const)) {
      if (!Array.isArray(b[k])) return bad(`${k} must be an array`);
    }
    const m = b.manifest;
    if (!isObject(m)) return bad('manifest must be an object');
    const mm = m as Record<string, unknown>;
    if (mm.format !== BUNDLE_FORMAT) return bad(`manifest.format must be "${BUNDLE_FORMAT}"`);
    if (typeof mm.tenant !== 'string' || typeof mm.exported_by !== 'string' || typeof mm.exported_at !== 'string') {
      return bad('manifest.tenant, exported_by and exported_at must be strings');
    }
    if (!isCount(mm.count) || !isCount(mm.checkpoint_size)) return bad('manifest.count and checkpoint_size must be non-negative integers');
    if (!isFilter(mm.filter)) return bad('manifest.filter must be {trace_id}, {session_id} or {agent?, from?, to?}');
    const badBatch = (b.batches as unknown[]).findIndex(
      (x) => !isObject(x) || typeof (x as Record<string, unknown>).batch !== 'string' || typeof (x as Record<string, unknown>).jws !== 'string' || Object.keys(x).length !== 2,
    );
    if (badBatch >= 0) return bad(`batches[${badBatch}] must be {batch, jws}`);
    const badKey = (b.producer_keys as unknown[]).findIndex((k) => {
      if (!isObject(k)) return true;
      const kk = k as Record<string, unknown>;
      return typeof kk.kid !== 'string' || (kk.alg !== 'EdDSA' && kk.alg !== 'ES256') || !isObject(kk.jwk) || !entryOk(kk.registration) || Object.keys(kk).length !== 4;
    });
    if (badKey >= 0) return bad(`producer_keys[${badKey}] must be {kid, alg, jwk, registration: <entry>}`);
    return input as BundleHead;
  }

  private formatFailure(why: string, entry?: number): undefined {
    this.stopped = true;
    try {
      this.fail('format', why, entry);
    } catch (err) {
      if (!(err instanceof TooManyFailures)) throw err;
    }
    return undefined;
  }

  private badEntry(e: unknown, index: number): void {
    const seq = isObject(e) && isCount((e as BundleEntry).seq) ? (e as BundleEntry).seq : undefined;
    this.formatFailure(`entries[${index}] must have exactly seq, record, body (string or null), leaf_hash and inclusion_proof (strings)`, seq);
  }

  /**
   * The checks that come before the entries: ledger key, checkpoint, the
   * manifest signature (when the head has it), batches, producer keys.
   * Returns whether entries can be checked.
   */
  async start(head: BundleHead): Promise<boolean> {
    if (this.stopped) return false;
    try {
      await this.startChecks(head);
    } catch (err) {
      if (!(err instanceof TooManyFailures)) throw err;
      this.stopped = true;
    }
    return !this.stopped;
  }

  private async startChecks(b: BundleHead): Promise<void> {
    const { options } = this;
    try {
      this.ledgerKey = toPublicKey(this.ledgerPublicKey);
      ed25519PublicKeyRaw(this.ledgerKey);
    } catch (err) {
      this.ledgerKey = undefined;
      this.fail('signature', `the ledger key is not an Ed25519 public key: ${(err as Error).message}`);
      this.stopped = true;
      return;
    }
    this.head = { manifest: b.manifest, contents_digest: b.contents_digest, signature: b.signature, producer_keys: b.producer_keys };
    const m = b.manifest;
    this.tenant = m.tenant;
    this.summary = {
      ...this.summary,
      tenant: m.tenant,
      checkpointSize: m.checkpoint_size,
      filter: m.filter,
      exportedBy: m.exported_by,
      exportedAt: m.exported_at,
    };
    if (options.tenant !== undefined && m.tenant !== options.tenant) {
      this.fail('tenant', `the bundle is for tenant "${m.tenant}", expected "${options.tenant}"`);
    }

    // 1. The checkpoint, signed by the ledger key.
    this.verifyCheckpointNote(b.checkpoint, m.checkpoint_size, options.origin);

    // 2. The ledger's signature over the manifest and the digest of the contents (now if the head holds it).
    if (typeof b.signature === 'string' && typeof b.contents_digest === 'string') {
      this.signatureChecked = true;
      await this.verifyManifestSignature(b.manifest, b.contents_digest, b.signature);
    }

    // 3. Batches by id (their signatures are checked when an entry needs them, with the key its record names).
    for (const x of b.batches) {
      const existing = this.batches.get(x.batch);
      if (existing) {
        if (existing.jws.toString('utf8') !== x.jws) this.fail('batch', `batch ${x.batch} appears twice with different JWSs`);
        this.batchList.push(existing.jws.toString('utf8') === x.jws ? { batch: x.batch, state: existing } : x);
      } else if (batchId(x.jws) !== x.batch) {
        this.fail('batch', `the JWS of batch ${x.batch} does not hash to its id`);
        this.batchList.push(x);
      } else {
        const state = { jws: Buffer.from(x.jws, 'utf8') };
        // a JWS that does not survive UTF-8 (a lone surrogate) is kept as given: it cannot verify anyway
        this.batches.set(x.batch, state);
        this.batchList.push(state.jws.toString('utf8') === x.jws ? { batch: x.batch, state } : x);
      }
    }

    // 4. Producer keys, each proven by its registration entry.
    const root = this.checkpoint?.rootHash;
    const size = this.checkpoint?.size ?? m.checkpoint_size;
    if (root) this.inclusion = new InclusionVerifier(size, root);
    for (const k of b.producer_keys) {
      const pending = this.verifyProducerKey(k);
      if (pending) await pending;
    }

    // 5. The entries follow, hashed into the contents digest as they are checked.
    this.digest.add('checkpoint', b.checkpoint);
    this.matches = filterMatcher(m.filter);
  }

  /**
   * One entry, in file order (its shape first: a malformed entry is a format
   * failure that ends the verification). Returns a promise only when the
   * entry needs a batch signature checked: await it before the next entry.
   */
  entry(input: unknown): Promise<void> | undefined {
    if (this.stopped) return undefined;
    const index = this.count++;
    if (!entryOk(input)) {
      this.badEntry(input, index);
      return undefined;
    }
    try {
      const e = input;
      if (e.seq <= this.prevSeq) this.fail('seq', `entry ${e.seq} comes after entry ${this.prevSeq}: entries must be in ascending seq order without repeats`, e.seq);
      this.prevSeq = Math.max(this.prevSeq, e.seq);
      const out = this.verifyEntry(e, true);
      if (!(out instanceof Promise)) {
        this.afterEntry(e, out);
        return undefined;
      }
      return out.then(
        (o) => this.guard(() => this.afterEntry(e, o)),
        (err: unknown) => this.guard(() => {
          throw err;
        }),
      );
    } catch (err) {
      if (!(err instanceof TooManyFailures)) throw err;
      this.stopped = true;
      return undefined;
    }
  }

  private guard(f: () => void): void {
    try {
      f();
    } catch (err) {
      if (!(err instanceof TooManyFailures)) throw err;
      this.stopped = true;
    }
  }

  private afterEntry(e: BundleEntry, { rec, ok, bodyDigest }: EntryOutcome): void {
    this.digest.addEntry(e.seq, e.leaf_hash, bodyDigest);
    if (rec && !this.matches(rec)) this.fail('filter', `the entry does not match the export filter ${JSON.stringify(this.head?.manifest.filter)}`, e.seq);
    if (!rec || !ok) return;
    this.traces.add(rec.trace_id);
    const t = Date.parse(rec.time);
    if (!this.from || t < this.from.t) this.from = { t, s: rec.time };
    if (!this.to || t > this.to.t) this.to = { t, s: rec.time };
  }

  /**
   * The checks after the last entry: count and contents digest, and the
   * manifest signature if `start` did not have it (`tail`: the members that
   * came after the entries).
   */
  async finish(tail: Partial<Pick<BundleHead, 'contents_digest' | 'signature'>> = {}): Promise<BundleResult> {
    const b = this.head;
    if (this.stopped || !b) return this.finalResult();
    try {
      const contentsDigest = tail.contents_digest ?? b.contents_digest;
      const signature = tail.signature ?? b.signature;
      if (typeof contentsDigest !== 'string' || typeof signature !== 'string') {
        this.fail('format', 'contents_digest and signature must be strings');
        return this.finalResult();
      }
      if (!this.signatureChecked) await this.verifyManifestSignature(b.manifest, contentsDigest, signature);
      if (b.manifest.count !== this.count) {
        this.fail('count', `the manifest says ${b.manifest.count} entries, the bundle holds ${this.count}`);
      }
      for (const x of this.batchList) this.digest.add('batch', 'state' in x ? { batch: x.batch, jws: x.state.jws.toString('utf8') } : x);
      for (const k of b.producer_keys) this.digest.add('producer_key', k);
      if (this.digest.hex() !== contentsDigest) {
        this.fail('contents_digest', 'the contents (checkpoint, entries, batches, producer keys) do not hash to the signed contents_digest: something was added, removed, reordered or changed');
      }
    } catch (err) {
      if (!(err instanceof TooManyFailures)) throw err;
    }
    return this.finalResult();
  }

  private finalResult(): BundleResult {
    if (this.head) {
      this.summary = { ...this.summary, entries: this.count, traces: this.traces.size, from: this.from?.s ?? null, to: this.to?.s ?? null };
    }
    return this.result();
  }

  private verifyCheckpointNote(note: string, size: number, origin: string | undefined): void {
    let name: string | undefined;
    const ledgerKey = this.ledgerKey!;
    try {
      const raw = ed25519PublicKeyRaw(ledgerKey);
      // The ledger signs as `<origin prefix>`; find its line by key id, whatever the name.
      name = parseNote(note).signatures.find((s) => s.keyId.equals(checkpointKeyId(s.name, raw)))?.name;
      if (name === undefined) {
        this.fail('checkpoint', 'the checkpoint carries no signature by the ledger key');
        return;
      }
      this.checkpoint = verifyCheckpoint(note, name, ledgerKey, origin !== undefined ? { origin } : {});
    } catch (err) {
      if (err instanceof TooManyFailures) throw err;
      this.fail('checkpoint', `the checkpoint does not verify: ${(err as Error).message}`);
      return;
    }
    const cp = this.checkpoint;
    if (!cp.origin.endsWith(`/${this.tenant}`)) {
      this.fail('checkpoint', `the checkpoint origin "${cp.origin}" is not this tenant's log (…/${this.tenant})`);
    }
    if (cp.size !== size) this.fail('checkpoint', `the checkpoint has tree size ${cp.size}, the manifest says ${size}`);
  }

  private async verifyManifestSignature(manifest: BundleHead['manifest'], contentsDigest: string, signature: string): Promise<void> {
    let failure: string | undefined;
    try {
      const header = decodeProtectedHeader(signature);
      if (header.typ !== BUNDLE_JWS_TYP) {
        failure = `the manifest signature's typ is ${JSON.stringify(header.typ)}, expected "${BUNDLE_JWS_TYP}"`;
      } else {
        const { payload } = await compactVerify(signature, this.ledgerKey!, { algorithms: ['EdDSA'] });
        if (Buffer.from(payload).toString('utf8') !== signedPayload(manifest, contentsDigest)) {
          failure = "the ledger's signature covers another manifest or contents digest than the bundle's";
        }
      }
    } catch (err) {
      failure = `the ledger's signature over the manifest does not verify: ${(err as Error).message}`;
    }
    if (failure) this.fail('signature', failure);
  }

  private verifyProducerKey(k: BundleHead['producer_keys'][number]): Promise<void> | undefined {
    const out = this.verifyEntry(k.registration, false);
    if (out instanceof Promise) return out.then((o) => this.acceptProducerKey(k, o));
    this.acceptProducerKey(k, out);
    return undefined;
  }

  private acceptProducerKey(k: BundleHead['producer_keys'][number], { rec, ok }: EntryOutcome): void {
    const seq = k.registration.seq;
    if (!rec || !ok) {
      this.fail('producer_key', `key "${k.kid}": its registration entry does not verify`, seq);
      return;
    }
    const bad = (why: string) => this.fail('producer_key', `key "${k.kid}": ${why}`, seq);
    if (rec.type !== 'ledger.key_registered' || rec.kid !== LEDGER_KID || rec.name !== k.kid) {
      return bad(`entry ${seq} is not the ledger's registration of this kid (type ${rec.type}, name ${String(rec.name)})`);
    }
    if (k.registration.body === null) return bad('the body of its registration entry was erased: the key cannot be proven');
    let attrs: Record<string, unknown>;
    try {
      attrs = (JSON.parse(k.registration.body) as { attributes: Record<string, unknown> }).attributes;
    } catch {
      return bad('the registration body is not JSON');
    }
    const registered = isObject(attrs?.jwk) ? (attrs.jwk as Record<string, unknown>) : undefined;
    if (!registered || attrs.kid !== k.kid) return bad('the registration entry does not register this kid');
    if (attrs.alg !== k.alg) return bad(`registered with alg ${String(attrs.alg)}, the bundle says ${k.alg}`);
    for (const member of ['kty', 'crv', 'x', 'y']) {
      if (registered[member] !== k.jwk[member]) return bad(`the bundle's JWK differs from the registered one (${member})`);
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: registered as JsonWebKey, format: 'jwk' });
    } catch {
      return bad('the registered JWK is not a valid public key');
    }
    if (this.keys.has(k.kid)) return bad('the kid is listed twice');
    this.keys.set(k.kid, { key, alg: k.alg, registeredSeq: seq });
  }

  /**
   * Checks one entry: leaf hash and inclusion, record, batch signature and
   * membership, body. Gives the parsed record (when it parses) and whether
   * every check passed; a promise only when a batch signature had to be
   * verified (the common case, a batch already verified, stays synchronous).
   */
  private verifyEntry(e: BundleEntry, ordered: boolean): EntryOutcome | Promise<EntryOutcome> {
    const seq = e.seq;
    const bodyDigest = e.body === null ? null : hash('sha256', e.body, 'base64url');
    const failuresBefore = this.failures.length;
    // Leaf and inclusion: the record's bytes are in the checkpointed tree.
    const leafHex = hash('sha256', '\u0000' + e.record, 'hex');
    if (e.leaf_hash !== leafHex) this.fail('leaf_hash', 'leaf_hash is not H(0x00 || record)', seq);
    if (this.checkpoint && this.inclusion) {
      if (seq < 1 || seq > this.checkpoint.size) {
        this.fail('inclusion', `seq ${seq} is outside the checkpoint's tree of ${this.checkpoint.size} entries`, seq);
      } else if (!this.inclusion.verify(leafHex, seq - 1, e.inclusion_proof, ordered)) {
        this.fail('inclusion', `the inclusion proof does not lead from the record's leaf to the checkpoint root (tree size ${this.checkpoint.size})`, seq);
      }
    }
    // Record: canonical v1 record of this tenant and seq.
    const rec = this.parseRecord(e);
    if (!rec) return { ok: false, bodyDigest };
    // Batch signature and membership, with the key the record names (each batch's signature once).
    const state = this.batches.get(rec.batch);
    if (state?.result && 'digests' in state.result && state.kid === rec.kid) {
      if (!state.result.digests.has(rec.digest)) this.fail('digest_membership', `the record's digest is not in the signed digest list of batch ${rec.batch}`, seq);
      return this.checkBody(e, rec, bodyDigest, failuresBefore);
    }
    return this.verifyBatch(rec, seq).then(() => this.checkBody(e, rec, bodyDigest, failuresBefore));
  }

  /** Body: hashes to the digest and agrees with the record; null = erased. */
  private checkBody(e: BundleEntry, rec: LedgerRecord, bodyDigest: string | null, failuresBefore: number): EntryOutcome {
    const seq = e.seq;
    if (e.body === null) {
      this.erased.push({ entry: seq, digest: rec.digest, message: `body erased, digest ${rec.digest}` });
    } else if (bodyDigest !== rec.digest) {
      this.fail('body', "the body does not hash to the record's digest", seq);
    } else {
      let body: Record<string, unknown> | undefined;
      try {
        body = JSON.parse(e.body) as Record<string, unknown>;
      } catch {
        this.fail('body', 'the body is not JSON', seq);
      }
      if (body) {
        const differs = bodyDiffers(body, rec);
        if (differs) this.fail('body', `the body's ${differs} differs from the record's`, seq);
      }
    }
    return { rec, ok: this.failures.length === failuresBefore, bodyDigest };
  }

  private parseRecord(e: BundleEntry): LedgerRecord | undefined {
    const seq = e.seq;
    // The common canonical form is read in one pass (parseCommonRecord returns a record only for
    // canonical text); anything else takes the general path below, which decides.
    let rec = parseCommonRecord(e.record);
    if (!rec) {
      try {
        rec = JSON.parse(e.record) as LedgerRecord;
      } catch {
        this.fail('record', 'the record is not JSON', seq);
        return undefined;
      }
      // Exactly the 16 v1 members: recordJcs below writes exactly those, so the text comparison checks the names.
      if (!isObject(rec) || Object.keys(rec).length !== RECORD_KEY_COUNT) {
        this.fail('record', 'the record does not have exactly the v1 fields', seq);
        return undefined;
      }
      const r = rec as unknown as Record<string, unknown>;
      let typesOk = true;
      for (const k in r) {
        const val = r[k];
        if (k !== 'seq' && k !== 'v' && typeof val !== 'string' && !(val === null && NULLABLE.has(k))) typesOk = false;
      }
      if (!typesOk || rec.v !== 1 || !Number.isSafeInteger(rec.seq)) {
        this.fail('record', 'the record has a field of the wrong type or an unknown version', seq);
        return undefined;
      }
      if (recordJcs(rec) !== e.record) {
        this.fail('record', 'the record text is not its canonical (RFC 8785) form', seq);
        return undefined;
      }
    }
    if (rec.tenant !== this.tenant) {
      this.fail('tenant', `the record belongs to tenant "${rec.tenant}", the bundle to "${this.tenant}"`, seq);
      return undefined;
    }
    if (rec.seq !== seq) {
      this.fail('record', `the record says seq ${rec.seq}`, seq);
      return undefined;
    }
    return rec;
  }

  private async verifyBatch(rec: LedgerRecord, seq: number): Promise<void> {
    const state = this.batches.get(rec.batch);
    if (!state) {
      this.fail('batch', `the batch ${rec.batch} that carried this event is not in the bundle`, seq);
      return;
    }
    let signer: { key: KeyObject; alg: 'EdDSA' | 'ES256'; headerKid?: string } | undefined;
    if (rec.kid === LEDGER_KID) signer = { key: this.ledgerKey!, alg: 'EdDSA' };
    else {
      const k = this.keys.get(rec.kid);
      if (!k) {
        this.fail('producer_key', `no proven registration of producer key "${rec.kid}" in the bundle`, seq);
        return;
      }
      if (k.registeredSeq >= seq) {
        this.fail('producer_key', `key "${rec.kid}" was registered at seq ${k.registeredSeq}, after this entry`, seq);
        return;
      }
      signer = { ...k, headerKid: rec.kid };
    }
    if (state.kid !== undefined && state.kid !== rec.kid) {
      this.fail('batch_signature', `batch ${rec.batch} is signed by "${state.kid}", this record names "${rec.kid}"`, seq);
      return;
    }
    state.kid = rec.kid;
    if (!state.result) {
      state.result = await verifyBatchJws(state.jws.toString('utf8'), signer.key, signer.alg, signer.headerKid);
      if ('digests' in state.result) this.keepVerified(state);
    }
    const r = state.result;
    if ('error' in r) this.fail(r.check, `batch ${rec.batch}: ${r.error}`, seq);
    else if (!r.digests.has(rec.digest)) this.fail('digest_membership', `the record's digest is not in the signed digest list of batch ${rec.batch}`, seq);
  }

  /** Keeps at most VERIFIED_BATCHES_KEPT verified digest lists: the oldest is forgotten (and verified again if needed). */
  private keepVerified(state: BatchState): void {
    this.verifiedBatches.push(state);
    if (this.verifiedBatches.length > VERIFIED_BATCHES_KEPT) {
      const old = this.verifiedBatches.shift()!;
      if (old !== state) old.result = undefined;
    }
  }
}

/** The first of BODY_FIELDS in which the body and the record differ (an absent optional field is null). */
function bodyDiffers(body: Record<string, unknown>, rec: LedgerRecord): (typeof BODY_FIELDS)[number] | undefined {
  // one named read per field (the bodies of a bundle share a shape): 3x faster than a loop over the names
  if (body.id !== rec.id) return 'id';
  if (body.trace_id !== rec.trace_id) return 'trace_id';
  if (body.span_id !== rec.span_id) return 'span_id';
  if ((body.parent_span_id ?? null) !== rec.parent_span_id) return 'parent_span_id';
  if ((body.session_id ?? null) !== rec.session_id) return 'session_id';
  if (body.type !== rec.type) return 'type';
  if ((body.name ?? null) !== rec.name) return 'name';
  if (body.agent !== rec.agent) return 'agent';
  if (body.time !== rec.time) return 'time';
  return undefined;
}

/** Exactly the five members of an entry, typed. */
function entryOk(e: unknown): e is BundleEntry {
  if (!isObject(e)) return false;
  const keys = Object.keys(e);
  if (keys.length !== 5 || !keys.every((k) => ENTRY_KEYS.has(k))) return false;
  return (
    isCount((e as BundleEntry).seq) &&
    typeof (e as BundleEntry).record === 'string' &&
    ((e as BundleEntry).body === null || typeof (e as BundleEntry).body === 'string') &&
    typeof (e as BundleEntry).leaf_hash === 'string' &&
    Array.isArray((e as BundleEntry).inclusion_proof) &&
    (e as BundleEntry).inclusion_proof.every((p) => typeof p === 'string')
  );
}

async function verifyBatchJws(
  jws: string,
  key: KeyObject,
  alg: 'EdDSA' | 'ES256',
  headerKid: string | undefined,
): Promise<NonNullable<BatchState['result']>> {
  try {
    const h = decodeProtectedHeader(jws);
    if (h.typ !== BATCH_JWS_TYP) return { check: 'batch_signature', error: `the JWS typ is ${JSON.stringify(h.typ)}, expected "${BATCH_JWS_TYP}"` };
    if (h.alg !== alg) return { check: 'batch_signature', error: `signed with ${String(h.alg)}, the key is registered for ${alg}` };
    if (headerKid !== undefined && h.kid !== headerKid) return { check: 'batch_signature', error: `the JWS names key "${String(h.kid)}", the record "${headerKid}"` };
    const { payload } = await compactVerify(jws, key, { algorithms: [alg] });
    const parsed = JSON.parse(Buffer.from(payload).toString('utf8')) as { digests?: unknown };
    if (!Array.isArray(parsed.digests) || !parsed.digests.every((d) => typeof d === 'string')) {
      return { check: 'batch_signature', error: 'the signed payload has no digest list' };
    }
    return { digests: new Set(parsed.digests as string[]) };
  } catch (err) {
    return { check: 'batch_signature', error: `the signature does not verify with the registered key (${(err as Error).message})` };
  }
}

/**
 * RFC 9162 §2.1.3.2 inclusion verification that remembers the last verified
 * path: an exported run of consecutive entries shares most of its path, so
 * each entry costs about one node hash instead of log2(size).
 *
 * The paths of the remembered leaf i and of a new leaf j share the nodes
 * from the root down to the node N where they part (i to one child, j to the
 * other). So j's proof holds iff: above N its elements equal i's (the same
 * siblings); at N its element equals the child of N on i's side as computed
 * when i was verified; and hashing j's leaf up through its proof's lower
 * elements gives the child of N on j's side, which is i's proof element
 * there. Each of those is a value i's verification bound to the trusted
 * root, so every proof element is checked, as with the plain algorithm; when
 * one of them differs, the plain algorithm decides. Proof elements may be
 * given as bytes or as lowercase hex (decoded only when hashed).
 */
export class InclusionVerifier {
  private readonly root: Buffer;
  /** The last verified path: the leaf index, its proof and the nodes computed along it (bottom-up: [0] the leaf, [depth] the root). */
  private last?: { index: number; depth: number; proof: readonly (Uint8Array | string)[]; nodes: string[] };
  /** The path of the current leaf, top-down: the split of each node, and whether the leaf is left of it. */
  private readonly mids = new Float64Array(64);
  private readonly lefts = new Uint8Array(64);

  constructor(
    private readonly size: number,
    root: Uint8Array,
  ) {
    this.root = Buffer.from(root);
  }

  /** `remember`: keep this path for the next leaves (pass false for out-of-order one-offs). */
  verify(leaf: Uint8Array | string, index: number, proof: readonly (Uint8Array | string)[], remember = true): boolean {
    // A leaf given as lowercase hex is decoded only if it has to be hashed.
    if (typeof leaf === 'string' ? !/^[0-9a-f]{64}$/.test(leaf) : leaf.length !== HASH_SIZE) return false;
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) return false;
    const depth = this.path(index);
    if (proof.length !== depth) return false;
    const leafHex = typeof leaf === 'string' ? leaf : Buffer.from(leaf).toString('hex');
    if (this.last && this.viaLast(this.last, leafHex, index, depth, proof, remember)) return true;
    return this.plain(leafHex, index, depth, proof, remember);
  }

  /** Fills mids/lefts top-down for `index`; returns the path's length. */
  private path(index: number): number {
    const { mids, lefts } = this;
    let depth = 0;
    for (let start = 0, end = this.size; end - start > 1; depth++) {
      const mid = start + largestPowerOfTwoBelow(end - start);
      mids[depth] = mid;
      lefts[depth] = index < mid ? 1 : 0;
      if (index < mid) end = mid;
      else start = mid;
    }
    return depth;
  }

  /** Hashes a node up one level: the leaf side given by `lefts` at top-down level `t`. */
  private up(r: Buffer, p: Buffer, t: number): Buffer {
    return this.lefts[t] ? hashChildren(r, p) : hashChildren(p, r);
  }

  /** The plain algorithm: hash the leaf up through every proof element, compare with the root. */
  private plain(leafHex: string, index: number, depth: number, proof: readonly (Uint8Array | string)[], remember: boolean): boolean {
    const nodes = [leafHex];
    let r: Buffer = Buffer.from(leafHex, 'hex');
    for (let b = 0; b < depth; b++) {
      const p = proofBytes(proof[b]);
      if (!p) return false;
      r = this.up(r, p.bytes, depth - 1 - b);
      if (remember) nodes.push(r.toString('hex'));
    }
    if (!r.equals(this.root)) return false;
    if (remember) this.last = { index, depth, proof, nodes };
    return true;
  }

  /** Whether the proof holds by the last verified path (false: this could not show it, the plain algorithm decides). */
  private viaLast(
    last: NonNullable<InclusionVerifier['last']>,
    leafHex: string,
    index: number,
    depth: number,
    proof: readonly (Uint8Array | string)[],
    remember: boolean,
  ): boolean {
    if (last.index === index) return leafHex === last.nodes[0] && proof.every((p, b) => hexOf(p) === hexOf(last.proof[b]));
    // N: the first node (top-down) where the two leaves go to different children
    let n = 0;
    while ((last.index < this.mids[n] ? 1 : 0) === this.lefts[n]) n++;
    const kj = depth - 1 - n; // N's children's level, bottom-up, on this path
    const ki = last.depth - 1 - n; // and on the last one
    for (let t = 0; t < n; t++) if (hexOf(proof[depth - 1 - t]) !== hexOf(last.proof[last.depth - 1 - t])) return false;
    if (hexOf(proof[kj]) !== last.nodes[ki]) return false;
    const nodes = [leafHex];
    let r: Buffer | undefined;
    for (let b = 0; b < kj; b++) {
      const p = proofBytes(proof[b]);
      if (!p) return false;
      r = this.up(r ?? Buffer.from(leafHex, 'hex'), p.bytes, depth - 1 - b);
      nodes.push(r.toString('hex'));
    }
    if (nodes[kj] !== hexOf(last.proof[ki])) return false;
    if (remember) {
      for (let b = ki + 1; b <= last.depth; b++) nodes.push(last.nodes[b]);
      this.last = { index, depth, proof, nodes };
    }
    return true;
  }
}

function hexOf(p: Uint8Array | string): string {
  return typeof p === 'string' ? p : Buffer.from(p).toString('hex');
}

/** A proof element as bytes and canonical hex, or undefined when it is not a 32-byte hash (in lowercase hex). */
function proofBytes(p: Uint8Array | string): { bytes: Buffer; hex: string } | undefined {
  if (typeof p !== 'string') return p.length === HASH_SIZE ? { bytes: Buffer.from(p), hex: Buffer.from(p).toString('hex') } : undefined;
  const bytes = Buffer.from(p, 'hex');
  return bytes.length === HASH_SIZE && bytes.toString('hex') === p ? { bytes, hex: p } : undefined;
}

function toPublicKey(k: KeyObject | JWK): KeyObject {
  if (isKeyObject(k)) return k.type === 'private' ? createPublicKey(k) : k;
  const { d: _d, ...pub } = k;
  return createPublicKey({ key: pub as JsonWebKey, format: 'jwk' });
}

function isKeyObject(k: unknown): k is KeyObject {
  return typeof k === 'object' && k !== null && typeof (k as KeyObject).export === 'function' && 'asymmetricKeyType' in (k as object);
}

function isObject(x: unknown): x is object {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isFilter(f: unknown): f is ExportFilter {
  if (!isObject(f)) return false;
  const o = f as Record<string, unknown>;
  const keys = Object.keys(o).sort().join();
  if (keys === 'trace_id' || keys === 'session_id') return typeof Object.values(o)[0] === 'string';
  if (!keys) return false;
  return Object.entries(o).every(([k, val]) => ['agent', 'from', 'to'].includes(k) && typeof val === 'string');
}

