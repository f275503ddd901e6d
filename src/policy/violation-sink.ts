import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

/** One recorded policy violation, as handed to sinks inside the violation transaction. */
export interface ViolationRecord {
  id: string;
  tenant: string;
  rule_id: string;
  severity: string;
  kind: string;
  policy_set_hash: string;
  /** Ledger seq of the offending event. */
  seq: number;
  related_seqs: number[];
  trace_id: string | null;
  session_id: string | null;
  agent: string | null;
  message: string;
  /** True when found by retro-evaluation (the set in force then missed it). */
  retro: boolean;
  /** Ledger seq of the `policy.violation` entry. */
  ledger_seq: number;
  created_at: string;
}

export interface ViolationSink {
  /**
   * Called inside the transaction that writes the violation ledger entries, rows and cursor advance.
   * Write with `tx` only (outbox); a throw rolls the whole step back and it is retried later.
   */
  onViolations(tx: EntityManager, violations: ViolationRecord[]): Promise<void>;
}

/** Registry of violation sinks; provided and exported by the global PolicyModule. */
@Injectable()
export class ViolationSinks {
  private readonly sinks: ViolationSink[] = [];

  register(sink: ViolationSink): void {
    this.sinks.push(sink);
  }

  /** Runs every registered sink in registration order, in the caller's transaction. */
  async deliver(tx: EntityManager, violations: ViolationRecord[]): Promise<void> {
    if (violations.length === 0) return;
    for (const sink of this.sinks) await sink.onViolations(tx, violations);
  }
}
