import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import type { JWK } from 'jose';
import { BUNDLE_FORMAT, BundleWriter, bundleEntry, signManifest, type BundleManifest } from '../../src/core/bundle';
import { event, producerKey } from './factories';
import { MemoryLedger } from './memory-ledger';

/**
 * Writes a valid evidence bundle of `count` entries (one producer, signed
 * batches of 1000 events of 20 traces, about 2 KB an entry) to `path` as the
 * service lays it out, streaming: the entries are written one at a time, only
 * the ledger itself is held (about 1.5 KB an entry). For the streaming
 * verifier's memory test, and from the command line for bigger files:
 *
 *   node dist/test/support/big-bundle.js /tmp/big.json 1000000   # and /tmp/big.json.jwks.json
 */
export async function writeBigBundle(path: string, count: number): Promise<{ ledgerJwk: JWK }> {
  const ledger = await MemoryLedger.create('big');
  const producer = await producerKey('EdDSA');
  await ledger.register(producer, 'big-producer'); // seq 1
  const traces = Array.from({ length: 20 }, (_, i) => (i + 1).toString(16).padStart(32, '0'));
  for (let done = 0; done < count; ) {
    const n = Math.min(1000, count - done);
    const trace = traces[Math.floor(done / 1000) % traces.length];
    const evs = Array.from({ length: n }, (_, i) =>
      event({
        trace_id: trace,
        session_id: `conv-${trace.slice(-8)}`,
        agent: 'big-agent',
        attributes: { args: { order_id: `A-${done + i}`, amount: (done + i) % 400 }, note: 'customer asked about a late delivery and a partial refund' },
      }),
    );
    await ledger.append(evs, producer);
    done += n;
  }
  const size = ledger.entries.length;
  const filter = { agent: 'big-agent' };
  const fd = openSync(path, 'w');
  try {
    let pending = '';
    const write = (s: string) => {
      pending += s;
      if (pending.length > 1 << 20) {
        writeSync(fd, pending);
        pending = '';
      }
    };
    const w = new BundleWriter();
    write(w.start(ledger.checkpoint(size)));
    const used = new Set<string>();
    for (const e of ledger.entries) {
      if (e.parsed.agent !== filter.agent) continue;
      used.add(e.parsed.batch);
      write(w.entry(bundleEntry(e.seq, e.record, e.body, ledger.proof(e.seq, size))));
    }
    const registration = ledger.registrations.get(producer.kid)!;
    const regEntry = ledger.entries[registration.seq - 1];
    used.add(regEntry.parsed.batch);
    for (const [batch, jws] of ledger.batches) if (used.has(batch)) write(w.batch({ batch, jws }));
    write(
      w.producerKey({
        kid: producer.kid,
        alg: registration.alg as 'EdDSA' | 'ES256',
        jwk: registration.jwk as Record<string, unknown>,
        registration: bundleEntry(regEntry.seq, regEntry.record, regEntry.body, ledger.proof(regEntry.seq, size)),
      }),
    );
    const { text, contentsDigest } = w.close();
    write(text);
    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT,
      tenant: ledger.tenant,
      filter,
      exported_by: 'big-bundle',
      exported_at: new Date().toISOString(),
      count: w.count,
      checkpoint_size: size,
    };
    write(w.finish(manifest, await signManifest(manifest, contentsDigest, ledger.ledgerKey.privateKey, ledger.ledgerKey.kid)));
    writeSync(fd, pending);
  } finally {
    closeSync(fd);
  }
  return { ledgerJwk: ledger.ledgerKey.publicJwk };
}

if (require.main === module) {
  const [path, n] = process.argv.slice(2);
  if (!path || !(Number(n) > 0)) {
    process.stderr.write('usage: node dist/test/support/big-bundle.js <bundle.json> <entries>\n');
    process.exit(2);
  }
  writeBigBundle(path, Number(n)).then(
    ({ ledgerJwk }) => {
      writeFileSync(`${path}.jwks.json`, JSON.stringify({ keys: [ledgerJwk] }));
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
