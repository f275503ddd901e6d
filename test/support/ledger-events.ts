import { waitFor } from './async';
import type { TraceEvent } from '../../src/core/event';
import type { LedgerRecord } from '../../src/core/record';
import { asSuperuser, type TestDatabase } from './db';

/** A stored entry with its record and its event body, in seq order. */
export interface StoredEvent {
  seq: number;
  record: LedgerRecord;
  event: TraceEvent;
}

/** A tenant's ledger as stored (records and bodies), read as the superuser. */
export async function storedEvents(db: TestDatabase, tenant: string): Promise<StoredEvent[]> {
  return asSuperuser(db, async (c) => {
    const rows = (
      await c.query<{ seq: number; record: string; body: string }>(
        `SELECT e.seq::int AS seq, e.record, b.body FROM ledger_entries e
         JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
         WHERE e.tenant_id = $1 ORDER BY e.seq`,
        [tenant],
      )
    ).rows;
    return rows.map((r) => ({ seq: r.seq, record: JSON.parse(r.record) as LedgerRecord, event: JSON.parse(r.body) as TraceEvent }));
  });
}

/** Waits until `check` returns a value (not undefined), polling; fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 5000, what = 'condition'): Promise<T> {
  let v: T | undefined;
  await waitFor(async () => (v = await check()) !== undefined, what, ms, 50);
  return v!;
}
