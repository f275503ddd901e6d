import { open } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { BundleVerification, type BundleHead, type BundleResult, type VerifyBundleOptions } from './bundle-verifier';
import { JsonScanError, TopLevelScanner, type MemberMode, type ScanEvent } from './json-members';

/**
 * Verifies an evidence bundle file as it is read, in bounded memory, with
 * the same checks as `verifyBundle` (BundleVerification): what `agent-ledger
 * verify` runs. Any JSON serialisation of the bundle is read (whitespace,
 * line breaks, member order); each entry is parsed on its own.
 *
 * Entries are checked against the checkpoint, manifest, batches, producer
 * keys and signature. When those come before `entries` in the file, one pass
 * does it all. The service writes them after the entries (the manifest's
 * count and the batches are known only at the end of its stream, see
 * docs/evidence-bundle.md), so then a first pass reads everything but the
 * entries, noting where each entry lies, and a second pass reads the entries
 * alone from there (without scanning them again).
 *
 * Memory: one chunk, the entries of one chunk, the batches' JWSs (as bytes;
 * each holds its batch's digest list: about 62 bytes per exported entry),
 * the entries' byte ranges (16 bytes per entry) when there is a second pass,
 * 32 verified digest lists, the distinct trace ids (for the summary) and the
 * last verified Merkle path.
 */

const HEAD_MEMBERS = ['format', 'checkpoint', 'batches', 'producer_keys', 'manifest', 'signature'] as const;
const CHUNK = 1 << 20;

/** The file is not a complete, well-formed JSON document: nothing can be said about the bundle. */
export class BundleFileError extends Error {}

export interface BundleFileResult extends BundleResult {
  /** 1 when the head came before the entries, 2 when the entries were read in a second pass. */
  passes: 1 | 2;
}

/** The ledger key, or a function choosing it from the bundle's `signature` (the JWS names the kid). */
export type LedgerKeySource = KeyObject | JWK | ((signature: unknown) => KeyObject | JWK);

export async function verifyBundleFile(path: string, ledgerKey: LedgerKeySource, options: VerifyBundleOptions = {}): Promise<BundleFileResult> {
  const head: Record<string, unknown> = {};
  const seen = new Set<string>();
  /** Whether the file has `entries`, and an array (set by the read callbacks). */
  const found: { entries: 'none' | 'array' | 'not-array' } = { entries: 'none' };
  let v: BundleVerification | undefined;
  let singlePass = false;

  const keyFor = (signature: unknown) => (typeof ledgerKey === 'function' ? ledgerKey(signature) : ledgerKey);
  /** Shapes the head and starts the verification; false when it cannot go on. */
  const startVerification = async (tailLater: boolean): Promise<boolean> => {
    v = new BundleVerification(keyFor(head.signature), options);
    const h = v.shapeHead(head, { entries: false, tailLater });
    const ok = h !== undefined && (await v.start(h as BundleHead));
    if (ok) head.batches = undefined; // the verification keeps them (off V8's heap)
    return ok;
  };

  // Pass 1: everything, the entries too if the head came first (else only where each one lies).
  let started = false;
  const bounds = new Offsets();
  await readEvents(
    path,
    (key) => {
      if (seen.has(key)) throw new BundleFileError(`the member "${key}" appears twice`);
      seen.add(key);
      if (key !== 'entries') return 'elements';
      singlePass = HEAD_MEMBERS.every((k) => seen.has(k));
      return singlePass ? 'elements' : 'bounds';
    },
    async (ev) => {
      switch (ev.kind) {
        case 'array':
          if (ev.key === 'entries') {
            found.entries = 'array';
            started = await startVerification(true);
          } else head[ev.key] = [];
          return;
        case 'element':
          if (ev.key === 'entries') {
            if (!started || v!.done) return;
            const pending = v!.entry(parseJson(ev.text, `entries[${ev.index}]`, ev.offset));
            if (pending) await pending;
          } else (head[ev.key] as unknown[]).push(parseJson(ev.text, `${ev.key}[${ev.index}]`, ev.offset));
          return;
        case 'value':
          if (ev.key === 'entries') found.entries = 'not-array';
          else head[ev.key] = parseJson(ev.text, ev.key, ev.offset);
          return;
        case 'bounds':
          bounds.push(ev.start, ev.end);
          return;
        case 'skipped':
          if (ev.key === 'entries') found.entries = ev.array ? 'array' : 'not-array';
          return;
        default:
          return;
      }
    },
  );
  if (singlePass) {
    if (found.entries !== 'array' || !v) return fileResult(formatOnly(keyFor(head.signature), options, head, 'entries must be an array'), 1);
    const tail = { contents_digest: head.contents_digest as string | undefined, signature: head.signature as string | undefined };
    return fileResult(await v.finish(tail), 1);
  }
  if (found.entries !== 'array') return fileResult(formatOnly(keyFor(head.signature), options, head, 'entries must be an array'), 1);
  if (!(await startVerification(false))) return fileResult(v!.result(), 1);

  // Pass 2: the entries alone, read where pass 1 found them (no second scan).
  const verification = v!;
  const file = await open(path, 'r');
  try {
    let buf = Buffer.alloc(0);
    let bufStart = 0;
    for (let i = 0; i < bounds.length && !verification.done; i++) {
      const start = bounds.start(i);
      const end = bounds.end(i);
      if (end > bufStart + buf.length) {
        buf = Buffer.allocUnsafe(Math.max(CHUNK, end - start));
        const { bytesRead } = await file.read(buf, 0, buf.length, start);
        if (bytesRead < end - start) throw new BundleFileError(`the file changed between the two passes (entries[${i}] at byte ${start})`);
        buf = buf.subarray(0, bytesRead);
        bufStart = start;
      }
      const pending = verification.entry(parseJson(buf.toString('utf8', start - bufStart, end - bufStart), `entries[${i}]`, start));
      if (pending) await pending;
    }
  } finally {
    await file.close();
  }
  return fileResult(await verification.finish(), 2);
}

/** The byte ranges of the entries: 16 bytes each (16 MiB for 1M entries, up to twice that while it grows). */
class Offsets {
  private data = new Float64Array(1024);
  length = 0;

  push(start: number, end: number): void {
    if (this.length * 2 + 2 > this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length * 2] = start;
    this.data[this.length * 2 + 1] = end;
    this.length++;
  }

  start(i: number): number {
    return this.data[2 * i];
  }

  end(i: number): number {
    return this.data[2 * i + 1];
  }
}

function fileResult(r: BundleResult, passes: 1 | 2): BundleFileResult {
  return { ...r, passes };
}

/** A result with the head's format failure when the head itself is well formed, else its own. */
function formatOnly(key: KeyObject | JWK, options: VerifyBundleOptions, head: Record<string, unknown>, why: string): BundleResult {
  const v = new BundleVerification(key, options);
  if (v.shapeHead(head, { entries: false })) v.fail('format', why);
  return v.result();
}

function parseJson(text: string, what: string, offset: number): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BundleFileError(`${what} (at byte ${offset}) is not valid JSON: ${(err as Error).message}`);
  }
}

/** Reads the whole file chunk by chunk through a scanner, handing each event to `onEvent` in order. */
async function readEvents(path: string, modeOf: (key: string) => MemberMode, onEvent: (ev: ScanEvent) => Promise<void>): Promise<void> {
  const scanner = new TopLevelScanner(modeOf);
  const file = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, CHUNK, null);
      const events = bytesRead === 0 ? scanner.end() : scanner.write(chunk.subarray(0, bytesRead));
      for (const ev of events) await onEvent(ev);
      if (bytesRead === 0) return;
    }
  } catch (err) {
    if (err instanceof JsonScanError) throw new BundleFileError(`not a well-formed JSON bundle: ${err.message}`);
    throw err;
  } finally {
    await file.close();
  }
}
