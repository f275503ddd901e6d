import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/**
 * COPY ... FROM STDIN in PostgreSQL's text format: the fastest way to load
 * rows (the ingest benchmark's baseline is exactly this). Values are written
 * by the caller's column order; null is \N; bytea as \\x<hex>.
 */
export type CopyValue = string | number | null | Buffer;

function escape(v: CopyValue): string {
  if (v === null) return '\\N';
  if (typeof v === 'number') return String(v);
  if (Buffer.isBuffer(v)) return `\\\\x${v.toString('hex')}`;
  // JSON text never holds raw control characters, but names and ids may hold anything but NUL.
  return /[\\\t\n\r]/.test(v) ? v.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c]) : v;
}

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export async function copyRows(client: PoolClient, table: string, columns: readonly string[], rows: CopyValue[][]): Promise<void> {
  if (!rows.length) return;
  const text = rows.map((r) => r.map(escape).join('\t')).join('\n') + '\n';
  await pipeline(Readable.from([text]), client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN`)));
}
