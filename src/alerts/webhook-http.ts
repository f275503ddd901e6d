import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { CheckedUrl } from './webhook-url';

/** What one POST to a receiver gave: a status, or an error before any status. */
export interface PostOutcome {
  status?: number;
  retryAfter?: string;
  /** The first `maxBody` bytes of the response body. */
  body: Buffer;
  latencyMs: number;
  error?: string;
}

/**
 * POSTs `body` to a checked URL, connecting only to the addresses the check
 * approved (the lookup is pinned), without following redirects, within
 * `timeoutMs` for the whole exchange. Never throws.
 */
export function postWebhook(
  target: CheckedUrl,
  headers: Record<string, string>,
  body: string,
  opts: { timeoutMs: number; maxBody: number; signal: AbortSignal },
): Promise<PostOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const pinned = target.addresses.map((a): LookupAddress => ({ address: a.address, family: a.family }));
  const lookup = (_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) => {
    if (options.all) cb(null, pinned);
    else cb(null, pinned[0].address, pinned[0].family);
  };
  return new Promise((resolve) => {
    let settled = false;
    const chunks: Buffer[] = [];
    let size = 0;
    let status: number | undefined;
    let retryAfter: string | undefined;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      resolve({ status, retryAfter, body: Buffer.concat(chunks).subarray(0, opts.maxBody), latencyMs: elapsed(), error });
    };
    const mod = target.url.protocol === 'https:' ? https : http;
    const req = mod.request(target.url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      lookup: lookup as never,
      agent: false,
    });
    const timer = setTimeout(() => {
      finish(`no complete response within ${opts.timeoutMs} ms`);
      req.destroy();
    }, opts.timeoutMs);
    const onAbort = () => {
      finish('aborted: the service is shutting down');
      req.destroy();
    };
    opts.signal.addEventListener('abort', onAbort);
    req.on('error', (err: NodeJS.ErrnoException) => finish(describe(err)));
    req.on('response', (res) => {
      status = res.statusCode;
      const ra = res.headers['retry-after'];
      retryAfter = Array.isArray(ra) ? ra[0] : ra;
      res.on('data', (chunk: Buffer) => {
        if (size < opts.maxBody) chunks.push(chunk);
        size += chunk.length;
        if (size >= opts.maxBody) {
          // enough for the excerpt; the rest of the body is not read
          finish();
          res.destroy();
        }
      });
      res.on('end', () => finish());
      res.on('error', () => finish());
    });
    req.end(body);
  });
}

function describe(err: NodeJS.ErrnoException): string {
  const code = err.code ? `${err.code}: ` : '';
  return `${code}${err.message}`.slice(0, 500);
}
