import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';
import {
  MAX_NOTE_SIGNATURES,
  NoteError,
  type NoteErrorCode,
  checkpointKeyId,
  cosignCheckpoint,
  cosignatureKeyId,
  cosignatureMessage,
  ed25519PrivateKeyFromSeed,
  ed25519PublicKeyFromRaw,
  ed25519PublicKeyRaw,
  formatCheckpointBody,
  formatSignatureLine,
  formatVerifierKey,
  parseCheckpoint,
  parseNote,
  parseVerifierKey,
  signCheckpoint,
  signNote,
  verifyCheckpoint,
  verifyCosignature,
  verifyNote,
} from '../../src/core/checkpoint';
import { emptyRoot } from '../../src/core/merkle';

const throwsCode = (fn: () => unknown, code: NoteErrorCode, message?: string): void => {
  assert.throws(fn, (err: unknown) => err instanceof NoteError && err.code === code, message);
};

// ---------------------------------------------------------------------------
// Golden vectors from golang.org/x/mod/sumdb/note (note.go package doc and
// note_test.go TestSign / TestOpen / TestNewVerifier).
// ---------------------------------------------------------------------------

const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const NOTE_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

/** The Go "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>" signer key, decoded the way note.NewSigner does. */
function decodeGoSignerKey(skey: string): { name: string; keyIdHex: string; seed: Buffer } {
  const [priv, key, name, keyIdHex, ...rest] = skey.split('+');
  assert.equal(`${priv}+${key}`, 'PRIVATE+KEY');
  const data = Buffer.from(rest.join('+'), 'base64');
  assert.equal(data[0], 0x01, 'algorithm byte is Ed25519');
  assert.equal(data.length, 33);
  return { name: name as string, keyIdHex: keyIdHex as string, seed: data.subarray(1) };
}

const newKey = () => generateKeyPairSync('ed25519');

const LOG_NAME = 'ledger.example/acme';
const ROOT = createHash('sha256').update('some root').digest();

describe('golden vectors (golang.org/x/mod/sumdb/note)', () => {
  const peter = decodeGoSignerKey(PETER_SKEY);
  const peterKey = ed25519PrivateKeyFromSeed(peter.seed);

  test('key ID and verifier key of PeterNeumann match', () => {
    const raw = ed25519PublicKeyRaw(peterKey);
    assert.equal(checkpointKeyId('PeterNeumann', raw).toString('hex'), 'c74f20a3');
    assert.equal(peter.keyIdHex, 'c74f20a3');
    assert.equal(formatVerifierKey('PeterNeumann', peterKey), PETER_VKEY);
    assert.equal(formatVerifierKey('PeterNeumann', raw), PETER_VKEY);
    const parsed = parseVerifierKey(PETER_VKEY);
    assert.equal(parsed.name, 'PeterNeumann');
    assert.equal(parsed.keyId.toString('hex'), 'c74f20a3');
    assert.equal(parsed.type, 0x01);
    assert.deepEqual(parsed.publicKeyRaw, raw);
    assert.deepEqual(ed25519PublicKeyRaw(parsed.publicKey), raw);
  });

  test('signing reproduces the note of TestSign byte for byte', () => {
    assert.equal(signNote(NOTE_TEXT, 'PeterNeumann', peterKey), `${NOTE_TEXT}\n${PETER_SIG}`);
  });

  test('TestOpen: both signatures verify with their verifier keys; unknown keys are ignored', () => {
    const note = `${NOTE_TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    assert.equal(verifyNote(note, 'PeterNeumann', parseVerifierKey(PETER_VKEY).publicKey), NOTE_TEXT);
    assert.equal(verifyNote(note, 'EnochRoot', parseVerifierKey(ENOCH_VKEY).publicKey), NOTE_TEXT);
    const parsed = parseNote(note);
    assert.equal(parsed.text, NOTE_TEXT);
    assert.deepEqual(
      parsed.signatures.map((s) => [s.name, s.keyId.toString('hex'), s.signature.length]),
      [
        ['PeterNeumann', 'c74f20a3', 64],
        ['EnochRoot', 'af0cfe78', 64],
      ],
    );
    // Same name, other key (so another key ID): the note has no signature by that key.
    throwsCode(() => verifyNote(`${NOTE_TEXT}\n${PETER_SIG}`, 'PeterNeumann', newKey().publicKey), 'unknown_key');
    // Repeated identical signatures are fine.
    assert.equal(verifyNote(`${NOTE_TEXT}\n${PETER_SIG}${PETER_SIG}${ENOCH_SIG}`, 'PeterNeumann', peterKey), NOTE_TEXT);
  });

  test('TestOpen: too many signatures, bad signature, bad syntax', () => {
    const peterPub = parseVerifierKey(PETER_VKEY).publicKey;
    throwsCode(() => verifyNote(`${NOTE_TEXT}\n${PETER_SIG.repeat(101)}`, 'PeterNeumann', peterPub), 'malformed_note');
    assert.equal(verifyNote(`${NOTE_TEXT}\n${PETER_SIG.repeat(MAX_NOTE_SIGNATURES)}`, 'PeterNeumann', peterPub), NOTE_TEXT);
    throwsCode(
      () => verifyNote(`${NOTE_TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`, 'PeterNeumann', peterPub),
      'invalid_signature',
    );
    const badMsgs = [
      NOTE_TEXT,
      `${NOTE_TEXT}\n`,
      `${NOTE_TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\x01${NOTE_TEXT}\n${PETER_SIG}`,
      `${NOTE_TEXT}\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${NOTE_TEXT}\n${PETER_SIG}Unexpected line.\n`,
    ];
    for (const msg of badMsgs) throwsCode(() => verifyNote(msg, 'PeterNeumann', peterPub), 'malformed_note', JSON.stringify(msg));
    // "\xff" + text: invalid UTF-8 as bytes.
    const invalidUtf8 = Buffer.concat([Buffer.from([0xff]), Buffer.from(`${NOTE_TEXT}\n${PETER_SIG}`)]);
    throwsCode(() => verifyNote(invalidUtf8, 'PeterNeumann', peterPub), 'malformed_note');
    assert.equal(verifyNote(Buffer.from(`${NOTE_TEXT}\n${PETER_SIG}`), 'PeterNeumann', peterPub), NOTE_TEXT);
  });

  test('TestNewVerifier: every mangling of the verifier key is refused', () => {
    parseVerifierKey(PETER_VKEY);
    const bytes = [...PETER_VKEY];
    for (let i = 0; i <= bytes.length; i += 1) {
      for (let j = i + 1; j <= bytes.length; j += 1) {
        if (i === 0 && j === bytes.length) continue;
        throwsCode(() => parseVerifierKey(PETER_VKEY.slice(i, j)), 'malformed_key', PETER_VKEY.slice(i, j));
      }
    }
    for (let i = 0; i < bytes.length; i += 1) {
      const mangled = bytes.map((c, k) => (k === i ? String.fromCharCode(c.charCodeAt(0) + 1) : c)).join('');
      throwsCode(() => parseVerifierKey(mangled), 'malformed_key', mangled);
    }
    // Wrong key length and unknown algorithm, each with a key hash adjusted to match.
    throwsCode(() => parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=='), 'malformed_key');
    throwsCode(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'), 'malformed_key');
  });
});

describe('C2SP spec examples', () => {
  test('the tlog-checkpoint example parses', () => {
    // c2sp.org/tlog-checkpoint, the example at the top of the spec.
    const note =
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
      '\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n';
    const parsed = parseNote(note);
    const cp = parseCheckpoint(parsed.text);
    assert.equal(cp.origin, 'example.com/behind-the-sofa');
    assert.equal(cp.size, 20852163);
    assert.equal(cp.rootHash.toString('base64'), 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
    assert.deepEqual(cp.extensionLines, []);
    assert.equal(formatCheckpointBody(cp), parsed.text);
    assert.equal(parsed.signatures[0]?.signature.length, 64);
  });

  test('the tlog-cosignature example line carries the timestamp of its signed-message example', () => {
    // c2sp.org/tlog-cosignature: the witness line of the example, and "time 1679315147" in the message example.
    const note =
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n' +
      '\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n' +
      '\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n';
    const witness = parseNote(note).signatures[1];
    assert.equal(witness?.name, 'witness.example.com/w1');
    assert.equal(witness?.signature.length, 8 + 64);
    assert.equal(witness?.signature.readBigUInt64BE(0), 1679315147n);
    assert.equal(
      cosignatureMessage(parseNote(note).text, 1679315147).toString(),
      'cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n',
    );
  });
});

describe('checkpoints', () => {
  test('sign and verify round trip, in the exact C2SP layout', () => {
    const { privateKey, publicKey } = newKey();
    const body = formatCheckpointBody({ origin: LOG_NAME, size: 42, rootHash: ROOT });
    assert.equal(body, `${LOG_NAME}\n42\n${ROOT.toString('base64')}\n`);
    const note = signCheckpoint(body, LOG_NAME, privateKey);
    const match = /^(.*)\n\n\u2014 (\S+) ([A-Za-z0-9+/=]+)\n$/s.exec(note);
    assert.ok(match, note);
    assert.equal(`${match[1]}\n`, body);
    assert.equal(match[2], LOG_NAME);
    const value = Buffer.from(match[3] as string, 'base64');
    assert.equal(value.length, 4 + 64);
    assert.deepEqual(value.subarray(0, 4), checkpointKeyId(LOG_NAME, ed25519PublicKeyRaw(publicKey)));
    // The signature is a plain Ed25519 signature over the body bytes.
    assert.deepEqual(value.subarray(4), sign(null, Buffer.from(body), privateKey));

    const cp = verifyCheckpoint(note, LOG_NAME, publicKey, { origin: LOG_NAME });
    assert.deepEqual(cp, { origin: LOG_NAME, size: 42, rootHash: ROOT, extensionLines: [] });
  });

  test('key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4]', () => {
    const raw = ed25519PublicKeyRaw(newKey().publicKey);
    const want = createHash('sha256').update(Buffer.concat([Buffer.from('a.example/log\n'), Buffer.from([0x01]), raw])).digest().subarray(0, 4);
    assert.deepEqual(checkpointKeyId('a.example/log', raw), want);
    const cosig = createHash('sha256').update(Buffer.concat([Buffer.from('a.example/log\n'), Buffer.from([0x04]), raw])).digest().subarray(0, 4);
    assert.deepEqual(cosignatureKeyId('a.example/log', raw), cosig);
  });

  test('tampered body, signature, key name or key are refused', () => {
    const { privateKey, publicKey } = newKey();
    const body = formatCheckpointBody({ origin: LOG_NAME, size: 7, rootHash: ROOT });
    const note = signCheckpoint(body, LOG_NAME, privateKey);
    throwsCode(() => verifyCheckpoint(note.replace('\n7\n', '\n8\n'), LOG_NAME, publicKey), 'invalid_signature');
    throwsCode(() => verifyCheckpoint(note.replace(LOG_NAME, `${LOG_NAME}x`), LOG_NAME, publicKey), 'invalid_signature');
    const sigLine = note.slice(body.length + 1);
    const value = Buffer.from(sigLine.trim().split(' ')[2] as string, 'base64');
    for (const byte of [4, 20, 67]) {
      const flipped = Buffer.from(value);
      flipped[byte] ^= 0x01;
      const tampered = `${body}\n\u2014 ${LOG_NAME} ${flipped.toString('base64')}\n`;
      throwsCode(() => verifyCheckpoint(tampered, LOG_NAME, publicKey), 'invalid_signature', `byte ${byte}`);
    }
    // A flipped key ID byte makes it another key's line: ignored, so no signature at all.
    const otherId = Buffer.from(value);
    otherId[0] ^= 0x01;
    throwsCode(() => verifyCheckpoint(`${body}\n\u2014 ${LOG_NAME} ${otherId.toString('base64')}\n`, LOG_NAME, publicKey), 'unknown_key');
    throwsCode(() => verifyCheckpoint(note, 'other.example/log', publicKey), 'unknown_key');
    throwsCode(() => verifyCheckpoint(note, LOG_NAME, newKey().publicKey), 'unknown_key');
    throwsCode(() => verifyCheckpoint(note, LOG_NAME, publicKey, { origin: 'other.example/log' }), 'origin_mismatch');
    // A truncated signature (right key ID, short signature).
    const short = `${body}\n\u2014 ${LOG_NAME} ${value.subarray(0, 40).toString('base64')}\n`;
    throwsCode(() => verifyCheckpoint(short, LOG_NAME, publicKey), 'invalid_signature');
  });

  test('a valid signature by a known key does not hide a bad one by the same key', () => {
    const { privateKey, publicKey } = newKey();
    const body = formatCheckpointBody({ origin: LOG_NAME, size: 1, rootHash: ROOT });
    const note = signCheckpoint(body, LOG_NAME, privateKey);
    const bad = signCheckpoint(formatCheckpointBody({ origin: LOG_NAME, size: 2, rootHash: ROOT }), LOG_NAME, privateKey).split('\n\n')[1];
    throwsCode(() => verifyCheckpoint(`${note}${bad}`, LOG_NAME, publicKey), 'invalid_signature');
  });

  test('other signatures on the note are ignored', () => {
    const log = newKey();
    const other = newKey();
    const body = formatCheckpointBody({ origin: LOG_NAME, size: 3, rootHash: ROOT, extensionLines: ['ext one', 'ext two'] });
    const withOther = signNote(body, 'someone.example', other.privateKey);
    const both = `${signCheckpoint(body, LOG_NAME, log.privateKey)}${withOther.slice(body.length + 1)}`;
    const cp = verifyCheckpoint(both, LOG_NAME, log.publicKey);
    assert.deepEqual(cp.extensionLines, ['ext one', 'ext two']);
    assert.equal(verifyNote(both, 'someone.example', other.publicKey), body);
  });

  test('the empty tree has a checkpoint too', () => {
    const { privateKey, publicKey } = newKey();
    const body = formatCheckpointBody({ origin: LOG_NAME, size: 0, rootHash: emptyRoot() });
    assert.equal(body, `${LOG_NAME}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n`);
    assert.equal(verifyCheckpoint(signCheckpoint(body, LOG_NAME, privateKey), LOG_NAME, publicKey).size, 0);
  });

  test('malformed checkpoint bodies are refused', () => {
    const root = ROOT.toString('base64');
    const bad = [
      '',
      '\n',
      `${LOG_NAME}\n1\n`,
      `${LOG_NAME}\n1\n${root}`,
      `\n1\n${root}\n`,
      `${LOG_NAME}\n01\n${root}\n`,
      `${LOG_NAME}\n-1\n${root}\n`,
      `${LOG_NAME}\n+1\n${root}\n`,
      `${LOG_NAME}\n1.0\n${root}\n`,
      `${LOG_NAME}\n 1\n${root}\n`,
      `${LOG_NAME}\n9007199254740992\n${root}\n`,
      `${LOG_NAME}\n1\n${ROOT.subarray(1).toString('base64')}\n`,
      `${LOG_NAME}\n1\n${root.replace('=', '')}\n`,
      `${LOG_NAME}\n1\n${root}\n\n`,
      `${LOG_NAME}\n1\n${root}\next\n\n`,
      `${LOG_NAME}\t\n1\n${root}\n`,
      `${LOG_NAME}\r\n1\n${root}\n`,
      `${LOG_NAME}\n1\n${ROOT.toString('base64url')}\n`,
    ];
    for (const body of bad) throwsCode(() => parseCheckpoint(body), 'malformed_checkpoint', JSON.stringify(body));
    assert.equal(parseCheckpoint(`${LOG_NAME}\n9007199254740991\n${root}\n`).size, Number.MAX_SAFE_INTEGER);
    const { privateKey } = newKey();
    throwsCode(() => signCheckpoint(`${LOG_NAME}\n01\n${root}\n`, LOG_NAME, privateKey), 'malformed_checkpoint');
  });

  test('formatCheckpointBody refuses what it could not write back', () => {
    throwsCode(() => formatCheckpointBody({ origin: '', size: 1, rootHash: ROOT }), 'malformed_checkpoint');
    throwsCode(() => formatCheckpointBody({ origin: 'a\nb', size: 1, rootHash: ROOT }), 'malformed_checkpoint');
    throwsCode(() => formatCheckpointBody({ origin: 'a', size: -1, rootHash: ROOT }), 'malformed_checkpoint');
    throwsCode(() => formatCheckpointBody({ origin: 'a', size: 1.5, rootHash: ROOT }), 'malformed_checkpoint');
    throwsCode(() => formatCheckpointBody({ origin: 'a', size: 1, rootHash: ROOT.subarray(2) }), 'malformed_checkpoint');
    throwsCode(() => formatCheckpointBody({ origin: 'a', size: 1, rootHash: ROOT, extensionLines: [''] }), 'malformed_checkpoint');
  });

  test('format and parse are inverse (fast-check)', () => {
    const line = fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }).filter((s) => !/[\u0000-\u001f]/.test(s));
    fc.assert(
      fc.property(
        line,
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(line, { maxLength: 3 }),
        (origin, size, rootHash, extensionLines) => {
          const body = formatCheckpointBody({ origin, size, rootHash, extensionLines });
          assert.deepEqual(parseCheckpoint(body), { origin, size, rootHash: Buffer.from(rootHash), extensionLines });
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('notes are parsed strictly', () => {
  const { privateKey } = newKey();
  const body = formatCheckpointBody({ origin: LOG_NAME, size: 5, rootHash: ROOT });
  const note = signCheckpoint(body, LOG_NAME, privateKey);
  const sigLine = note.slice(body.length + 1);
  const value = sigLine.trim().split(' ')[2] as string;

  test('malformed notes are refused', () => {
    const bad = [
      '',
      body,
      `${body}\n`,
      `${body}${sigLine}`,
      `${body}\n${sigLine.slice(0, -1)}`,
      `${body}\n${sigLine}\n`,
      `${body}\n${sigLine}trailing\n`,
      `${body}\n- ${LOG_NAME} ${value}\n`,
      `${body}\n\u2014${LOG_NAME} ${value}\n`,
      `${body}\n\u2014  ${LOG_NAME} ${value}\n`,
      `${body}\n\u2014 ${LOG_NAME}  ${value}\n`,
      `${body}\n\u2014 ${LOG_NAME} ${value} \n`,
      `${body}\n\u2014 ${LOG_NAME}\n`,
      `${body}\n\u2014 ${LOG_NAME} \n`,
      `${body}\n\u2014 a+b ${value}\n`,
      `${body}\n\u2014 a\u00a0b ${value}\n`,
      `${body}\n\u2014 a\u3000b ${value}\n`,
      `${body}\n\u2014 ${LOG_NAME} ${value.replace('=', '')}\n`,
      `${body}\n\u2014 ${LOG_NAME} ${value.slice(0, -2)}*=\n`,
      `${body}\n\u2014 ${LOG_NAME} AAAAAA==\n`,
      `${body}\n\u2014 ${LOG_NAME} ${Buffer.from(value, 'base64').toString('base64url')}\n`,
      `${body.replace('\n', '\r\n')}\n${sigLine}`,
      `${body.replace(LOG_NAME, `${LOG_NAME}\u0000`)}\n${sigLine}`,
      `${body.replace(LOG_NAME, `${LOG_NAME}\u001b`)}\n${sigLine}`,
      `${body.replace(LOG_NAME, `${LOG_NAME}\ud800`)}\n${sigLine}`,
      `${body}\n${sigLine.repeat(MAX_NOTE_SIGNATURES + 1)}`,
    ];
    for (const text of bad) throwsCode(() => parseNote(text), 'malformed_note', JSON.stringify(text));
    // Non-canonical base64 (non-zero padding bits) decodes to the same bytes in lenient decoders.
    const lastChar = value.at(-2) as string;
    const sibling = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charAt(
      'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.indexOf(lastChar) ^ 1,
    );
    if (value.endsWith('==')) {
      throwsCode(() => parseNote(`${body}\n\u2014 ${LOG_NAME} ${value.slice(0, -3)}${sibling}==\n`), 'malformed_note');
    } else {
      throwsCode(() => parseNote(`${body}\n\u2014 ${LOG_NAME} ${value.slice(0, -2)}${sibling}=\n`), 'malformed_note');
    }
  });

  test('well-formed notes parse: blank lines in the text, up to 100 signatures, non-ASCII names', () => {
    assert.equal(parseNote(`${body}\n${sigLine.repeat(MAX_NOTE_SIGNATURES)}`).signatures.length, MAX_NOTE_SIGNATURES);
    const text = 'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n';
    const n = parseNote(`${text}\n\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n`);
    assert.equal(n.text, text);
    assert.equal(n.signatures[0]?.name, 'quasimodo.example/salvatore');
    const signed = signNote(text, 'città.example/è', privateKey);
    assert.equal(parseNote(signed).signatures[0]?.name, 'città.example/è');
  });

  test('signing refuses bad key names and texts', () => {
    throwsCode(() => signNote('no newline', 'a', privateKey), 'malformed_note');
    throwsCode(() => signNote('bad\u0007\n', 'a', privateKey), 'malformed_note');
    throwsCode(() => signNote('ok\n', 'a b', privateKey), 'malformed_key');
    throwsCode(() => signNote('ok\n', 'a+b', privateKey), 'malformed_key');
    throwsCode(() => signNote('ok\n', '', privateKey), 'malformed_key');
    throwsCode(() => formatSignatureLine('a', Buffer.alloc(3), Buffer.alloc(64)), 'malformed_key');
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    throwsCode(() => signNote('ok\n', 'a', p256.privateKey), 'bad_key');
    throwsCode(() => ed25519PublicKeyFromRaw(Buffer.alloc(31)), 'bad_key');
    throwsCode(() => ed25519PrivateKeyFromSeed(Buffer.alloc(31)), 'bad_key');
  });
});

describe('verifier keys', () => {
  test('round trip for log keys (0x01) and witness keys (0x04)', () => {
    const { publicKey } = newKey();
    const raw = ed25519PublicKeyRaw(publicKey);
    for (const type of [0x01, 0x04] as const) {
      const vkey = formatVerifierKey('w.example/1', publicKey, type);
      const parsed = parseVerifierKey(vkey);
      assert.equal(parsed.type, type);
      assert.equal(parsed.name, 'w.example/1');
      assert.deepEqual(parsed.publicKeyRaw, raw);
      assert.deepEqual(parsed.keyId, type === 0x01 ? checkpointKeyId('w.example/1', raw) : cosignatureKeyId('w.example/1', raw));
      assert.match(vkey, /^w\.example\/1\+[0-9a-f]{8}\+[A-Za-z0-9+/]{43}[A-Za-z0-9+/=]$/);
    }
  });

  test('a verifier key for one name is refused under another', () => {
    const vkey = formatVerifierKey('a.example', newKey().publicKey);
    throwsCode(() => parseVerifierKey(vkey.replace('a.example', 'b.example')), 'malformed_key');
    throwsCode(() => parseVerifierKey(`${vkey}=`), 'malformed_key');
    throwsCode(() => parseVerifierKey(` ${vkey}`), 'malformed_key');
  });
});

describe('witness cosignatures (tlog-cosignature v1)', () => {
  const log = newKey();
  const witness = newKey();
  const WITNESS = 'witness.example/w1';
  const body = formatCheckpointBody({ origin: LOG_NAME, size: 20852163, rootHash: ROOT });
  const signed = signCheckpoint(body, LOG_NAME, log.privateKey);

  test('cosign and verify round trip, with the exact timestamped_signature layout', () => {
    const line = cosignCheckpoint(body, WITNESS, witness.privateKey, 1679315147);
    assert.ok(line.startsWith(`\u2014 ${WITNESS} `) && line.endsWith('\n'));
    const value = Buffer.from(line.trim().split(' ')[2] as string, 'base64');
    assert.equal(value.length, 4 + 8 + 64);
    assert.deepEqual(value.subarray(0, 4), cosignatureKeyId(WITNESS, ed25519PublicKeyRaw(witness.publicKey)));
    assert.equal(value.readBigUInt64BE(4), 1679315147n);
    const message = Buffer.from(`cosignature/v1\ntime 1679315147\n${body}`);
    assert.deepEqual(value.subarray(12), sign(null, message, witness.privateKey));

    const cosigned = `${signed}${line}`;
    const result = verifyCosignature(cosigned, WITNESS, witness.publicKey);
    assert.equal(result.time, 1679315147);
    assert.equal(result.checkpoint.size, 20852163);
    // The log signature still verifies next to it, and a witness key from a verifier key string works.
    assert.equal(verifyCheckpoint(cosigned, LOG_NAME, log.publicKey).size, 20852163);
    const vkey = parseVerifierKey(formatVerifierKey(WITNESS, witness.publicKey, 0x04));
    assert.equal(verifyCosignature(cosigned, vkey.name, vkey.publicKey).time, 1679315147);
  });

  test('cosignatures and checkpoint signatures are not interchangeable', () => {
    const cosigned = `${signed}${cosignCheckpoint(body, WITNESS, witness.privateKey, 1)}`;
    // The witness line has key ID type 0x04: it is no checkpoint signature of the witness key...
    throwsCode(() => verifyCheckpoint(cosigned, WITNESS, witness.publicKey), 'unknown_key');
    // ...and a log signature is no cosignature.
    throwsCode(() => verifyCosignature(signed, LOG_NAME, log.publicKey), 'unknown_key');
  });

  test('tampered time, body or signature are refused; future timestamps on request', () => {
    const line = cosignCheckpoint(body, WITNESS, witness.privateKey, 1000);
    const value = Buffer.from(line.trim().split(' ')[2] as string, 'base64');
    const relabel = (v: Buffer): string => `${signed}\u2014 ${WITNESS} ${v.toString('base64')}\n`;
    const laterTime = Buffer.from(value);
    laterTime.writeBigUInt64BE(1001n, 4);
    throwsCode(() => verifyCosignature(relabel(laterTime), WITNESS, witness.publicKey), 'invalid_signature');
    const flipped = Buffer.from(value);
    flipped[40] ^= 0x80;
    throwsCode(() => verifyCosignature(relabel(flipped), WITNESS, witness.publicKey), 'invalid_signature');
    throwsCode(() => verifyCosignature(relabel(value.subarray(0, 4 + 64)), WITNESS, witness.publicKey), 'invalid_signature');
    const otherBody = formatCheckpointBody({ origin: LOG_NAME, size: 20852164, rootHash: ROOT });
    throwsCode(
      () => verifyCosignature(`${signCheckpoint(otherBody, LOG_NAME, log.privateKey)}${line}`, WITNESS, witness.publicKey),
      'invalid_signature',
    );
    assert.equal(verifyCosignature(`${signed}${line}`, WITNESS, witness.publicKey, { notAfter: 1000 }).time, 1000);
    throwsCode(() => verifyCosignature(`${signed}${line}`, WITNESS, witness.publicKey, { notAfter: 999 }), 'invalid_signature');
  });

  test('timestamps above 2^63 - 1 (the spec) and 2^53 - 1 (ours) are refused even when correctly signed', () => {
    const keyId = cosignatureKeyId(WITNESS, ed25519PublicKeyRaw(witness.publicKey));
    const noteAt = (time: bigint): string => {
      const ts = Buffer.alloc(8);
      ts.writeBigUInt64BE(time);
      const sig = sign(null, cosignatureMessage(body, time), witness.privateKey);
      return `${signed}${formatSignatureLine(WITNESS, keyId, Buffer.concat([ts, sig]))}`;
    };
    for (const time of [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n]) {
      throwsCode(() => verifyCosignature(noteAt(time), WITNESS, witness.publicKey), 'invalid_signature', String(time));
    }
    assert.equal(verifyCosignature(noteAt(2n ** 53n - 1n), WITNESS, witness.publicKey).time, Number.MAX_SAFE_INTEGER);
  });

  test('cosigning refuses bad input', () => {
    throwsCode(() => cosignCheckpoint(body, WITNESS, witness.privateKey, -1), 'malformed_note');
    throwsCode(() => cosignCheckpoint(body, WITNESS, witness.privateKey, 1.5), 'malformed_note');
    throwsCode(() => cosignCheckpoint('not a checkpoint\n', WITNESS, witness.privateKey, 1), 'malformed_checkpoint');
  });
});
