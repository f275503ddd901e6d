/**
 * C2SP signed notes, transparency-log checkpoints and witness cosignatures
 * (DESIGN.md §4). These byte formats are read by outside verifiers and
 * witnesses, so every rule below cites the spec text that fixes it:
 *
 *  - c2sp.org/signed-note        (note text, signature lines, key IDs, Ed25519 type 0x01)
 *  - c2sp.org/tlog-checkpoint    (the three body lines and extension lines)
 *  - c2sp.org/tlog-cosignature   (cosignature/v1: Ed25519 type 0x04, timestamped)
 *  - golang.org/x/mod/sumdb/note (the reference implementation; its verifier-key
 *    encoding `<name>+<hex key ID>+<base64(type || public key)>` and its limit
 *    of 100 signatures per note are followed here)
 *
 * Pure code: node:crypto only. Keys are Ed25519 `KeyObject`s.
 */
import { type KeyObject, createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';

/** signed-note "Signature types": Ed25519 note signatures. */
export const SIGNATURE_TYPE_ED25519 = 0x01;
/** signed-note "Signature types": timestamped Ed25519 witness cosignatures (tlog-cosignature). */
export const SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04;
/**
 * signed-note "Format": verifiers SHOULD cap the signature count and MUST accept
 * at least 16; golang.org/x/mod/sumdb/note refuses more than 100, and so do we.
 */
export const MAX_NOTE_SIGNATURES = 100;

const EM_DASH_SPACE = '\u2014 ';
const ED25519_KEY_SIZE = 32;
const ED25519_SIGNATURE_SIZE = 64;
const KEY_ID_SIZE = 4;
const TIMESTAMP_SIZE = 8;
const ROOT_HASH_SIZE = 32;
/**
 * tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1". We accept only
 * up to 2^53 - 1 seconds (285 million years), so that it stays an exact number.
 */
const MAX_COSIGNATURE_TIME = BigInt(Number.MAX_SAFE_INTEGER);
/** RFC 8410 PKCS#8 wrapping of a 32-byte Ed25519 seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export type NoteErrorCode =
  | 'malformed_note'
  | 'malformed_checkpoint'
  | 'malformed_key'
  | 'bad_key'
  | 'unknown_key'
  | 'invalid_signature'
  | 'origin_mismatch';

/** Every refusal of this module, with a code a caller can map to a problem response. */
export class NoteError extends Error {
  constructor(
    readonly code: NoteErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NoteError';
  }
}

/** One signature line of a note, decoded. */
export interface NoteSignature {
  readonly name: string;
  /** The 4-byte key ID that starts the base64 value. */
  readonly keyId: Buffer;
  /** The rest of the base64 value (for type 0x04: timestamp || signature). */
  readonly signature: Buffer;
}

export interface Note {
  /** The signed text: ends with a newline, excludes the separating blank line. */
  readonly text: string;
  readonly signatures: NoteSignature[];
}

export interface Checkpoint {
  readonly origin: string;
  /** Tree size; sizes above Number.MAX_SAFE_INTEGER are refused as malformed. */
  readonly size: number;
  readonly rootHash: Buffer;
  readonly extensionLines: string[];
}

export interface CheckpointInput {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Uint8Array;
  readonly extensionLines?: readonly string[];
}

export interface VerifierKey {
  readonly name: string;
  readonly keyId: Buffer;
  readonly type: typeof SIGNATURE_TYPE_ED25519 | typeof SIGNATURE_TYPE_COSIGNATURE_V1;
  readonly publicKeyRaw: Buffer;
  readonly publicKey: KeyObject;
}

export interface VerifiedCosignature {
  /** POSIX seconds at which the witness cosigned. */
  readonly time: number;
  readonly checkpoint: Checkpoint;
}

// --- keys ---------------------------------------------------------------------

/**
 * signed-note "Signatures": key ID = SHA-256(key name || 0x0A || signature type || public key)[:4].
 */
export function noteKeyId(name: string, signatureType: number, publicKey: Uint8Array): Buffer {
  assertKeyName(name);
  return createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, signatureType])).update(publicKey).digest().subarray(0, KEY_ID_SIZE);
}

/** signed-note "Ed25519 signatures": the key ID of a log (checkpoint) signing key. */
export function checkpointKeyId(name: string, publicKeyRaw32: Uint8Array): Buffer {
  assertEd25519Raw(publicKeyRaw32);
  return noteKeyId(name, SIGNATURE_TYPE_ED25519, publicKeyRaw32);
}

/** tlog-cosignature "Format": the key ID of an Ed25519 witness key uses type byte 0x04. */
export function cosignatureKeyId(name: string, publicKeyRaw32: Uint8Array): Buffer {
  assertEd25519Raw(publicKeyRaw32);
  return noteKeyId(name, SIGNATURE_TYPE_COSIGNATURE_V1, publicKeyRaw32);
}

/** The 32-byte RFC 8032 encoding of an Ed25519 public key (given the public or the private key). */
export function ed25519PublicKeyRaw(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'ed25519') throw new NoteError('bad_key', `expected an Ed25519 key, got ${key.asymmetricKeyType ?? key.type}`);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const { x } = pub.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new NoteError('bad_key', 'Ed25519 key has no public part');
  return Buffer.from(x, 'base64url');
}

/** An Ed25519 public KeyObject from its 32-byte encoding. */
export function ed25519PublicKeyFromRaw(raw: Uint8Array): KeyObject {
  assertEd25519Raw(raw);
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

/** An Ed25519 private KeyObject from its 32-byte seed (RFC 8032 private key). */
export function ed25519PrivateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== ED25519_KEY_SIZE) throw new NoteError('bad_key', `an Ed25519 seed is ${ED25519_KEY_SIZE} bytes, got ${seed.length}`);
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/**
 * The verifier key string witnesses and clients are configured with:
 * `<name>+<8 hex digits of the key ID>+<base64(type || 32-byte public key)>`
 * (signed-note verifier keys, as golang.org/x/mod/sumdb/note encodes them).
 */
export function formatVerifierKey(
  name: string,
  publicKey: KeyObject | Uint8Array,
  type: VerifierKey['type'] = SIGNATURE_TYPE_ED25519,
): string {
  const raw = publicKey instanceof Uint8Array ? Buffer.from(publicKey) : ed25519PublicKeyRaw(publicKey);
  assertEd25519Raw(raw);
  const keyId = noteKeyId(name, type, raw);
  return `${name}+${keyId.toString('hex')}+${Buffer.concat([Buffer.from([type]), raw]).toString('base64')}`;
}

/** Parses and checks a verifier key string; refuses any key whose key ID does not match its name and key. */
export function parseVerifierKey(vkey: string): VerifierKey {
  const bad = (why: string): NoteError => new NoteError('malformed_key', `malformed verifier key: ${why}`);
  const firstPlus = vkey.indexOf('+');
  const secondPlus = vkey.indexOf('+', firstPlus + 1);
  if (firstPlus < 0 || secondPlus < 0) throw bad('expected <name>+<key id>+<key>');
  const name = vkey.slice(0, firstPlus);
  const idHex = vkey.slice(firstPlus + 1, secondPlus);
  const keyB64 = vkey.slice(secondPlus + 1);
  if (!isValidKeyName(name)) throw bad('invalid key name');
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) throw bad('key id must be 8 hex digits');
  const key = decodeBase64Strict(keyB64);
  if (key === undefined) throw bad('key is not canonical base64');
  const type = key[0];
  if (type !== SIGNATURE_TYPE_ED25519 && type !== SIGNATURE_TYPE_COSIGNATURE_V1) throw bad(`unsupported signature type ${String(type)}`);
  const publicKeyRaw = key.subarray(1);
  if (publicKeyRaw.length !== ED25519_KEY_SIZE) throw bad(`an Ed25519 key is ${ED25519_KEY_SIZE} bytes`);
  const keyId = noteKeyId(name, type, publicKeyRaw);
  if (keyId.toString('hex') !== idHex.toLowerCase()) throw bad('key id does not match the name and key');
  return { name, keyId, type, publicKeyRaw: Buffer.from(publicKeyRaw), publicKey: ed25519PublicKeyFromRaw(publicKeyRaw) };
}

// --- checkpoint bodies --------------------------------------------------------

/**
 * tlog-checkpoint "Note text": origin, tree size in decimal without leading
 * zeroes, base64 root hash, then optional non-empty extension lines; every line
 * newline-terminated.
 */
export function formatCheckpointBody(cp: CheckpointInput): string {
  const bad = (why: string): NoteError => new NoteError('malformed_checkpoint', why);
  if (!isValidLine(cp.origin)) throw bad('origin must be a non-empty line of printable text');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw bad('size must be a safe non-negative integer');
  if (!(cp.rootHash instanceof Uint8Array) || cp.rootHash.length !== ROOT_HASH_SIZE) throw bad(`root hash must be ${ROOT_HASH_SIZE} bytes`);
  const extensions = cp.extensionLines ?? [];
  if (!extensions.every(isValidLine)) throw bad('extension lines must be non-empty lines of printable text');
  const lines = [cp.origin, String(cp.size), Buffer.from(cp.rootHash).toString('base64'), ...extensions];
  return lines.map((line) => `${line}\n`).join('');
}

/** Strict inverse of formatCheckpointBody. */
export function parseCheckpoint(body: string): Checkpoint {
  const bad = (why: string): NoteError => new NoteError('malformed_checkpoint', `malformed checkpoint: ${why}`);
  if (!isValidNoteText(body)) throw bad('not valid note text');
  if (!body.endsWith('\n')) throw bad('body must end with a newline');
  const [origin, sizeText, rootText, ...extensionLines] = body.slice(0, -1).split('\n');
  if (origin === undefined || sizeText === undefined || rootText === undefined) throw bad('fewer than three lines');
  if (origin === '') throw bad('empty origin');
  if (!/^(?:0|[1-9][0-9]*)$/.test(sizeText)) throw bad('tree size must be decimal without leading zeroes');
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw bad('tree size is above 2^53 - 1');
  const rootHash = decodeBase64Strict(rootText);
  if (rootHash === undefined || rootHash.length !== ROOT_HASH_SIZE) throw bad(`root hash must be the base64 of ${ROOT_HASH_SIZE} bytes`);
  if (extensionLines.some((line) => line === '')) throw bad('empty extension line');
  return { origin, size, rootHash, extensionLines };
}

// --- notes --------------------------------------------------------------------

/**
 * signed-note "Format": a text ending in newline, a blank line, then one or
 * more lines `— <key name> <base64(key ID || signature)>`. Strict, as
 * golang.org/x/mod/sumdb/note's Open: valid UTF-8, no control characters
 * other than newline, valid key names, canonical base64 of at least 5 bytes,
 * at most MAX_NOTE_SIGNATURES lines. It does not verify anything.
 */
export function parseNote(note: string | Uint8Array): Note {
  const bad = (why: string): NoteError => new NoteError('malformed_note', `malformed note: ${why}`);
  const msg = typeof note === 'string' ? note : decodeUtf8(note);
  if (msg === undefined || !isValidNoteText(msg)) throw bad('not UTF-8 text without control characters');
  // "the text is separated from the signatures by the last empty line in the note"
  const split = msg.lastIndexOf('\n\n');
  if (split < 0) throw bad('no blank line before the signatures');
  const text = msg.slice(0, split + 1);
  const block = msg.slice(split + 2);
  if (block === '' || !block.endsWith('\n')) throw bad('signature lines must be present and newline-terminated');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw bad(`more than ${MAX_NOTE_SIGNATURES} signatures`);
  return { text, signatures: lines.map((line) => parseSignatureLine(line, bad)) };
}

function parseSignatureLine(line: string, bad: (why: string) => NoteError): NoteSignature {
  if (!line.startsWith(EM_DASH_SPACE)) throw bad('a signature line must start with an em dash and a space');
  const rest = line.slice(EM_DASH_SPACE.length);
  const space = rest.indexOf(' ');
  const name = space < 0 ? rest : rest.slice(0, space);
  const value = space < 0 ? '' : rest.slice(space + 1);
  if (!isValidKeyName(name)) throw bad('invalid key name in signature line');
  const bytes = decodeBase64Strict(value);
  if (value === '' || bytes === undefined || bytes.length <= KEY_ID_SIZE) throw bad(`bad signature value for ${name}`);
  return { name, keyId: bytes.subarray(0, KEY_ID_SIZE), signature: bytes.subarray(KEY_ID_SIZE) };
}

/** One note signature line, newline included: `— <name> <base64(keyId || signature)>\n`. */
export function formatSignatureLine(name: string, keyId: Uint8Array, signature: Uint8Array): string {
  assertKeyName(name);
  if (keyId.length !== KEY_ID_SIZE) throw new NoteError('malformed_key', `a key ID is ${KEY_ID_SIZE} bytes`);
  return `${EM_DASH_SPACE}${name} ${Buffer.concat([keyId, signature]).toString('base64')}\n`;
}

/**
 * Signs any note text with an Ed25519 key (signature type 0x01, over the text
 * bytes) and returns the whole note: text, blank line, signature line.
 */
export function signNote(text: string, name: string, privateKey: KeyObject): string {
  if (!isValidNoteText(text) || !text.endsWith('\n')) throw new NoteError('malformed_note', 'note text must be printable UTF-8 ending in a newline');
  const keyId = checkpointKeyId(name, ed25519PublicKeyRaw(privateKey));
  const signature = sign(null, Buffer.from(text, 'utf8'), privateKey);
  return `${text}\n${formatSignatureLine(name, keyId, signature)}`;
}

/** Signs a checkpoint body (refused unless it parses as one) and returns the signed note text. */
export function signCheckpoint(body: string, name: string, privateKey: KeyObject): string {
  parseCheckpoint(body);
  return signNote(body, name, privateKey);
}

/**
 * Opens a note with one trusted Ed25519 key and returns its text. Per
 * signed-note "Signatures": lines from other keys (another name or key ID) are
 * ignored; every line from this key must verify; at least one must exist.
 */
export function verifyNote(note: string | Uint8Array, name: string, publicKey: KeyObject): string {
  const parsed = parseNote(note);
  const keyId = checkpointKeyId(name, ed25519PublicKeyRaw(publicKey));
  const message = Buffer.from(parsed.text, 'utf8');
  for (const sig of signaturesBy(parsed, name, keyId)) {
    if (sig.signature.length !== ED25519_SIGNATURE_SIZE || !verify(null, message, publicKey, sig.signature)) {
      throw new NoteError('invalid_signature', `invalid signature for key ${name}+${keyId.toString('hex')}`);
    }
  }
  return parsed.text;
}

/**
 * Verifies a signed checkpoint against the log's key and returns the parsed
 * checkpoint. With `origin`, also refuses a checkpoint of another log.
 */
export function verifyCheckpoint(
  note: string | Uint8Array,
  name: string,
  publicKey: KeyObject,
  options: { readonly origin?: string } = {},
): Checkpoint {
  const checkpoint = parseCheckpoint(verifyNote(note, name, publicKey));
  if (options.origin !== undefined && checkpoint.origin !== options.origin) {
    throw new NoteError('origin_mismatch', `checkpoint origin is ${JSON.stringify(checkpoint.origin)}, expected ${JSON.stringify(options.origin)}`);
  }
  return checkpoint;
}

// --- witness cosignatures -----------------------------------------------------

/**
 * tlog-cosignature "Ed25519 signed message": `cosignature/v1\n`, `time <decimal
 * seconds, no leading zeroes>\n`, then the whole checkpoint body.
 */
export function cosignatureMessage(body: string, timeSeconds: number | bigint): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timeSeconds.toString()}\n${body}`, 'utf8');
}

/**
 * A witness cosignature (tlog-cosignature, Ed25519, type 0x04) over a
 * checkpoint body, as one signature line ending in a newline, ready to append
 * to the signed checkpoint. Its value is base64(key ID || u64 big-endian
 * timestamp || 64-byte signature): the `timestamped_signature` of the spec.
 */
export function cosignCheckpoint(body: string, name: string, privateKey: KeyObject, timeSeconds: number): string {
  parseCheckpoint(body);
  if (!Number.isSafeInteger(timeSeconds) || timeSeconds < 0) throw new NoteError('malformed_note', 'cosignature time must be a safe non-negative integer');
  const keyId = cosignatureKeyId(name, ed25519PublicKeyRaw(privateKey));
  const timestamp = Buffer.alloc(TIMESTAMP_SIZE);
  timestamp.writeBigUInt64BE(BigInt(timeSeconds));
  const signature = sign(null, cosignatureMessage(body, timeSeconds), privateKey);
  return formatSignatureLine(name, keyId, Buffer.concat([timestamp, signature]));
}

/**
 * Verifies the cosignature(s) of one witness on a signed checkpoint and returns
 * the cosigned time (of its first line) and the checkpoint. With `notAfter`
 * (POSIX seconds), a cosignature from the future is refused, as the spec allows.
 */
export function verifyCosignature(
  note: string | Uint8Array,
  name: string,
  publicKey: KeyObject,
  options: { readonly notAfter?: number } = {},
): VerifiedCosignature {
  const parsed = parseNote(note);
  const keyId = cosignatureKeyId(name, ed25519PublicKeyRaw(publicKey));
  const invalid = (why: string): NoteError => new NoteError('invalid_signature', `invalid cosignature for key ${name}+${keyId.toString('hex')}: ${why}`);
  const times = signaturesBy(parsed, name, keyId).map((sig) => {
    if (sig.signature.length !== TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE) throw invalid('wrong length');
    const time = sig.signature.readBigUInt64BE(0);
    if (time > MAX_COSIGNATURE_TIME) throw invalid('timestamp above 2^53 - 1');
    if (!verify(null, cosignatureMessage(parsed.text, time), publicKey, sig.signature.subarray(TIMESTAMP_SIZE))) throw invalid('bad signature');
    if (options.notAfter !== undefined && time > BigInt(options.notAfter)) throw invalid('timestamp is in the future');
    return Number(time);
  });
  return { time: times[0] as number, checkpoint: parseCheckpoint(parsed.text) };
}

// --- helpers ------------------------------------------------------------------

/** The lines of a note signed by (name, keyId); none at all is an error. */
function signaturesBy(note: Note, name: string, keyId: Buffer): NoteSignature[] {
  const mine = note.signatures.filter((s) => s.name === name && s.keyId.equals(keyId));
  if (mine.length === 0) throw new NoteError('unknown_key', `note has no signature by key ${name}+${keyId.toString('hex')}`);
  return mine;
}

/** signed-note: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus (U+002B) characters." */
function isValidKeyName(name: string): boolean {
  return name !== '' && isValidNoteText(name) && !/[\p{White_Space}+]/u.test(name);
}

function assertKeyName(name: string): void {
  if (!isValidKeyName(name)) throw new NoteError('malformed_key', `invalid key name ${JSON.stringify(name)}`);
}

function assertEd25519Raw(raw: Uint8Array): void {
  if (!(raw instanceof Uint8Array) || raw.length !== ED25519_KEY_SIZE) throw new NoteError('bad_key', `an Ed25519 public key is ${ED25519_KEY_SIZE} bytes`);
}

/**
 * signed-note: "MUST be valid UTF-8 and MUST NOT contain any ASCII control
 * characters (those below U+0020) other than newline". A JS string is valid
 * UTF-8 exactly when it has no unpaired surrogate.
 */
function isValidNoteText(text: string): boolean {
  return !/[\u0000-\u0009\u000b-\u001f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

function isValidLine(line: string): boolean {
  return typeof line === 'string' && line !== '' && !line.includes('\n') && isValidNoteText(line);
}

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** RFC 4648 §4 base64 with padding, canonical only (Buffer.from alone silently skips bad characters). */
function decodeBase64Strict(text: string): Buffer | undefined {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}
