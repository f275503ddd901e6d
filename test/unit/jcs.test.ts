import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { jcs, jcsBytes } from '../../src/core/jcs';
import {
  batchId,
  buildRecord,
  eventDigest,
  genesisChainHash,
  leafHash,
  nextChainHash,
  parseCommonRecord,
  recordJcs,
  type LedgerRecord,
} from '../../src/core/record';

// ---------------------------------------------------------------------------
// RFC 8785 examples, transcribed from the RFC text. Inputs are JSON text as the
// RFC prints them (parsed with JSON.parse), outputs are the exact canonical text.
// ---------------------------------------------------------------------------

/** §3.2.2 input. */
const RFC_3_2_2_INPUT = String.raw`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`;

/** §3.2.2 / §3.2.3 output (the "€" is the raw character, not an escape). */
const RFC_3_2_2_OUTPUT = String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`;

/** §3.2.4: the UTF-8 bytes of that output. */
const RFC_3_2_4_UTF8 = `
  7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
  75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
  5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
  65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
  5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
  30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d`;

/** §3.2.3 sorting input. */
const RFC_3_2_3_INPUT = String.raw`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`;

/** §3.2.3: the property values in the order the sort must produce. */
const RFC_3_2_3_ORDER = [
  'Carriage Return',
  'One',
  'Control',
  'Latin Small Letter O With Diaeresis',
  'Euro Sign',
  'Emoji: Grinning Face',
  'Hebrew Letter Dalet With Dagesh',
];

/** Appendix B: IEEE 754 bits (hex) → JSON text; null = must be refused (NaN, Infinity). */
const APPENDIX_B: [string, string | null, string][] = [
  ['0000000000000000', '0', 'Zero'],
  ['8000000000000000', '0', 'Minus zero'],
  ['0000000000000001', '5e-324', 'Min pos number'],
  ['8000000000000001', '-5e-324', 'Min neg number'],
  ['7fefffffffffffff', '1.7976931348623157e+308', 'Max pos number'],
  ['ffefffffffffffff', '-1.7976931348623157e+308', 'Max neg number'],
  ['4340000000000000', '9007199254740992', 'Max pos int'],
  ['c340000000000000', '-9007199254740992', 'Max neg int'],
  ['4430000000000000', '295147905179352830000', '~2**68'],
  ['7fffffffffffffff', null, 'NaN'],
  ['7ff0000000000000', null, 'Infinity'],
  ['44b52d02c7e14af5', '9.999999999999997e+22', ''],
  ['44b52d02c7e14af6', '1e+23', ''],
  ['44b52d02c7e14af7', '1.0000000000000001e+23', ''],
  ['444b1ae4d6e2ef4e', '999999999999999700000', ''],
  ['444b1ae4d6e2ef4f', '999999999999999900000', ''],
  ['444b1ae4d6e2ef50', '1e+21', ''],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7', ''],
  ['3eb0c6f7a0b5ed8d', '0.000001', ''],
  ['41b3de4355555553', '333333333.3333332', ''],
  ['41b3de4355555554', '333333333.33333325', ''],
  ['41b3de4355555555', '333333333.3333333', ''],
  ['41b3de4355555556', '333333333.3333334', ''],
  ['41b3de4355555557', '333333333.33333343', ''],
  ['becbf647612f3696', '-0.0000033333333333333333', ''],
  ['43143ff3c1cb0959', '1424953923781206.2', 'Round to even'],
];

const fromBits = (hex: string): number => Buffer.from(hex, 'hex').readDoubleBE(0);

describe('jcs: RFC 8785 examples', () => {
  test('§3.2.2 sample: numbers, string escapes, literals', () => {
    assert.equal(jcs(JSON.parse(RFC_3_2_2_INPUT)), RFC_3_2_2_OUTPUT);
  });

  test('§3.2.4 sample: the UTF-8 bytes', () => {
    const expected = Buffer.from(RFC_3_2_4_UTF8.replace(/\s+/g, ''), 'hex');
    assert.deepEqual(jcsBytes(JSON.parse(RFC_3_2_2_INPUT)), expected);
    assert.equal(expected.toString('utf8'), RFC_3_2_2_OUTPUT);
  });

  test('§3.2.3 sorting by UTF-16 code units', () => {
    const out = jcs(JSON.parse(RFC_3_2_3_INPUT));
    assert.equal(
      out,
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    // Read the values in text order (JSON.parse would move the integer-like key "1" first).
    assert.deepEqual([...out.matchAll(/:"([^"]*)"/g)].map((m) => m[1]), RFC_3_2_3_ORDER);
  });

  test('sorting applies recursively, arrays keep their order', () => {
    assert.equal(jcs({ b: [3, { z: 1, a: 2 }, 1], a: { y: null, x: {} } }), '{"a":{"x":{},"y":null},"b":[3,{"a":2,"z":1},1]}');
  });

  for (const [bits, expected, comment] of APPENDIX_B) {
    test(`Appendix B: ${bits}${comment ? ` (${comment})` : ''} → ${expected ?? 'refused'}`, () => {
      const x = fromBits(bits);
      if (expected === null) {
        assert.throws(() => jcs(x));
        assert.throws(() => jcs({ n: x }));
        assert.throws(() => jcs([x]));
      } else {
        assert.equal(jcs(x), expected);
        assert.equal(jcs({ n: x }), `{"n":${expected}}`);
        assert.equal(jcs([x]), `[${expected}]`);
      }
    });
  }

  test('strings: only the mandatory escapes, lowercase \\u00xx, non-ASCII raw', () => {
    assert.equal(jcs('\b\t\n\f\r'), '"\\b\\t\\n\\f\\r"');
    assert.equal(jcs('\u0000\u001f\u000b'), '"\\u0000\\u001f\\u000b"');
    assert.equal(jcs('"\\/'), '"\\"\\\\/"');
    assert.equal(jcs('\u007f\u2028\u2029é\u{1f600}'), '"\u007f\u2028\u2029é\u{1f600}"');
  });
});

describe('jcs: refusals', () => {
  const refused: [string, unknown][] = [
    ['a lone high surrogate', '\ud800'],
    ['a lone low surrogate inside a string', 'a\udc00b'],
    ['a lone surrogate in a nested value', { a: ['ok', '\udbff'] }],
    ['a lone surrogate in a key', { '\ud83d': 1 }],
    ['NaN', NaN],
    ['NaN nested', { a: { b: NaN } }],
    ['Infinity', Infinity],
    ['-Infinity in an array', [1, -Infinity]],
    ['undefined at the top level', undefined],
    ['a function at the top level', () => 1],
    ['a BigInt', 10n],
  ];
  for (const [what, value] of refused) {
    test(what, () => {
      assert.throws(() => jcs(value));
    });
  }

  test('undefined at the top level is a TypeError, never the empty string', () => {
    assert.throws(() => jcs(undefined), TypeError);
    assert.throws(() => jcsBytes(undefined), TypeError);
  });

  test('a well-formed surrogate pair is accepted', () => {
    assert.equal(jcs('\ud83d\ude00'), '"\u{1f600}"');
  });
});

// ---------------------------------------------------------------------------
// recordJcs (the hand-written fast path) against the generic canonicaliser.
// ---------------------------------------------------------------------------

/** Characters that exercise escaping and UTF-16 ordering, mixed with any code point. */
const tricky = fc.constantFrom(
  '"', '\\', '/', '\u0000', '\b', '\t', '\n', '\f', '\r', '\u001f', '\u007f', '\u0080',
  '\u00f6', '\u2028', '\u20ac', '\ufb33', '\uffff', '\u{1f600}', '\u{10000}', '\u{10ffff}',
);
const text = fc.string({ unit: fc.oneof(tricky, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 24 });
const nullableText = fc.option(text, { nil: null });

const recordArb: fc.Arbitrary<LedgerRecord> = fc.record({
  v: fc.constant(1 as const),
  tenant: text,
  seq: fc.oneof(fc.maxSafeNat(), fc.constantFrom(1, Number.MAX_SAFE_INTEGER)),
  id: text,
  trace_id: text,
  span_id: text,
  parent_span_id: nullableText,
  session_id: nullableText,
  type: text,
  name: nullableText,
  agent: text,
  time: text,
  received_at: text,
  kid: text,
  batch: text,
  digest: text,
});

describe('recordJcs', () => {
  test('equals jcs(record) for arbitrary records', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        assert.equal(recordJcs(r), jcs(r));
      }),
      { numRuns: 2000 },
    );
  });

  test('equals jcs(record) for a record built from an event with absent optional fields', () => {
    const r = buildRecord(
      'acme',
      7,
      { id: 'i', trace_id: 't', span_id: 's', type: 'run.started', agent: 'a', time: '2026-01-01T00:00:00Z' },
      '2026-01-01T00:00:01.000Z',
      'kid',
      'batch',
      'digest',
    );
    assert.equal(r.parent_span_id, null);
    assert.equal(r.session_id, null);
    assert.equal(r.name, null);
    assert.equal(recordJcs(r), jcs(r));
    assert.equal(
      recordJcs(r),
      '{"agent":"a","batch":"batch","digest":"digest","id":"i","kid":"kid","name":null,"parent_span_id":null,' +
        '"received_at":"2026-01-01T00:00:01.000Z","seq":7,"session_id":null,"span_id":"s","tenant":"acme",' +
        '"time":"2026-01-01T00:00:00Z","trace_id":"t","type":"run.started","v":1}',
    );
  });
});

describe('parseCommonRecord (the verifier\'s one-pass reading of a canonical record)', () => {
  const plain = (x: string | null) => x === null || !/["\\\u0000-\u001f\ud800-\udfff]/.test(x);
  test('reads back every record whose strings are plain, and nothing it could not', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        const textOf = recordJcs(r);
        const p = parseCommonRecord(textOf);
        const common = Object.values(r).every((x) => typeof x === 'number' || plain(x)) && String(r.seq).length <= 15;
        if (common) assert.deepEqual(p, r);
        else assert.equal(p, undefined);
      }),
      { numRuns: 2000 },
    );
  });

  test('refuses near-canonical texts (the general path decides them)', () => {
    const r = buildRecord('acme', 12, { id: 'i', trace_id: 't', span_id: 's', type: 'run.started', agent: 'a', time: 'T' }, 'R', 'kid', 'b', 'd');
    const t = recordJcs(r);
    assert.deepEqual(parseCommonRecord(t), r);
    for (const bad of [
      t.replace('"seq":12', '"seq":012'),
      t.replace('"seq":12', '"seq":12.0'),
      t.replace('"seq":12', '"seq":-12'),
      t.replace('"seq":12', '"seq":"12"'),
      t.replace('"agent":"a"', '"agent":"\\u0061"'),
      t.replace('"agent":"a"', '"agent": "a"'),
      t.replace('"name":null', '"name":"null"').replace('"name":"null"', '"name":nul'),
      t.replace('"id":"i"', '"id":null'),
      t.replace('"v":1}', '"v":2}'),
      `${t} `,
      t.replace('{"agent":"a","batch":"b"', '{"batch":"b","agent":"a"'),
    ]) {
      assert.notEqual(bad, t);
      assert.equal(parseCommonRecord(bad), undefined, bad);
    }
  });

  test('returns a record only for text that is exactly its canonical form (edited texts)', () => {
    const edit = fc.tuple(fc.nat(), fc.nat({ max: 3 }), fc.oneof(text, fc.constantFrom('0', '00', ' ', 'null', '"', '\\', ',', '1')));
    fc.assert(
      fc.property(recordArb, fc.array(edit, { minLength: 1, maxLength: 3 }), (r, edits) => {
        let t = recordJcs(r);
        for (const [at, del, ins] of edits) {
          const i = at % (t.length + 1);
          t = t.slice(0, i) + ins + t.slice(i + del);
        }
        const p = parseCommonRecord(t);
        if (p !== undefined) assert.equal(recordJcs(p), t);
      }),
      { numRuns: 3000 },
    );
  });
});

// ---------------------------------------------------------------------------
// Hash helpers against node:crypto directly.
// ---------------------------------------------------------------------------

const sha256 = (...parts: Buffer[]): Buffer => createHash('sha256').update(Buffer.concat(parts)).digest();
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('record hashes', () => {
  const recordText = '{"agent":"ä","seq":1,"v":1}';

  test('leafHash = SHA-256(0x00 || UTF-8 record text)', () => {
    const expected = sha256(Buffer.from([0x00]), utf8(recordText));
    assert.deepEqual(leafHash(recordText), expected);
    assert.notDeepEqual(leafHash(recordText), sha256(utf8(recordText)));
    assert.equal(leafHash(recordText).length, 32);
  });

  test('genesisChainHash = SHA-256("agent-ledger:v1:" || tenant), UTF-8', () => {
    assert.deepEqual(genesisChainHash('acme'), sha256(utf8('agent-ledger:v1:acme')));
    assert.deepEqual(genesisChainHash('zürich-😀'), sha256(utf8('agent-ledger:v1:zürich-😀')));
    assert.notDeepEqual(genesisChainHash('acme'), genesisChainHash('acme2'));
    assert.equal(
      genesisChainHash('acme').toString('hex'),
      createHash('sha256').update('agent-ledger:v1:acme').digest('hex'),
    );
  });

  test('nextChainHash = SHA-256(prev || leaf), raw 32-byte concatenation', () => {
    const prev = genesisChainHash('acme');
    const leaf = leafHash(recordText);
    assert.deepEqual(nextChainHash(prev, leaf), sha256(prev, leaf));
    assert.notDeepEqual(nextChainHash(prev, leaf), nextChainHash(leaf, prev));
    assert.notDeepEqual(nextChainHash(prev, leaf), sha256(utf8(prev.toString('hex') + leaf.toString('hex'))));
  });

  test('eventDigest = base64url (no padding) of SHA-256(UTF-8 event JCS)', () => {
    const eventText = '{"agent":"support-agent","attributes":{"q":"€ 😀"},"id":"x"}';
    const digest = eventDigest(eventText);
    assert.equal(digest, sha256(utf8(eventText)).toString('base64url'));
    assert.match(digest, /^[A-Za-z0-9_-]{43}$/);
  });

  test('eventDigest of a known text', () => {
    // SHA-256("abc") (FIPS 180-2 example), base64url without padding.
    assert.equal(eventDigest('abc'), Buffer.from('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'hex').toString('base64url'));
    assert.equal(eventDigest('abc'), 'ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
  });

  test('batchId = base64url of SHA-256 of the JWS compact string', () => {
    const jws = 'eyJhbGciOiJFZERTQSJ9.eyJkaWdlc3RzIjpbXX0.c2ln';
    assert.equal(batchId(jws), sha256(utf8(jws)).toString('base64url'));
    assert.notEqual(batchId(jws), batchId(`${jws}x`));
    assert.doesNotMatch(batchId(jws), /[=+/]/);
  });
});
