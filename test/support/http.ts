import assert from 'node:assert/strict';
import { PROBLEM_TYPE_BASE, type ProblemBody } from '../../src/common/problem';

/**
 * Raw HTTP for end-to-end tests that look at statuses, headers and problem
 * bodies (the LedgerClient throws on anything but 2xx).
 */

export interface HttpResult<T = unknown> {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: T;
}

export interface CallOptions {
  token?: string;
  /** Serialised as JSON with content-type application/json. */
  json?: unknown;
  /** Sent as is (with content-type application/json unless `headers` says otherwise). */
  raw?: string | Buffer;
  headers?: Record<string, string>;
}

export async function call<T = unknown>(baseUrl: string, method: string, path: string, opts: CallOptions = {}): Promise<HttpResult<T>> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | Buffer | undefined;
  if (opts.json !== undefined) body = JSON.stringify(opts.json);
  else if (opts.raw !== undefined) body = opts.raw;
  if (body !== undefined) headers['content-type'] = 'application/json';
  Object.assign(headers, opts.headers ?? {});
  const res = await fetch(new URL(path, baseUrl), { method, headers, body });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed as T };
}

/**
 * Asserts an RFC 9457 problem response: status, content type, the standard
 * members, the code (one of `code` when a list is given), and, when given,
 * that `errors[]` names each of `fields`.
 */
export function assertProblem(
  res: HttpResult,
  status: number,
  code: string | readonly string[],
  fields: readonly string[] = [],
): ProblemBody {
  const where = `${res.status} ${res.text.slice(0, 400)}`;
  assert.equal(res.status, status, where);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json\b/, where);
  const p = res.body as ProblemBody;
  assert.ok(p && typeof p === 'object', where);
  const codes = typeof code === 'string' ? [code] : code;
  assert.ok(codes.includes(p.code), `code ${p.code}, expected ${codes.join(' or ')}: ${where}`);
  assert.equal(p.type, PROBLEM_TYPE_BASE + p.code, where);
  assert.equal(p.status, status, where);
  assert.equal(typeof p.title, 'string', where);
  assert.ok(p.title.length > 0, where);
  assert.equal(typeof p.detail, 'string', where);
  assert.ok(p.detail.length > 0, where);
  if (fields.length) {
    assert.ok(Array.isArray(p.errors), `errors[] missing: ${where}`);
    const named = p.errors!.map((e) => e.field);
    for (const f of fields) assert.ok(named.includes(f), `errors[] does not name ${f} (has ${named.join(', ')}): ${where}`);
    for (const e of p.errors!) assert.ok(typeof e.message === 'string' && e.message.length > 0, where);
  }
  return p;
}

export interface Head {
  tree_size: number;
  chain_hash: string;
  root_hash: string;
}

export async function head(baseUrl: string, readerToken: string): Promise<Head> {
  const res = await call<Head>(baseUrl, 'GET', '/v1/ledger/head', { token: readerToken });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

export interface Entry {
  seq: number;
  record: string;
  leaf_hash: string;
  chain_hash: string;
}

/** Every entry of the caller's tenant, following next_from_seq. */
export async function allEntries(baseUrl: string, readerToken: string): Promise<Entry[]> {
  const out: Entry[] = [];
  let from: number | null = 1;
  while (from !== null) {
    const res: HttpResult<{ entries: Entry[]; next_from_seq: number | null }> = await call(
      baseUrl,
      'GET',
      `/v1/ledger/entries?from_seq=${from}&limit=1000`,
      { token: readerToken },
    );
    assert.equal(res.status, 200, res.text);
    out.push(...res.body.entries);
    from = res.body.next_from_seq;
  }
  return out;
}
