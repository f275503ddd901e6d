import { Injectable } from '@nestjs/common';
import { BATCH_ALGORITHMS, BATCH_JWS_TYP, compareDigests, readBatchHeader, verifyBatchSignature, type BatchAlgorithm } from '../core/batch';
import { MAX_EVENTS_PER_BATCH } from '../core/event';
import { batchId } from '../core/record';
import { KeysService } from '../keys/keys.service';
import type { PreparedEvent, Receipt } from '../ledger/ledger.types';
import { LedgerService } from '../ledger/ledger.service';
import { MetricsService } from '../metrics/metrics.service';
import { IngestError } from './ingest.errors';
import { prepareEventsYielding } from './prepare';

@Injectable()
export class IngestService {
  constructor(
    private readonly keys: KeysService,
    private readonly ledger: LedgerService,
    private readonly metrics: MetricsService,
  ) {}

  /** Verifies a signed batch and appends it, all or nothing. Resolves after commit. */
  async ingest(tenant: string, events: unknown[], signature: string): Promise<Receipt[]> {
    return this.counted(events.length, async () => {
      if (events.length > MAX_EVENTS_PER_BATCH) throw IngestError.tooManyEvents(events.length, MAX_EVENTS_PER_BATCH);
      return this.verifyAndAppend(tenant, await prepareEventsYielding(events), signature);
    });
  }

  /** `ingest` of a batch whose events an ingest worker prepared already (see IngestWorkers). */
  async ingestPrepared(tenant: string, prepared: PreparedEvent[], signature: string): Promise<Receipt[]> {
    return this.counted(prepared.length, () => this.verifyAndAppend(tenant, prepared, signature));
  }

  private async counted(events: number, work: () => Promise<Receipt[]>): Promise<Receipt[]> {
    try {
      const receipts = await work();
      this.metrics.batchSize.observe(events);
      return receipts;
    } catch (err) {
      this.metrics.refusedBatches.inc({ code: (err as { code?: string }).code ?? 'error' });
      throw err;
    }
  }

  private async verifyAndAppend(tenant: string, prepared: PreparedEvent[], signature: string): Promise<Receipt[]> {
    let header;
    try {
      header = readBatchHeader(signature);
    } catch (err) {
      throw IngestError.malformedJws(`the signature is not a JWS compact serialization: ${(err as Error).message}`);
    }
    if (header.typ !== BATCH_JWS_TYP) throw IngestError.malformedJws(`the JWS header typ must be "${BATCH_JWS_TYP}"`);
    if (!(BATCH_ALGORITHMS as readonly string[]).includes(header.alg)) {
      throw IngestError.algorithmNotAllowed(`alg "${header.alg}" is not allowed; use ${BATCH_ALGORITHMS.join(' or ')}`);
    }
    const key = await this.keys.verificationKey(tenant, header.kid);
    if (!key) throw IngestError.unknownKey(header.kid);
    if (key.revoked) throw IngestError.keyRevoked(header.kid);
    if (key.alg !== header.alg) {
      throw IngestError.algorithmNotAllowed(`key "${header.kid}" is registered for ${key.alg}; the batch says ${header.alg}`);
    }
    let payload: string;
    try {
      payload = await verifyBatchSignature(signature, key.key, header.alg as BatchAlgorithm);
    } catch {
      throw IngestError.badSignature();
    }
    const mismatch = compareDigests(
      payload,
      prepared.map((p) => p.digest),
    );
    if (mismatch) throw IngestError.digestMismatch(mismatch.index, mismatch.reason);

    return this.ledger.append({
      tenant,
      kid: header.kid,
      jws: signature,
      batch: batchId(signature),
      events: prepared,
      checkRevokedKid: header.kid,
    });
  }
}
