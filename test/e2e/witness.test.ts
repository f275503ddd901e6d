import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  cosignCheckpoint,
  NoteError,
  parseCheckpoint,
  parseNote,
  verifyCheckpoint,
  verifyCosignature,
} from '../../src/core/checkpoint';
import { verifyConsistency } from '../../src/core/merkle';
import { CheckpointService } from '../../src/ledger/checkpoint.service';
import { startTestApp, type TestApp } from '../support/app';
import { call } from '../support/http';
import { client, events, producerKey, registerKey, type TestProducer } from '../support/factories';
import { freePort } from '../support/net';

/**
 * Witnessing over real HTTP on loopback: a small C2SP tlog-witness written
 * here from the spec (c2sp.org/tlog-witness) verifies the ledger's signature
 * and the consistency proof from the size it last cosigned, and answers with
 * a tlog-cosignature; the ledger stores the cosignatures and serves them
 * appended to the checkpoint. A failing or unreachable witness never blocks
 * ingest, and is retried.
 */

interface Submission {
  status: number;
  origin: string;
  old: number;
  size: number;
  proofLines: number;
}

/** A C2SP tlog-witness for the ledger's origins, keeping the latest cosigned checkpoint per origin. */
class TestWitness {
  readonly name: string;
  readonly publicKey: KeyObject;
  private readonly privateKey: KeyObject;
  readonly state = new Map<string, { size: number; root: Buffer }>();
  readonly submissions: Submission[] = [];
  /** Answer the next n requests with a 500. */
  failNext = 0;
  /** Cosign the next n checkpoints but answer with a line that is not a cosignature. */
  garbageNext = 0;
  private server?: Server;
  url = '';

  constructor(
    name: string,
    private readonly log: { name: string; key?: KeyObject; originPrefix: string },
  ) {
    this.name = name;
    const pair = generateKeyPairSync('ed25519');
    this.publicKey = pair.publicKey;
    this.privateKey = pair.privateKey;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const [status, type, body, sub] = this.handle(req.method ?? '', req.url ?? '', Buffer.concat(chunks).toString('utf8'));
        if (sub) this.submissions.push({ status, ...sub });
        res.writeHead(status, { 'content-type': type }).end(body);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/w`;
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.server?.close(r));
  }

  private handle(method: string, url: string, body: string): [number, string, string, Omit<Submission, 'status'>?] {
    const text = 'text/plain; charset=utf-8';
    if (method !== 'POST' || url !== '/w/add-checkpoint') return [404, text, 'not found\n'];
    if (this.failNext > 0) {
      this.failNext--;
      return [500, text, 'witness down\n'];
    }
    // old size line, proof lines, blank line, checkpoint
    const blank = body.indexOf('\n\n');
    if (blank < 0) return [400, text, 'no blank line\n'];
    const [oldLine, ...proofLines] = body.slice(0, blank).split('\n');
    const m = /^old (0|[1-9][0-9]*)$/.exec(oldLine ?? '');
    if (!m || proofLines.length > 63) return [400, text, 'bad old size or proof\n'];
    const old = Number(m[1]);
    const proof = proofLines.map((l) => Buffer.from(l, 'base64'));
    const note = body.slice(blank + 2);
    let cp;
    try {
      const origin = parseCheckpoint(parseNote(note).text).origin;
      if (!origin.startsWith(this.log.originPrefix)) return [404, text, 'unknown origin\n'];
      cp = verifyCheckpoint(note, this.log.name, this.log.key!);
    } catch (err) {
      return [err instanceof NoteError && err.code !== 'malformed_note' ? 403 : 400, text, `${(err as Error).message}\n`];
    }
    const sub = { origin: cp.origin, old, size: cp.size, proofLines: proof.length };
    if (old > cp.size) return [400, text, 'old size above checkpoint size\n', sub];
    const latest = this.state.get(cp.origin);
    if (old !== (latest?.size ?? 0)) return [409, 'text/x.tlog.size', `${latest?.size ?? 0}\n`, sub];
    if (old === 0 ? proof.length !== 0 : !verifyConsistency(old, cp.size, proof, latest!.root, cp.rootHash)) {
      return [422, text, 'consistency proof does not verify\n', sub];
    }
    this.state.set(cp.origin, { size: cp.size, root: cp.rootHash });
    if (this.garbageNext > 0) {
      this.garbageNext--;
      return [200, text, `\u2014 ${this.name} ${Buffer.alloc(4 + 64, 7).toString('base64')}\n`, sub];
    }
    const signedBody = parseNote(note).text;
    return [200, text, cosignCheckpoint(signedBody, this.name, this.privateKey, Math.floor(Date.now() / 1000)), sub];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('witness cosignatures (C2SP tlog-witness)', () => {
  let t: TestApp;
  let w1: TestWitness;
  let w2: TestWitness;
  let deadUrl: string;
  const keys: Record<string, TestProducer> = {};
  const ORIGIN = 'ledger.example.org';

  async function send(tenant: string, n: number): Promise<number> {
    if (!keys[tenant]) {
      keys[tenant] = await producerKey();
      await registerKey(t.url, await t.token(tenant, 'admin'), keys[tenant]);
    }
    const receipts = await client(t.url, await t.token(tenant, 'events:write'), keys[tenant]).send(events(n));
    return receipts[receipts.length - 1].seq;
  }

  /** The served checkpoint, or undefined before the first. */
  async function served(tenant: string): Promise<string | undefined> {
    const res = await call(t.url, 'GET', '/v1/ledger/checkpoint', { token: await t.token(tenant, 'audit:read') });
    if (res.status === 404) return undefined;
    assert.equal(res.status, 200, res.text);
    return res.text;
  }

  /** Waits until the served checkpoint has `size` and is cosigned by every given witness. */
  async function cosignedAt(tenant: string, size: number, witnesses: TestWitness[], ms = 5000): Promise<string> {
    const until = Date.now() + ms;
    let note = '';
    while (Date.now() < until) {
      note = (await served(tenant)) ?? '';
      const atSize = note !== '' && parseCheckpoint(parseNote(note).text).size === size;
      if (atSize && witnesses.every((w) => parseNote(note).signatures.some((s) => s.name === w.name))) return note;
      await sleep(100);
    }
    assert.fail(`no checkpoint of size ${size} cosigned by ${witnesses.map((w) => w.name).join(', ')}; last:\n${note}`);
  }

  before(async () => {
    // the witnesses must be listening before the ledger starts with their URLs; they trust its key once it exists
    const log: { name: string; key?: KeyObject; originPrefix: string } = { name: ORIGIN, originPrefix: `${ORIGIN}/` };
    w1 = new TestWitness('witness.test/w1', log);
    w2 = new TestWitness('witness.test/w2', log);
    await w1.start();
    await w2.start();
    deadUrl = `http://127.0.0.1:${await freePort()}/nobody`;
    t = await startTestApp({ LEDGER_ORIGIN: ORIGIN, WITNESS_URLS: `${w1.url}, ${w2.url},${deadUrl}` });
    log.key = t.config.ledgerKey.publicKey;
  });

  after(async () => {
    await t?.close();
    await w1?.stop();
    await w2?.stop();
  });

  test('each new checkpoint is cosigned by every live witness, with a verified consistency proof', async () => {
    const tenant = 'acme';
    let size = await send(tenant, 5);
    let note = await cosignedAt(tenant, size, [w1, w2]);
    for (const w of [w1, w2]) {
      const cos = verifyCosignature(note, w.name, w.publicKey, { notAfter: Math.floor(Date.now() / 1000) + 1 });
      assert.equal(cos.checkpoint.size, size);
    }
    // the ledger's own signature still verifies on the cosigned note
    assert.equal(verifyCheckpoint(note, ORIGIN, t.config.ledgerKey.publicKey).size, size);

    for (const n of [3, 17, 1]) {
      size = await send(tenant, n);
      note = await cosignedAt(tenant, size, [w1, w2]);
      assert.equal(verifyCosignature(note, w1.name, w1.publicKey).checkpoint.size, size);
    }
    // later submissions came with a consistency proof from the witness's last size, and it verified
    const withProof = w1.submissions.filter((s) => s.origin === `${ORIGIN}/${tenant}` && s.status === 200 && s.old > 0);
    assert.ok(withProof.length >= 3, JSON.stringify(w1.submissions));
    assert.ok(withProof.every((s) => s.proofLines > 0 || s.old === s.size));
    assert.ok(!w1.submissions.some((s) => s.status === 422), 'a consistency proof failed to verify');

    // the list shows who cosigned
    const list = await call<{ checkpoints: { size: number; cosigned_by: string[] }[] }>(
      t.url,
      'GET',
      `/v1/ledger/checkpoints?from_size=${size}`,
      { token: await t.token(tenant, 'audit:read') },
    );
    assert.deepEqual(list.body.checkpoints[0].cosigned_by.sort(), [w1.url, w2.url].sort());
    // CheckpointService.latest carries the cosignatures too (the export uses it)
    assert.equal((await t.app.get(CheckpointService).latest(tenant))!.note, note);
  });

  test('a failing witness never blocks ingest and is retried until it cosigns', async () => {
    const tenant = 'globex';
    w1.failNext = 2;
    w2.garbageNext = 1;
    const start = Date.now();
    const size = await send(tenant, 4);
    assert.ok(Date.now() - start < 3000, 'ingest waited for a witness');
    // w1 answers 500 twice, w2 answers a line that is not a cosignature (not stored); both succeed on a retry,
    // w2 after a 409 that names the size it recorded when it answered badly
    const note = await cosignedAt(tenant, size, [w1, w2], 10_000);
    assert.equal(verifyCosignature(note, w1.name, w1.publicKey).checkpoint.size, size);
    assert.equal(verifyCosignature(note, w2.name, w2.publicKey).checkpoint.size, size);
    assert.equal(parseNote(note).signatures.length, 3, note);
    const w2Mine = w2.submissions.filter((s) => s.origin === `${ORIGIN}/${tenant}`);
    const answeredBadly = w2Mine[0];
    assert.deepEqual(
      w2Mine.slice(-2).map((s) => [s.status, s.old]),
      [
        [409, 0],
        [200, answeredBadly.size],
      ],
    );
  });

  test('a witness that lost track of the log answers 409 with its size; the ledger resubmits from there', async () => {
    const tenant = 'initech';
    await send(tenant, 6);
    const first = parseCheckpoint(parseNote(await cosignedAt(tenant, 7, [w1, w2])).text);
    assert.equal(first.size, 7);
    w2.state.delete(`${ORIGIN}/${tenant}`);
    const size = await send(tenant, 2);
    const note = await cosignedAt(tenant, size, [w1, w2]);
    assert.equal(verifyCosignature(note, w2.name, w2.publicKey).checkpoint.size, size);
    const mine = w2.submissions.filter((s) => s.origin === `${ORIGIN}/${tenant}` && s.size === size);
    assert.deepEqual(
      mine.map((s) => [s.status, s.old]),
      [
        [409, 7],
        [200, 0],
      ],
    );
  });
});
