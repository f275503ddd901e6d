import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import type { ExportFilter } from '../core/bundle';

/** An entry as stored: record and body texts. */
export interface ExportRow {
  seq: number;
  record: string;
  /** null when the body was erased. */
  body: string | null;
}

/**
 * An entry of the export's pages, in the form the bundle writes it: record
 * and body as JSON text (PostgreSQL's `to_json` of the stored text, the same
 * bytes JSON.stringify writes; an e2e test checks every line against
 * entryJcs), with the leaf hash and the body digest of the contents digest,
 * all from the same row.
 */
export interface ExportPageRow {
  seq: number;
  /** hex H(0x00 || record), as stored. */
  leaf_hash: string;
  /** The record text as a JSON string literal. */
  record_json: string;
  /** The body text as a JSON string literal, or `null` when the body was erased. */
  body_json: string;
  /** b64u(H(body)) of the stored body bytes; null when erased. */
  body_digest: string | null;
  kid: string;
  batch: string;
}

/**
 * Read-only queries of the export stream over the ledger tables (the ledger
 * module owns and alone writes them). Every query is bounded by the
 * checkpoint's tree size, so it reads the same rows however long the export
 * takes, and pages by seq (keyset), so memory stays constant.
 */
@Injectable()
export class ExportRepository {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  /**
   * The filter as SQL on ledger_entries e. Indexes: ledger_entries_trace
   * (tenant_id, trace_id, seq), ledger_entries_session (tenant_id,
   * session_id, seq), ledger_entries_agent (tenant_id, agent, seq),
   * ledger_entries_time (tenant_id, event_time).
   *
   * `pageable`: for the keyset pages. A time range there is written as an
   * expression (`event_time + interval '0'`) that no index matches, so the
   * pages walk the primary key (tenant_id, seq) in order between the bounds
   * from `bounds()`. Left to itself the planner prefers ledger_entries_time
   * for a time range, then sorts every matching row by seq for each page of
   * 1000: quadratic in the size of the export.
   */
  private where(tenant: string, filter: ExportFilter, maxSeq: number, afterSeq: number, pageable: boolean): { sql: string; params: unknown[] } {
    const params: unknown[] = [tenant, afterSeq, maxSeq];
    const parts = ['e.tenant_id = $1', 'e.seq > $2', 'e.seq <= $3'];
    const add = (column: string, op: string, value: unknown) => {
      params.push(value);
      parts.push(`${column} ${op} $${params.length}`);
    };
    const time = pageable ? "(e.event_time + interval '0')" : 'e.event_time';
    if ('trace_id' in filter) add('e.trace_id', '=', filter.trace_id);
    else if ('session_id' in filter) add('e.session_id', '=', filter.session_id);
    else {
      if (filter.agent !== undefined) add('e.agent', '=', filter.agent);
      if (filter.from !== undefined) add(time, '>=', filter.from);
      if (filter.to !== undefined) add(time, '<', filter.to);
    }
    return { sql: parts.join(' AND '), params };
  }

  /**
   * The first and last seq matching the filter within the tree of `maxSeq`
   * entries, or undefined when none does: one index range (trace, session,
   * agent or event_time) read without sorting.
   */
  async bounds(tenant: string, filter: ExportFilter, maxSeq: number): Promise<{ first: number; last: number } | undefined> {
    const q = this.boundsQuery(tenant, filter, maxSeq);
    const [row]: { first: string | null; last: string | null }[] = await this.ds.query(q.sql, q.params);
    return row.first === null || row.last === null ? undefined : { first: Number(row.first), last: Number(row.last) };
  }

  /**
   * The statement of `bounds()` (public for a test's EXPLAIN). With a time
   * range, the matching seqs are aggregated behind an `OFFSET 0` fence: left
   * to itself PostgreSQL answers max(seq) by walking the primary key backward
   * from the checkpoint's size until an entry falls in the range, which reads
   * all the later entries (990k rows, 0.5 s, for the first 10k entries of a
   * 1M ledger). Fenced, it reads the matching entries by ledger_entries_time
   * (or the agent's index), in proportion to the export.
   */
  boundsQuery(tenant: string, filter: ExportFilter, maxSeq: number): { sql: string; params: unknown[] } {
    const w = this.where(tenant, filter, maxSeq, 0, false);
    const timed = !('trace_id' in filter) && !('session_id' in filter) && (filter.from !== undefined || filter.to !== undefined);
    const sql = timed
      ? `SELECT min(m.seq) AS first, max(m.seq) AS last FROM (SELECT e.seq FROM ledger_entries e WHERE ${w.sql} OFFSET 0) m`
      : `SELECT min(e.seq) AS first, max(e.seq) AS last FROM ledger_entries e WHERE ${w.sql}`;
    return { sql, params: w.params };
  }

  /**
   * One page of matching entries after `afterSeq`, with bodies (absent body =
   * erased), as the bundle writes them. The body digest is SHA-256 of the
   * body's UTF-8 bytes (convert_to), base64url without padding.
   */
  async page(tenant: string, filter: ExportFilter, afterSeq: number, maxSeq: number, limit: number): Promise<ExportPageRow[]> {
    const w = this.where(tenant, filter, maxSeq, afterSeq, true);
    w.params.push(limit);
    const rows: (Omit<ExportPageRow, 'seq'> & { seq: string | number })[] = await this.ds.query(
      `SELECT e.seq, encode(e.leaf_hash, 'hex') AS leaf_hash, to_json(e.record)::text AS record_json,
              coalesce(to_json(b.body)::text, 'null') AS body_json,
              rtrim(translate(encode(sha256(convert_to(b.body, 'UTF8')), 'base64'), '+/', '-_'), '=') AS body_digest,
              e.kid, e.batch
       FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE ${w.sql} ORDER BY e.seq LIMIT $${w.params.length}`,
      w.params,
    );
    for (const r of rows) r.seq = Number(r.seq);
    return rows as ExportPageRow[];
  }

  /** The batch ids of one page of matching entries (the second pass, for the bundle's batches). */
  async batchPage(tenant: string, filter: ExportFilter, afterSeq: number, maxSeq: number, limit: number): Promise<{ seq: number; batch: string }[]> {
    const w = this.where(tenant, filter, maxSeq, afterSeq, true);
    w.params.push(limit);
    const rows: { seq: string; batch: string }[] = await this.ds.query(
      `SELECT e.seq, e.batch FROM ledger_entries e WHERE ${w.sql} ORDER BY e.seq LIMIT $${w.params.length}`,
      w.params,
    );
    return rows.map((r) => ({ seq: Number(r.seq), batch: r.batch }));
  }

  /** Batch JWSs by id (primary key). */
  async batchJws(tenant: string, ids: string[]): Promise<Map<string, string>> {
    if (!ids.length) return new Map();
    const rows: { batch: string; jws: string }[] = await this.ds.query(
      `SELECT batch, jws FROM ledger_batches WHERE tenant_id = $1 AND batch = ANY($2::text[])`,
      [tenant, ids],
    );
    return new Map(rows.map((r) => [r.batch, r.jws]));
  }

  /** Entries by seq (primary key), with bodies. */
  async entriesAt(tenant: string, seqs: number[]): Promise<ExportRow[]> {
    if (!seqs.length) return [];
    const rows: (ExportRow & { seq: string })[] = await this.ds.query(
      `SELECT e.seq, e.record, b.body
       FROM ledger_entries e LEFT JOIN ledger_bodies b ON b.tenant_id = e.tenant_id AND b.seq = e.seq
       WHERE e.tenant_id = $1 AND e.seq = ANY($2::bigint[]) ORDER BY e.seq`,
      [tenant, seqs],
    );
    return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
  }
}
