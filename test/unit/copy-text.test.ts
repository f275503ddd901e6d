import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { copyColumns, copyFields, copyLine, copyPayload, type CopyValue } from '../../src/ledger/copy';

/** What PostgreSQL's text input of the column receives for a value written by copyLine. */
const asInput = (v: CopyValue): string | null =>
  v === null ? null : typeof v === 'number' ? String(v) : Buffer.isBuffer(v) ? `\\x${v.toString('hex')}` : v;

/** Strings made of the characters the COPY text format escapes, and their look-alikes. */
const tricky = fc.string({ unit: fc.constantFrom('\\', '\t', '\n', '\r', 'N', 't', 'n', 'r', 'x', '"', '{', ',', 'é', '😀', ' ') });
const value: fc.Arbitrary<CopyValue> = fc.oneof(
  tricky,
  fc.string(),
  fc.constant(null),
  fc.constant('\\N'),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
);

test('copyFields reads back exactly the fields copyLine wrote', () => {
  fc.assert(
    fc.property(fc.array(value, { minLength: 1, maxLength: 8 }), (values) => {
      assert.deepEqual(copyFields(copyLine(values)), values.map(asInput));
    }),
    { numRuns: 2000 },
  );
});

test('copyColumns transposes rows into columns and refuses a row of another width', () => {
  const lines = [copyLine(['a', 1, null]), copyLine(['b\tc', 2, Buffer.from([0xab])])];
  assert.deepEqual(copyColumns(lines, 3), [
    ['a', 'b\tc'],
    ['1', '2'],
    [null, '\\xab'],
  ]);
  assert.throws(() => copyColumns(lines, 2), /3 fields, not 2/);
});

test('copyPayload is the UTF-8 of the joined lines, in chunks of at most 1 MiB plus one line', () => {
  fc.assert(
    fc.property(fc.array(fc.array(value, { minLength: 1, maxLength: 6 }).map(copyLine), { maxLength: 30 }), (lines) => {
      assert.deepEqual(Buffer.concat(copyPayload(lines)), Buffer.from(lines.join(''), 'utf8'));
    }),
    { numRuns: 500 },
  );
  // lines that cross chunk boundaries, multi-byte characters (3 bytes per UTF-16 unit: the worst case reserved)
  const big = Array.from({ length: 9 }, (_, i) => copyLine([`${'€'.repeat(100_000 + i * 7919)}😀`, i, '\	']));
  const parts = copyPayload(big);
  assert.ok(parts.length > 1, 'several chunks');
  assert.ok(parts.every((p) => p.length > 0));
  const longest = Math.max(...big.map((l) => Buffer.byteLength(l)));
  assert.ok(parts.every((p) => p.length <= Math.max(1 << 20, 3 * longest)), 'at most 1 MiB, or one line that does not fit');
  assert.deepEqual(Buffer.concat(parts), Buffer.from(big.join(''), 'utf8'));
  assert.deepEqual(copyPayload([]), []);
});
