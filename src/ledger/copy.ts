import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/**
 * COPY ... FROM STDIN in PostgreSQL's text format: the fastest way to load
 * rows (the ingest benchmark's baseline is exactly this). Lines are built by
 * `copyLine` (null is \N, bytea is \\x<hex>) and streamed by `copyLines`.
 */
export type CopyValue = string | number | null | Buffer;

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const SPECIAL = /[\\\t\n\r]/g;

function escape(v: CopyValue): string {
  if (v === null) return '\\N';
  if (typeof v === 'number') return String(v);
  if (Buffer.isBuffer(v)) return `\\\\x${v.toString('hex')}`;
  // JSON text never holds raw control characters, only backslashes; names and ids may hold anything but NUL.
  return v.includes('\\') || v.includes('\t') || v.includes('\n') || v.includes('\r') ? v.replace(SPECIAL, (c) => ESCAPES[c]) : v;
}

/** One row in COPY text format, newline-terminated. */
export function copyLine(values: readonly CopyValue[]): string {
  let line = escape(values[0]);
  for (let i = 1; i < values.length; i++) line += '\t' + escape(values[i]);
  return line + '\n';
}

const UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };
const ESCAPED = /\\([\\tnr])/g;

/**
 * The fields of a line built by `copyLine`, as PostgreSQL's text input of
 * each column expects them (null for \N; a bytea is `\x<hex>`): the inverse
 * of `copyLine` for the escapes it writes.
 */
export function copyFields(line: string): (string | null)[] {
  // a field's own tabs and newlines are escaped: every raw tab separates fields, the raw newline ends the line
  return line
    .slice(0, -1)
    .split('\t')
    .map((f) => (f === '\\N' ? null : f.includes('\\') ? f.replace(ESCAPED, (_, c: string) => UNESCAPES[c]) : f));
}

/** Rows of `copyLine` text turned into one array per column (for `unnest`). */
export function copyColumns(lines: readonly string[], width: number): (string | null)[][] {
  const cols: (string | null)[][] = Array.from({ length: width }, () => []);
  for (const line of lines) {
    const fields = copyFields(line);
    if (fields.length !== width) throw new Error(`a COPY line has ${fields.length} fields, not ${width}`);
    for (let i = 0; i < width; i++) cols[i].push(fields[i]);
  }
  return cols;
}

const PAYLOAD_CHUNK = 1 << 20;

/**
 * The COPY data of `lines` as UTF-8, each line encoded straight into the
 * buffer (joining them into one string first would copy every byte once more).
 */
export function copyPayload(lines: readonly string[]): Buffer[] {
  const parts: Buffer[] = [];
  let buf = Buffer.allocUnsafe(0);
  let at = 0;
  for (const line of lines) {
    // a UTF-16 unit is at most 3 UTF-8 bytes
    if (at + line.length * 3 > buf.length) {
      if (at) parts.push(buf.subarray(0, at));
      buf = Buffer.allocUnsafe(Math.max(PAYLOAD_CHUNK, line.length * 3));
      at = 0;
    }
    at += buf.write(line, at, 'utf8');
  }
  if (at) parts.push(buf.subarray(0, at));
  return parts;
}

/** COPY ... FROM STDIN of a `copyPayload`; nothing when it is empty. */
export async function copyLines(client: PoolClient, table: string, columns: readonly string[], payload: readonly Buffer[]): Promise<void> {
  if (!payload.length) return;
  await pipeline(Readable.from(payload), client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN`)));
}
