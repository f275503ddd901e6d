import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeProtectedHeader, type JWK } from 'jose';
import { BundleFileError, verifyBundleFile } from '../core/bundle-file';
import type { BundleResult } from '../core/bundle-verifier';

/**
 * `agent-ledger verify <bundle.json> --key <jwks.json|URL>`: checks an
 * evidence bundle offline with the pure verifier, reading the file as a
 * stream (bundle-file.ts), so its size is not limited by memory. No
 * database; the network only when the key is given as a URL.
 */
export async function verifyCli(args: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { key: { type: 'string' }, origin: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1 || !values.key) {
    throw new Error('usage: agent-ledger verify <bundle.json> --key <jwks.json|URL> [--origin ORIGIN]');
  }
  return verifyBundleCommand(positionals[0], values.key, { origin: values.origin }, out);
}

export async function verifyBundleCommand(
  file: string,
  keySource: string,
  opts: { origin?: string },
  out: (s: string) => void,
): Promise<number> {
  const keys = await loadKeys(keySource);
  let result: BundleResult;
  try {
    // streamed: bounded memory whatever the bundle's size (two passes over the file when the entries come first)
    result = await verifyBundleFile(file, (signature) => pickKey(keys, signature), { origin: opts.origin });
  } catch (err) {
    if (err instanceof BundleFileError || isFileSystemError(err)) {
      out(`FAILED: ${file} is not a readable JSON file (${(err as Error).message})`);
      return 1;
    }
    throw err;
  }
  for (const line of report(result)) out(line);
  return result.ok ? 0 : 1;
}

function isFileSystemError(err: unknown): boolean {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

export function report(r: BundleResult): string[] {
  const s = r.summary;
  const lines = [
    `tenant:      ${s.tenant}`,
    `entries:     ${s.entries}`,
    `traces:      ${s.traces}`,
    `time span:   ${s.from ?? '-'} .. ${s.to ?? '-'}`,
    `checkpoint:  tree size ${s.checkpointSize}`,
    `filter:      ${s.filter ? JSON.stringify(s.filter) : '-'}`,
    `exported by: ${s.exportedBy ?? '-'} at ${s.exportedAt ?? '-'}`,
  ];
  for (const e of r.erased) lines.push(`entry ${e.entry}: ${e.message}`);
  if (r.ok) lines.push('OK: checkpoint, inclusion proofs, records, producer keys, batch signatures, digests, bodies and the manifest signature verify');
  else {
    lines.push(`FAILED: ${r.failures.length} check${r.failures.length === 1 ? '' : 's'} failed`);
    for (const f of r.failures) lines.push(`  ${f.entry !== undefined ? `entry ${f.entry}` : 'bundle'}: ${f.check}: ${f.message}`);
  }
  return lines;
}

async function loadKeys(source: string): Promise<JWK[]> {
  let doc: unknown;
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source);
    if (!res.ok) throw new Error(`${source} answered ${res.status}`);
    doc = await res.json();
  } else {
    doc = JSON.parse(readFileSync(source, 'utf8'));
  }
  const keys = (doc as { keys?: unknown }).keys;
  if (Array.isArray(keys)) return keys as JWK[];
  if (doc && typeof doc === 'object' && 'kty' in doc) return [doc as JWK];
  throw new Error(`${source} is neither a JWKS ({"keys": [...]}) nor a JWK`);
}

/** The key the bundle's signature names, or the only one. */
function pickKey(keys: JWK[], signature: unknown): JWK {
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(String(signature)).kid;
  } catch {
    kid = undefined;
  }
  const byKid = keys.find((k) => k.kid !== undefined && k.kid === kid);
  if (byKid) return byKid;
  const ed = keys.filter((k) => k.kty === 'OKP' && k.crv === 'Ed25519');
  if (ed.length === 1) return ed[0];
  throw new Error(`no Ed25519 key${typeof kid === 'string' ? ` with kid "${kid}"` : ''} in the given key set`);
}
