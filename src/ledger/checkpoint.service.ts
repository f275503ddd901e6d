import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { Counter } from 'prom-client';
import {
  formatCheckpointBody,
  formatVerifierKey,
  MAX_NOTE_SIGNATURES,
  parseNote,
  signCheckpoint,
  verifyCheckpoint,
} from '../core/checkpoint';
import { toHex } from '../core/encoding';
import {
  assembleConsistencyProof,
  consistencyProofRefs,
  Frontier,
  frontierRefs,
  nodeKey,
  rootFromRefs,
  verifyConsistency,
  type NodeLookup,
} from '../core/merkle';
import { MetricsService } from '../metrics/metrics.service';
import type { AppConfig } from '../runtime/runtime';
import { APP_CONFIG } from '../runtime/tokens';
import { CheckpointError, CheckpointErrorCode } from './checkpoint.errors';
import { CheckpointRepository, type CheckpointRow } from './checkpoint.repository';
import type { CheckpointList } from './dto/checkpoint.dto';
import { LedgerRepository } from './ledger.repository';
import { LedgerService, type VerifyResult } from './ledger.service';

/** A signed checkpoint: the tree size, its RFC 9162 root and the C2SP signed note. */
export interface SignedCheckpoint {
  size: number;
  rootHash: Buffer;
  /** The signed note; the witnesses' cosignature lines, if any, are appended. */
  note: string;
}

/** What `verifyCheckpoints` found; `first_bad_seq` only when something is wrong. */
export interface CheckpointVerification {
  checked: number;
  first_bad_seq?: number;
  reason?: string;
  /** The size of the checkpoint that failed: the bad entry is at or below it. */
  checkpoint_size?: number;
}

const CUT_INTERVAL_MS = 1000;
const VERIFY_PAGE = 5000;
const WITNESS_TIMEOUT_MS = 5000;
const WITNESS_MAX_BACKOFF_MS = 60_000;
/** Most cosignature lines kept from one witness response. */
const MAX_LINES_PER_WITNESS = 8;
/** tlog-witness: "The client MUST NOT send more than 63 consistency proof lines." */
const MAX_PROOF_LINES = 63;
/** tlog-cosignature: key ID (4) || timestamp (8) || Ed25519 signature (64). */
const COSIGNATURE_SIZE = 8 + 64;

interface WitnessState {
  /** Bumped by every new checkpoint, so a run that started earlier does not clear the pending flag. */
  generation: number;
  failures: number;
  dueAt: number;
  running: boolean;
}

/**
 * The checkpointer (DESIGN.md §4). Appends mark a tenant dirty; a 1 s timer
 * cuts a C2SP checkpoint for each dirty tenant, under a per-tenant advisory
 * lock (safe with several service processes). Before signing, the new root is
 * linked to the previous stored checkpoint by a consistency proof from the
 * stored nodes; when that fails (history rewritten or truncated) it refuses to
 * sign, logs an error and reports the refusal, so no two checkpoints exist
 * that no consistency proof links. Signed checkpoints are then submitted to
 * the configured C2SP tlog-witnesses, off the ingest path.
 */
@Injectable()
export class CheckpointService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(CheckpointService.name);
  private readonly keyName: string;
  /** The ledger's C2SP verifier key: `<LEDGER_ORIGIN>+<key id>+<base64(0x01 || public key)>`. */
  readonly verifierKey: string;
  private readonly witnesses: string[];
  private readonly dirty = new Set<string>();
  private readonly refusals = new Map<string, { reason: string; since: Date }>();
  private readonly witnessing = new Map<string, WitnessState>();
  /** The size each witness last cosigned, by `tenant \n url`. */
  private readonly witnessSizes = new Map<string, number>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private readonly cuts: Counter;
  private readonly refused: Counter;
  private readonly cosigned: Counter<'outcome'>;

  constructor(
    private readonly ledger: LedgerService,
    private readonly ledgerRepo: LedgerRepository,
    private readonly repo: CheckpointRepository,
    metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.keyName = config.env.LEDGER_ORIGIN;
    this.verifierKey = formatVerifierKey(this.keyName, config.ledgerKey.publicKey);
    this.witnesses = config.env.WITNESS_URLS.map((u) => u.replace(/\/+$/, ''));
    const registers = [metrics.registry];
    this.cuts = new Counter({ name: 'agent_ledger_checkpoints_signed_total', help: 'Checkpoints signed', registers });
    this.refused = new Counter({
      name: 'agent_ledger_checkpoint_refusals_total',
      help: 'Checkpoints not signed because the stored tree does not extend the previous checkpoint',
      registers,
    });
    this.cosigned = new Counter({
      name: 'agent_ledger_witness_submissions_total',
      help: 'Checkpoint submissions to witnesses by outcome',
      labelNames: ['outcome'] as const,
      registers,
    });
  }

  onModuleInit(): void {
    this.ledger.onAppended((tenant) => this.dirty.add(tenant));
    // entries committed before a restart and never checkpointed are picked up by the first tick
    this.ticking = this.repo
      .tenantsBehind()
      .then((tenants) => tenants.forEach((t) => this.dirty.add(t)))
      .catch((err: unknown) => this.logger.warn({ err }, 'could not list tenants awaiting a checkpoint'))
      .finally(() => (this.ticking = undefined));
    this.timer = setInterval(() => {
      if (!this.ticking) this.ticking = this.tick().finally(() => (this.ticking = undefined));
    }, CUT_INTERVAL_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await this.ticking;
    await Promise.allSettled([...this.inflight]);
  }

  origin(tenant: string): string {
    return `${this.config.env.LEDGER_ORIGIN}/${tenant}`;
  }

  /** The newest signed checkpoint with its cosignatures, or undefined before the first. */
  async latest(tenant: string): Promise<SignedCheckpoint | undefined> {
    const row = await this.repo.latest(tenant);
    return row && this.withCosignatures(tenant, row);
  }

  /**
   * Signs a checkpoint of the current head now (or returns the stored one when
   * the head has not moved); undefined for an empty ledger. Throws a
   * CheckpointError (409 checkpoint_refused) when the stored tree does not
   * extend the previous checkpoint.
   */
  async cutNow(tenant: string): Promise<SignedCheckpoint | undefined> {
    const row = await this.cut(tenant);
    return row && this.withCosignatures(tenant, row);
  }

  /** The served form of the latest checkpoint: `text/plain`, C2SP note with cosignature lines. */
  async latestNote(tenant: string): Promise<string> {
    const cp = await this.latest(tenant);
    if (!cp) throw CheckpointError.none();
    return cp.note;
  }

  async list(tenant: string, fromSize: number, limit: number): Promise<CheckpointList> {
    const rows = await this.repo.page(tenant, fromSize, Number.MAX_SAFE_INTEGER, limit + 1);
    const page = rows.slice(0, limit);
    const cosignatures = await this.repo.cosignatures(tenant, page.map((r) => r.size));
    const refusal = this.refusals.get(tenant);
    return {
      checkpoints: page.map((r) => {
        const cos = cosignatures.get(r.size) ?? [];
        return {
          size: r.size,
          root_hash: toHex(r.rootHash),
          note: appendLines(r.note, cos.map((c) => c.lines)),
          cosigned_by: cos.map((c) => c.witness),
          created_at: r.createdAt.toISOString(),
        };
      }),
      next_from_size: rows.length > limit ? rows[limit].size : null,
      verifier_key: this.verifierKey,
      checkpointer: refusal
        ? { status: 'refusing', reason: refusal.reason, since: refusal.since.toISOString() }
        : { status: 'ok' },
    };
  }

  /**
   * Checks every stored checkpoint against the stored leaves: its signature
   * by the ledger's key, and its root against the root recomputed from the
   * leaf hashes of seqs 1..size (for a range verify, from the stored frontier
   * at from_seq − 1). A checkpoint whose root no longer matches means entries
   * were rewritten after it was signed, even when every hash was recomputed; a
   * checkpoint larger than the ledger means entries were removed after it.
   */
  async verifyCheckpoints(tenant: string, fromSeq: number, toSeq: number): Promise<CheckpointVerification> {
    // the newest checkpoint is read before the head, so that a cut in between cannot look like a truncation
    const latest = await this.repo.latest(tenant);
    const head = await this.repo.ledgerSize(tenant);
    if (!latest) return { checked: 0 };
    const to = Math.min(toSeq, head);
    let frontier: Frontier | undefined;
    let lastGood = fromSeq - 1;
    let checked = 0;
    for (let next = fromSeq; next <= to; ) {
      const page = await this.repo.page(tenant, next, to, 500);
      if (page.length === 0) break;
      for (const cp of page) {
        const badSignature = this.signatureFailure(tenant, cp);
        if (badSignature) return { checked, first_bad_seq: cp.size, reason: badSignature, checkpoint_size: cp.size };
        frontier ??= await this.frontierAt(tenant, fromSeq - 1);
        const missing = await this.advance(tenant, frontier, cp.size);
        if (missing !== undefined) return { checked, first_bad_seq: missing, reason: `entry ${missing} is missing` };
        if (!frontier.root().equals(cp.rootHash)) {
          return {
            checked,
            checkpoint_size: cp.size,
            first_bad_seq: lastGood + 1,
            reason:
              `the checkpoint of size ${cp.size} signed at ${cp.createdAt.toISOString()} does not match the stored entries: ` +
              `an entry in ${lastGood + 1}..${cp.size} was changed after it was signed`,
          };
        }
        lastGood = cp.size;
        checked++;
      }
      next = page[page.length - 1].size + 1;
    }
    if (latest.size > head) {
      const badSignature = this.signatureFailure(tenant, latest);
      return {
        checked,
        checkpoint_size: latest.size,
        first_bad_seq: head + 1,
        reason:
          badSignature ??
          `entry ${head + 1} is missing: the checkpoint of size ${latest.size} signed at ${latest.createdAt.toISOString()} ` +
            `covers entries up to ${latest.size}, the ledger ends at ${head}`,
      };
    }
    return { checked };
  }

  /**
   * Adds the checkpoint checks to a ledger verification. The ledger's own
   * finding names the exact entry, so it stands unless a checkpoint below it
   * already fails (the bad entry is then before the one the ledger found).
   */
  async withCheckpointChecks(tenant: string, result: VerifyResult): Promise<VerifyResult> {
    const cp = await this.verifyCheckpoints(tenant, result.from_seq, result.to_seq);
    if (cp.first_bad_seq === undefined) return result;
    const ledgerBad = result.first_bad_seq;
    if (ledgerBad !== undefined && (cp.checkpoint_size === undefined || cp.checkpoint_size >= ledgerBad)) return result;
    return {
      ...result,
      ok: false,
      verified: Math.min(result.verified, Math.max(0, cp.first_bad_seq - result.from_seq)),
      first_bad_seq: cp.first_bad_seq,
      reason: cp.reason,
    };
  }

  // --- cutting ------------------------------------------------------------------

  private async tick(): Promise<void> {
    const tenants = [...this.dirty];
    this.dirty.clear();
    for (const tenant of tenants) {
      if (this.stopping.signal.aborted) return;
      try {
        await this.cut(tenant);
      } catch (err) {
        // a refusal stays until the tree is consistent again; anything else is retried on the next tick
        if (!(err instanceof CheckpointError)) {
          this.dirty.add(tenant);
          this.logger.warn({ err, tenant }, 'checkpoint cut failed; retrying');
        }
      }
    }
    const now = Date.now();
    for (const [tenant, state] of this.witnessing) {
      if (!state.running && state.dueAt <= now && !this.stopping.signal.aborted) this.track(this.witness(tenant, state));
    }
  }

  /** Cuts under the tenant's lock: returns the new checkpoint, the unchanged latest one, or undefined when empty. */
  private async cut(tenant: string): Promise<CheckpointRow | undefined> {
    let signed = false;
    try {
      const row = await this.repo.withTenantLock(tenant, async (tx) => {
        const prev = await this.repo.latest(tenant, tx);
        const size = await this.repo.ledgerSize(tenant, tx);
        if (prev && size === prev.size) return prev;
        if (prev && size < prev.size) {
          throw CheckpointError.refused(
            `the ledger has ${size} entries but the checkpoint of size ${prev.size} was signed: entries were removed`,
          );
        }
        if (size === 0) return undefined;
        const refs = prev ? [...frontierRefs(size), ...consistencyProofRefs(prev.size, size)] : frontierRefs(size);
        const nodes = await this.ledgerRepo.nodes(tx, tenant, refs).catch((err: Error) => {
          if (/is missing/.test(err.message)) throw CheckpointError.refused(`the stored tree is incomplete: ${err.message}`);
          throw err;
        });
        const lookup: NodeLookup = (r) => nodes.get(nodeKey(r))!;
        const root = rootFromRefs(size, lookup);
        if (prev) {
          const why = this.linkFailure(tenant, prev, size, root, lookup);
          if (why) throw CheckpointError.refused(why);
        }
        const note = signCheckpoint(
          formatCheckpointBody({ origin: this.origin(tenant), size, rootHash: root }),
          this.keyName,
          this.config.ledgerKey.privateKey,
        );
        const fresh = { size, rootHash: root, note };
        signed = await this.repo.insert(tx, tenant, fresh);
        return signed ? { ...fresh, createdAt: new Date() } : await this.repo.latest(tenant, tx);
      });
      if (this.refusals.delete(tenant)) this.logger.log({ tenant }, 'checkpointer resumed signing');
      if (signed && row) {
        this.cuts.inc();
        if (this.witnesses.length) this.witnessSoon(tenant);
      }
      return row;
    } catch (err) {
      if (err instanceof CheckpointError && err.code === CheckpointErrorCode.Refused) this.refuse(tenant, err.message);
      throw err;
    }
  }

  /** Why the tree of `size` with `root` does not extend `prev`, or undefined when a consistency proof links them. */
  private linkFailure(tenant: string, prev: CheckpointRow, size: number, root: Buffer, lookup: NodeLookup): string | undefined {
    const badSignature = this.signatureFailure(tenant, prev);
    if (badSignature) return badSignature;
    const proof = assembleConsistencyProof(prev.size, size, lookup);
    if (!verifyConsistency(prev.size, size, proof, prev.rootHash, root)) {
      return (
        `the stored tree of ${size} entries does not extend the checkpoint of size ${prev.size} ` +
        `(the consistency proof does not verify): entries up to ${prev.size} were rewritten after it was signed`
      );
    }
    return undefined;
  }

  /** Why a stored checkpoint is not what this ledger signed, or undefined. */
  private signatureFailure(tenant: string, cp: CheckpointRow): string | undefined {
    try {
      const parsed = verifyCheckpoint(cp.note, this.keyName, this.config.ledgerKey.publicKey, { origin: this.origin(tenant) });
      if (parsed.size !== cp.size || !parsed.rootHash.equals(cp.rootHash)) {
        return `the stored checkpoint of size ${cp.size}: its signed note says size ${parsed.size} and another root`;
      }
      return undefined;
    } catch (err) {
      return `the stored checkpoint of size ${cp.size} is not signed by this ledger's key: ${(err as Error).message}`;
    }
  }

  private refuse(tenant: string, reason: string): void {
    this.refused.inc();
    const prior = this.refusals.get(tenant);
    if (prior?.reason === reason) return;
    this.refusals.set(tenant, { reason, since: prior?.since ?? new Date() });
    this.logger.error({ tenant, reason }, 'checkpointer refuses to sign: the stored tree does not extend the last checkpoint');
  }

  private async withCosignatures(tenant: string, row: CheckpointRow): Promise<SignedCheckpoint> {
    const cos = (await this.repo.cosignatures(tenant, [row.size])).get(row.size) ?? [];
    return { size: row.size, rootHash: row.rootHash, note: appendLines(row.note, cos.map((c) => c.lines)) };
  }

  // --- verification helpers -----------------------------------------------------

  private async frontierAt(tenant: string, size: number): Promise<Frontier> {
    const refs = frontierRefs(size);
    const nodes = await this.ledger.nodes(tenant, refs);
    return new Frontier(size, refs.map((r) => nodes.get(nodeKey(r))!));
  }

  /** Appends stored leaves to `frontier` up to `size`; returns the first missing seq, if any. */
  private async advance(tenant: string, frontier: Frontier, size: number): Promise<number | undefined> {
    while (frontier.size < size) {
      const page = await this.repo.leafPage(tenant, frontier.size, size, VERIFY_PAGE);
      for (const leaf of page) {
        if (leaf.seq !== frontier.size + 1) return frontier.size + 1;
        frontier.append(leaf.leafHash);
      }
      if (page.length === 0) return frontier.size + 1;
    }
    return undefined;
  }

  // --- witnessing ---------------------------------------------------------------

  private witnessSoon(tenant: string): void {
    const state = this.witnessing.get(tenant) ?? { generation: 0, failures: 0, dueAt: 0, running: false };
    state.generation++;
    state.dueAt = 0;
    this.witnessing.set(tenant, state);
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** Submits the latest checkpoint to every witness that has not cosigned it; backs off on failure. */
  private async witness(tenant: string, state: WitnessState): Promise<void> {
    state.running = true;
    const generation = state.generation;
    let ok = true;
    try {
      const cp = await this.repo.latest(tenant);
      if (!cp) return;
      const done = new Set(((await this.repo.cosignatures(tenant, [cp.size])).get(cp.size) ?? []).map((c) => c.witness));
      for (const url of this.witnesses) {
        if (done.has(url) || this.stopping.signal.aborted) continue;
        try {
          await this.submit(tenant, url, cp);
          this.cosigned.inc({ outcome: 'cosigned' });
        } catch (err) {
          ok = false;
          this.cosigned.inc({ outcome: 'failed' });
          if (!this.stopping.signal.aborted) {
            this.logger.warn({ tenant, witness: url, size: cp.size, reason: (err as Error).message }, 'witness did not cosign; will retry');
          }
        }
      }
    } catch (err) {
      ok = false;
      this.logger.warn({ err, tenant }, 'witnessing failed; will retry');
    } finally {
      state.running = false;
      if (ok && state.generation === generation) this.witnessing.delete(tenant);
      else if (!ok) {
        state.failures++;
        state.dueAt = Date.now() + Math.min(WITNESS_MAX_BACKOFF_MS, CUT_INTERVAL_MS * 2 ** Math.min(state.failures - 1, 16));
      }
    }
  }

  /**
   * One C2SP tlog-witness `add-checkpoint` exchange: `old <size>`, the
   * consistency proof from the witness's last size, a blank line, the signed
   * checkpoint. A 409 with `text/x.tlog.size` names the witness's size: the
   * request is repeated once from there. The returned cosignature lines are
   * stored with the checkpoint.
   */
  private async submit(tenant: string, url: string, cp: CheckpointRow): Promise<void> {
    const key = `${tenant}\n${url}`;
    let old = this.witnessSizes.get(key) ?? (await this.repo.lastCosignedSize(tenant, url));
    for (let attempt = 0; attempt < 2; attempt++) {
      if (old > cp.size) throw new Error(`the witness has cosigned size ${old}, above this checkpoint's ${cp.size}`);
      const proof = old === 0 ? [] : await this.consistencyProof(tenant, old, cp.size);
      if (proof.length > MAX_PROOF_LINES) throw new Error(`the consistency proof has ${proof.length} hashes, above ${MAX_PROOF_LINES}`);
      const body = `old ${old}\n${proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${cp.note}`;
      const res = await fetch(`${url}/add-checkpoint`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        body,
        redirect: 'error',
        signal: AbortSignal.any([this.stopping.signal, AbortSignal.timeout(WITNESS_TIMEOUT_MS)]),
      });
      const text = await res.text();
      if (res.status === 409 && /^text\/x\.tlog\.size\b/.test(res.headers.get('content-type') ?? '') && /^(0|[1-9][0-9]*)\n$/.test(text)) {
        const theirs = Number(text.trim());
        if (theirs === old) throw new Error(`the witness refused old size ${old} (409) and names the same size`);
        old = theirs;
        continue;
      }
      if (res.status !== 200) throw new Error(`add-checkpoint answered ${res.status}: ${text.slice(0, 200)}`);
      const lines = cosignatureLines(cp.note, text);
      await this.repo.insertCosignature(tenant, cp.size, url, lines);
      this.witnessSizes.set(key, cp.size);
      return;
    }
    throw new Error('the witness keeps answering 409');
  }

  private async consistencyProof(tenant: string, from: number, to: number): Promise<Buffer[]> {
    const nodes = await this.ledger.nodes(tenant, consistencyProofRefs(from, to));
    return assembleConsistencyProof(from, to, (r) => nodes.get(nodeKey(r))!);
  }
}

/**
 * The witness's response body checked as note signature lines of the
 * cosignature/v1 shape (key ID, 8-byte timestamp, 64-byte signature); at most
 * MAX_LINES_PER_WITNESS of them. Their signatures are checked by clients with
 * the witness keys they trust (we hold none: lines from unknown keys are
 * ignored by a note verifier).
 */
function cosignatureLines(note: string, body: string): string {
  if (!body.endsWith('\n')) throw new Error('the witness response does not end with a newline');
  const count = body.slice(0, -1).split('\n').length;
  if (count > MAX_LINES_PER_WITNESS) throw new Error(`the witness returned ${count} signature lines`);
  const parsed = parseNote(note + body);
  for (const sig of parsed.signatures.slice(-count)) {
    if (sig.signature.length !== COSIGNATURE_SIZE) throw new Error(`the witness's line for ${sig.name} is not a cosignature/v1`);
  }
  return body;
}

/** The note with signature lines appended, never more than a note verifier accepts. */
function appendLines(note: string, blocks: string[]): string {
  let out = note;
  let count = parseNote(note).signatures.length;
  for (const block of blocks) {
    const n = block.slice(0, -1).split('\n').length;
    if (count + n > MAX_NOTE_SIGNATURES) break;
    out += block;
    count += n;
  }
  return out;
}
