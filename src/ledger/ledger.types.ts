import type { EntityManager } from 'typeorm';
import type { TraceEvent } from '../core/event';

/** An event that passed validation, with its canonical body and digest. */
export interface PreparedEvent {
  event: TraceEvent;
  /** JCS text of the event: the stored body. */
  body: string;
  /** b64u(H(body)). */
  digest: string;
}

export interface Receipt {
  id: string;
  seq: number;
  leaf_hash: string;
  chain_hash: string;
}

/** Extra writes that must commit with the batch (a key row, a violation row…). */
export type InTransaction = (tx: EntityManager, receipts: Receipt[]) => Promise<void>;

/** One signed batch on its way into the ledger. */
export interface AppendBatch {
  tenant: string;
  /** The kid written into the records: the producer's, or "ledger". */
  kid: string;
  jws: string;
  /** b64u(H(jws)). */
  batch: string;
  events: PreparedEvent[];
  /** Producer kids whose revocation must be checked under the ledger lock. */
  checkRevokedKid?: string;
  inTransaction?: InTransaction;
}
