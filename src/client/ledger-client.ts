import { randomBytes, randomUUID } from 'node:crypto';
import { signBatch, type BatchAlgorithm, type SigningKey } from '../core/batch';
import type { TraceEvent } from '../core/event';

/**
 * A small HTTP client for the ledger API: builds events, signs batches with a
 * producer key, sends them, and retries 429/5xx and network errors with the
 * same event ids (so a retry is idempotent). No framework imports: the SDK,
 * the CLI, the tests and the benchmark use it.
 */

export interface ProducerKey {
  kid: string;
  alg: BatchAlgorithm;
  privateKey: SigningKey;
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  key?: ProducerKey;
  /** Attempts for retryable failures (default 5). */
  maxAttempts?: number;
  /** First backoff in ms, doubled each attempt, with jitter (default 100). */
  backoffMs?: number;
  fetch?: typeof fetch;
}

export interface Receipt {
  id: string;
  seq: number;
  leaf_hash: string;
  chain_hash: string;
}

export class LedgerApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: { code?: string; detail?: string; errors?: { field: string; message: string }[] } & Record<string, unknown>,
  ) {
    super(`${status} ${problem.code ?? ''}: ${problem.detail ?? 'request failed'}`);
  }
}

export const newTraceId = (): string => randomBytes(16).toString('hex');
export const newSpanId = (): string => randomBytes(8).toString('hex');

export type EventInput = Omit<TraceEvent, 'id' | 'time'> & Partial<Pick<TraceEvent, 'id' | 'time'>>;

/** A complete event with a fresh UUID and the current time unless given. */
export function makeEvent(input: EventInput): TraceEvent {
  return { id: input.id ?? randomUUID(), time: input.time ?? new Date().toISOString(), ...input } as TraceEvent;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LedgerClient {
  private readonly fetch: typeof fetch;

  constructor(private readonly opts: ClientOptions) {
    this.fetch = opts.fetch ?? fetch;
  }

  /** Signs and sends one batch; resolves with one receipt per event, after commit. */
  async send(events: TraceEvent[]): Promise<Receipt[]> {
    const key = this.opts.key;
    if (!key) throw new Error('LedgerClient needs a producer key to send events');
    const signature = await signBatch(events, key.privateKey, key.kid, key.alg);
    const body = await this.request<{ receipts: Receipt[] }>('POST', '/v1/events', { events, signature });
    return body.receipts;
  }

  /** Any API call, with the token, problem+json errors and retries. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const attempts = this.opts.maxAttempts ?? 5;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await this.fetch(new URL(path, this.opts.baseUrl), {
          method,
          headers: {
            authorization: `Bearer ${this.opts.token}`,
            ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: payload,
        });
      } catch (err) {
        if (attempt >= attempts) throw err;
        await sleep(this.backoff(attempt));
        continue;
      }
      const text = await res.text();
      if (res.ok) return (text ? JSON.parse(text) : undefined) as T;
      const retryable = res.status === 429 || res.status >= 500;
      if (!retryable || attempt >= attempts) {
        let problem: Record<string, unknown> = {};
        try {
          problem = JSON.parse(text) as Record<string, unknown>;
        } catch {
          problem = { detail: text.slice(0, 200) };
        }
        throw new LedgerApiError(res.status, problem);
      }
      const retryAfter = Number(res.headers.get('retry-after'));
      await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : this.backoff(attempt));
    }
  }

  private backoff(attempt: number): number {
    const base = (this.opts.backoffMs ?? 100) * 2 ** (attempt - 1);
    return base / 2 + Math.random() * (base / 2);
  }
}
