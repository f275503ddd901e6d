import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { LedgerEventForPolicy } from '../core/policy';
import type { ViolationRecord } from './violation-sink';
import { tenantsPastCursorSql } from '../ledger/tenants-behind';

/** Entries the service writes itself; never matched by rules, never replayed. */
const NOT_SERVICE = `e.type NOT LIKE 'ledger.%' AND e.type NOT LIKE 'policy.%'`;

export interface CursorRow {
  seq: number;
  policySetHash: string;
}

/** One page of the evaluator's walk: every entry after the cursor, service entries without a body read. */
export interface PageRow {
  seq: number;
  /** False for the service's own entries. */
  producer: boolean;
  /** Null for the service's own entries and for events no rule's type filter accepts. */
  event: LedgerEventForPolicy | null;
}

export interface ViolationRow {
  tenant_id: string;
  id: string;
  rule_id: string;
  severity: string;
  kind: string;
  policy_set_hash: string;
  seq: string;
  related_seqs: string[];
  trace_id: string;
  session_id: string | null;
  agent: string | null;
  message: string;
  retro: boolean;
  status: 'open' | 'acknowledged';
  ack_note: string | null;
  ack_by: string | null;
  ack_at: Date | null;
  ack_seq: string | null;
  ledger_seq: string;
  created_at: Date;
}

export interface ViolationFilter {
  rule?: string;
  severity?: string;
  agent?: string;
  trace_id?: string;
  status?: string;
  from?: string;
  to?: string;
  /** Keyset: only violations with a lower ledger seq (the list is newest first). */
  beforeLedgerSeq?: number;
  limit: number;
}

function toEvent(seq: string | number, body: string): LedgerEventForPolicy {
  return { ...(JSON.parse(body) as Omit<LedgerEventForPolicy, 'seq'>), seq: Number(seq) };
}

/**
 * Owns policy_cursors and violations. Reads ledger_entries and ledger_bodies
 * (never writes them: the ledger module appends the violation entries, and
 * the writes here run inside its transaction via `appendServiceEvents`).
 */
@Injectable()
export class PolicyRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  get dataSource(): DataSource {
    return this.ds;
  }

  // ---- cursor ---------------------------------------------------------------

  async cursor(tenant: string): Promise<CursorRow> {
    await this.ds.query(`INSERT INTO policy_cursors (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING`, [tenant]);
    const rows: { seq: string; policy_set_hash: string }[] = await this.ds.query(
      `SELECT seq, policy_set_hash FROM policy_cursors WHERE tenant_id = $1`,
      [tenant],
    );
    return { seq: Number(rows[0].seq), policySetHash: rows[0].policy_set_hash };
  }

  /**
   * Moves the cursor from `from` to `to` (and records the set hash); throws
   * when someone else moved it first, which rolls back the caller's
   * transaction: that is what keeps each violation exactly once.
   */
  async advance(q: Pick<EntityManager, 'query'>, tenant: string, from: number, to: number, setHash?: string): Promise<void> {
    const res: unknown = await q.query(
      `UPDATE policy_cursors SET seq = $3, policy_set_hash = COALESCE($4, policy_set_hash), updated_at = now()
       WHERE tenant_id = $1 AND seq = $2 RETURNING seq`,
      [tenant, from, to, setHash ?? null],
    );
    const rows = Array.isArray(res) && Array.isArray(res[0]) ? (res[0] as unknown[]) : (res as unknown[]);
    if (!rows.length) throw new Error(`policy cursor of tenant ${tenant} moved away from ${from}`);
  }

  /**
   * A cursor advance over entries that raised nothing, committed without
   * waiting for the WAL flush: if a crash loses it, those entries are simply
   * evaluated again (raising nothing again). Any later synchronous commit
   * (a violation transaction) flushes it first, so the order holds.
   */
  async advanceOnly(tenant: string, from: number, to: number): Promise<void> {
    await this.ds.transaction(async (tx) => {
      await tx.query(`SET LOCAL synchronous_commit TO off`);
      await this.advance(tx, tenant, from, to);
    });
  }

  /** Tenants the evaluator has seen (a reload announces the new set to each). */
  async knownTenants(): Promise<string[]> {
    const rows: { tenant_id: string }[] = await this.ds.query(`SELECT tenant_id FROM policy_cursors`);
    return rows.map((r) => r.tenant_id);
  }

  /** Tenants with ledger entries past their cursor (skip scan over the ledger's primary key). */
  async tenantsBehind(): Promise<string[]> {
    const rows: { tenant_id: string }[] = await this.ds.query(tenantsPastCursorSql('policy_cursors'));
    return rows.map((r) => r.tenant_id);
  }

  // ---- the ledger, read only -------------------------------------------------

  /**
   * Entries after `afterSeq` up to `toSeq`, by primary key, then the bodies
   * of those that can matter: producer events of a type in `types` (all
   * producer events when null). An event no matcher's type filter accepts
   * changes no rule state, so its body is never read.
   */
  async page(tenant: string, afterSeq: number, toSeq: number, limit: number, types: readonly string[] | null): Promise<PageRow[]> {
    const rows: { seq: string; type: string }[] = await this.ds.query(
      `SELECT e.seq, e.type FROM ledger_entries e
       WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4`,
      [tenant, afterSeq, toSeq, limit],
    );
    const wanted = types === null ? undefined : new Set(types);
    const producer = (type: string) => !/^(ledger|policy)\./.test(type);
    const relevant = rows.filter((r) => producer(r.type) && (wanted === undefined || wanted.has(r.type))).map((r) => Number(r.seq));
    const bodies = new Map<number, string>();
    if (relevant.length) {
      const found: { seq: string; body: string }[] = await this.ds.query(
        `SELECT seq, body FROM ledger_bodies WHERE tenant_id = $1 AND seq = ANY($2::bigint[])`,
        [tenant, relevant],
      );
      for (const b of found) bodies.set(Number(b.seq), b.body);
    }
    // A producer entry without a body (not possible today: no erasure path) is evaluated as absent.
    return rows.map((r) => {
      const seq = Number(r.seq);
      const body = bodies.get(seq);
      return { seq, producer: producer(r.type), event: body === undefined ? null : toEvent(seq, body) };
    });
  }

  /** Which of these trace or session ids have producer events at or below `maxSeq` (index ledger_entries_trace / _session). */
  async scopesWithEventsUpTo(
    tenant: string,
    column: 'trace_id' | 'session_id',
    ids: string[],
    maxSeq: number,
    types: readonly string[] | null,
  ): Promise<Set<string>> {
    if (!ids.length || maxSeq <= 0) return new Set();
    const rows: { id: string }[] = await this.ds.query(
      `SELECT DISTINCT e.${column} AS id FROM ledger_entries e
       WHERE e.tenant_id = $1 AND e.${column} = ANY($2::text[]) AND e.seq <= $3 AND ${NOT_SERVICE}
         AND ($4::text[] IS NULL OR e.type = ANY($4::text[]))`,
      [tenant, ids, maxSeq, types],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** A trace's or session's producer events with seq <= maxSeq (of `types` when given), in ledger order (for replay and reports). */
  async scopeEvents(
    tenant: string,
    column: 'trace_id' | 'session_id',
    id: string,
    maxSeq: number,
    types: readonly string[] | null = null,
  ): Promise<LedgerEventForPolicy[]> {
    const rows: { seq: string; body: string }[] = await this.ds.query(
      `SELECT e.seq, b.body FROM ledger_entries e JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE e.tenant_id = $1 AND e.${column} = $2 AND e.seq <= $3 AND ${NOT_SERVICE}
         AND ($4::text[] IS NULL OR e.type = ANY($4::text[]))
       ORDER BY e.seq`,
      [tenant, id, maxSeq, types],
    );
    return rows.map((r) => toEvent(r.seq, r.body));
  }

  /** Producer events with these types (all when null) whose event time is in [from, to), in ledger order (index ledger_entries_time). */
  async eventsByTime(tenant: string, types: string[] | null, from: string | null, to: string | null, limit: number): Promise<LedgerEventForPolicy[]> {
    const rows: { seq: string; body: string }[] = await this.ds.query(
      `SELECT e.seq, b.body FROM ledger_entries e JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE e.tenant_id = $1 AND ($2::text[] IS NULL OR e.type = ANY($2::text[]))
         AND ($3::timestamptz IS NULL OR e.event_time >= $3) AND ($4::timestamptz IS NULL OR e.event_time < $4)
         AND ${NOT_SERVICE}
       ORDER BY e.seq LIMIT $5`,
      [tenant, types, from, to, limit],
    );
    return rows.map((r) => toEvent(r.seq, r.body));
  }

  /** The seq range of entries received in [from, to) (index ledger_entries_received). */
  async seqRangeByTime(tenant: string, from: string | null, to: string | null): Promise<{ min: number; max: number } | undefined> {
    const rows: { min: string | null; max: string | null }[] = await this.ds.query(
      `SELECT min(seq) AS min, max(seq) AS max FROM ledger_entries
       WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR received_at >= $2) AND ($3::timestamptz IS NULL OR received_at < $3)`,
      [tenant, from, to],
    );
    const r = rows[0];
    return r?.min == null || r.max == null ? undefined : { min: Number(r.min), max: Number(r.max) };
  }

  // ---- violations ------------------------------------------------------------

  /** Inside the transaction that appends their ledger entries. */
  async insertViolations(tx: EntityManager, records: ViolationRecord[]): Promise<void> {
    if (!records.length) return;
    const col = <K extends keyof ViolationRecord>(k: K) => records.map((r) => r[k]);
    await tx.query(
      `INSERT INTO violations (tenant_id, id, rule_id, severity, kind, policy_set_hash, seq, related_seqs, trace_id,
                               session_id, agent, message, retro, ledger_seq, created_at)
       SELECT v.tenant_id, v.id, v.rule_id, v.severity, v.kind, v.policy_set_hash, v.seq,
              ARRAY(SELECT jsonb_array_elements_text(v.related::jsonb)::bigint), v.trace_id, v.session_id, v.agent,
              v.message, v.retro, v.ledger_seq, v.created_at
       FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
                   $9::text[], $10::text[], $11::text[], $12::text[], $13::boolean[], $14::bigint[], $15::timestamptz[])
         AS v(tenant_id, id, rule_id, severity, kind, policy_set_hash, seq, related, trace_id, session_id, agent,
              message, retro, ledger_seq, created_at)`,
      [
        col('tenant'), col('id'), col('rule_id'), col('severity'), col('kind'), col('policy_set_hash'), col('seq'),
        records.map((r) => JSON.stringify(r.related_seqs)), col('trace_id'), col('session_id'), col('agent'),
        col('message'), col('retro'), col('ledger_seq'), col('created_at'),
      ],
    );
  }

  /** Offending seqs (by rule) that already have a violation, live or retro. */
  async existingViolationKeys(tenant: string, seqs: number[]): Promise<Set<string>> {
    if (!seqs.length) return new Set();
    const rows: { rule_id: string; seq: string }[] = await this.ds.query(
      `SELECT rule_id, seq FROM violations WHERE tenant_id = $1 AND seq = ANY($2::bigint[])`,
      [tenant, seqs],
    );
    return new Set(rows.map((r) => `${r.rule_id}@${r.seq}`));
  }

  async findViolation(tenant: string, id: string): Promise<ViolationRow | undefined> {
    const rows: ViolationRow[] = await this.ds.query(`SELECT * FROM violations WHERE tenant_id = $1 AND id = $2`, [tenant, id]);
    return rows[0];
  }

  /** Inside the transaction of the `policy.violation_acknowledged` entry; false if it was acknowledged meanwhile. */
  async acknowledge(tx: EntityManager, tenant: string, id: string, note: string, by: string, ackSeq: number): Promise<boolean> {
    const res: unknown = await tx.query(
      `UPDATE violations SET status = 'acknowledged', ack_note = $3, ack_by = $4, ack_at = now(), ack_seq = $5
       WHERE tenant_id = $1 AND id = $2 AND status = 'open' RETURNING id`,
      [tenant, id, note, by, ackSeq],
    );
    const rows = Array.isArray(res) && Array.isArray(res[0]) ? (res[0] as unknown[]) : (res as unknown[]);
    return rows.length > 0;
  }

  /** Newest first by ledger seq (indexes violations_ledger_seq, _status, _agent, _trace). */
  list(tenant: string, f: ViolationFilter): Promise<ViolationRow[]> {
    const where = ['tenant_id = $1'];
    const params: unknown[] = [tenant];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (f.rule !== undefined) add('rule_id = ?', f.rule);
    if (f.severity !== undefined) add('severity = ?', f.severity);
    if (f.agent !== undefined) add('agent = ?', f.agent);
    if (f.trace_id !== undefined) add('trace_id = ?', f.trace_id);
    if (f.status !== undefined) add('status = ?', f.status);
    if (f.from !== undefined) add('created_at >= ?', f.from);
    if (f.to !== undefined) add('created_at < ?', f.to);
    if (f.beforeLedgerSeq !== undefined) add('ledger_seq < ?', f.beforeLedgerSeq);
    params.push(f.limit);
    return this.ds.query(
      `SELECT * FROM violations WHERE ${where.join(' AND ')} ORDER BY ledger_seq DESC LIMIT $${params.length}`,
      params,
    );
  }

  /** A dedicated session, for the evaluation lock (session advisory locks live as long as it does). */
  async session(): Promise<QueryRunner> {
    const runner = this.ds.createQueryRunner();
    await runner.connect();
    return runner;
  }
}
