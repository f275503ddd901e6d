import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EVENT_TYPES, isValidRfc3339, isWellFormedProducerEvent, traceEventSchema } from '../../src/core/event';

/** The definition the char-code check replaced: the RFC 3339 pattern, then every field range-checked with a Date. */
function rfc3339Reference(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|([+-])(\d{2}):(\d{2}))$/.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59) return false;
  if (m[8] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) return false;
  return d <= new Date(Date.UTC(y, mo, 0)).getUTCDate();
}

const digits = (n: number, max = 10 ** n - 1) => fc.integer({ min: 0, max }).map((v) => String(v).padStart(n, '0'));
/** Timestamps near the valid ones: every field drawn beyond its range now and then, and the separators varied. */
const timestampLike = fc
  .tuple(
    digits(4),
    digits(2, 13),
    digits(2, 32),
    fc.constantFrom('T', 'T', 'T', 't', ' '),
    digits(2, 25),
    digits(2, 61),
    digits(2, 61),
    fc.option(fc.string({ unit: fc.constantFrom('0', '1', '9', 'a'), minLength: 0, maxLength: 11 }), { nil: undefined }),
    fc.oneof(fc.constant('Z'), fc.constant('z'), fc.constant(''), fc.tuple(fc.constantFrom('+', '-'), digits(2, 25), fc.constantFrom(':', ''), digits(2, 61)).map((p) => p.join(''))),
  )
  .map(([y, mo, d, t, h, mi, s, frac, off]) => `${y}-${mo}-${d}${t}${h}:${mi}:${s}${frac === undefined ? '' : `.${frac}`}${off}`);

test('isValidRfc3339 agrees with the regex-and-Date definition on timestamp-like and arbitrary strings', () => {
  fc.assert(
    fc.property(fc.oneof(timestampLike, timestampLike, fc.string({ maxLength: 40 })), (s) => {
      assert.equal(isValidRfc3339(s), rfc3339Reference(s), s);
    }),
    { numRuns: 20_000 },
  );
  // the edges, named
  for (const s of ['2024-02-29T00:00:00Z', '2023-02-29T00:00:00Z', '2000-02-29T23:59:59.123456789+23:59', '1900-02-29T00:00:00Z',
    '0000-01-01T00:00:00Z', '0001-01-01T00:00:00Z', '2026-04-31T00:00:00Z', '2026-11-25T24:00:00Z', '2026-11-25T10:00:00.Z',
    '2026-11-25T10:00:00.1234567890Z', '2026-11-25T10:00:00+24:00', '2026-11-25T10:00:00+0100', '2026-11-25T10:00:00Z ']) {
    assert.equal(isValidRfc3339(s), rfc3339Reference(s), s);
  }
});

const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const validEvent = fc.record(
  {
    id: fc.uuid(),
    trace_id: hex(32),
    span_id: hex(16),
    parent_span_id: fc.option(hex(16), { nil: null }),
    session_id: fc.option(fc.string({ minLength: 1, maxLength: 128 }), { nil: null }),
    type: fc.oneof(fc.constantFrom(...EVENT_TYPES), fc.stringMatching(/^custom\.[a-z0-9][a-z0-9_.-]{0,20}$/)),
    name: fc.option(fc.string({ minLength: 1, maxLength: 256 }), { nil: null }),
    agent: fc.string({ minLength: 1, maxLength: 128 }),
    time: timestampLike.filter(rfc3339Reference),
    duration_ms: fc.option(fc.double({ min: 0, max: 1e9, noNaN: true }), { nil: null }),
    status: fc.option(fc.constantFrom('ok', 'error', 'unset'), { nil: null }),
    attributes: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
  },
  { requiredKeys: ['id', 'trace_id', 'span_id', 'type', 'agent', 'time'] },
);

/** Replaces one field with a value from a pool of wrong (and some right) kinds, removes it, or adds an unknown key. */
const strange = fc.oneof(
  fc.constantFrom(null, undefined, '', 0, -1, -0, 1.5, Infinity, NaN, true, [], {}, 'x\u0000y', 'ok', 'tool.call', 'ledger.key', '0'.repeat(16), '0'.repeat(32)),
  fc.string({ maxLength: 300 }),
  fc.jsonValue({ maxDepth: 1 }),
  hex(16),
  hex(32),
);
const mutated = fc
  .tuple(validEvent, fc.constantFrom('id', 'trace_id', 'span_id', 'parent_span_id', 'session_id', 'type', 'name', 'agent', 'time', 'duration_ms', 'status', 'attributes', 'extra', '__proto__'), fc.constantFrom('set', 'delete'), strange)
  .map(([e, key, how, value]) => {
    const copy: Record<string, unknown> = JSON.parse(JSON.stringify(e));
    if (how === 'delete') delete copy[key];
    else Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true });
    return copy;
  });

test('isWellFormedProducerEvent: true only for what traceEventSchema accepts unchanged; true for valid JSON events', () => {
  fc.assert(
    fc.property(fc.oneof(validEvent, mutated, mutated), (raw) => {
      const fromJson = JSON.parse(JSON.stringify(raw)) as unknown;
      for (const candidate of [raw, fromJson]) {
        const fast = isWellFormedProducerEvent(candidate);
        const r = traceEventSchema.safeParse(candidate);
        if (fast) {
          assert.ok(r.success, `the fast check passed what zod refuses: ${JSON.stringify(r.error?.issues)}`);
          assert.deepEqual(r.data, candidate, 'zod would have changed the value');
        }
      }
      // every event a producer can send as JSON and zod accepts takes the fast path (else it is no fast path)
      const r = traceEventSchema.safeParse(fromJson);
      if (r.success) assert.ok(isWellFormedProducerEvent(fromJson), `zod accepts but the fast check does not: ${JSON.stringify(fromJson)}`);
    }),
    { numRuns: 5_000 },
  );
});

test('isWellFormedProducerEvent refuses the cases zod refuses by name', () => {
  const ok = {
    id: '6f1c2b1e-3a7d-4c55-9a51-0d6f0b7e9a10', trace_id: 'a'.repeat(32), span_id: 'b'.repeat(16), type: 'tool.call',
    agent: 'a', time: '2026-11-25T10:00:00Z',
  };
  assert.ok(isWellFormedProducerEvent(ok));
  for (const [patch, why] of [
    [{ type: 'ledger.key.registered' }, 'a reserved type'],
    [{ trace_id: '0'.repeat(32) }, 'an all-zero trace id'],
    [{ span_id: 'B'.repeat(16) }, 'uppercase hex'],
    [{ agent: 'x'.repeat(129) }, 'an agent over 128 characters'],
    [{ name: 'a\u0000b' }, 'NUL in a stored text column'],
    [{ attributes: [] }, 'attributes as an array'],
    [{ duration_ms: -1 }, 'a negative duration'],
    [{ time: '2026-02-30T00:00:00Z' }, 'a day that does not exist'],
    [{ extra: 1 }, 'an unknown field'],
  ] as const) {
    const e: Record<string, unknown> = { ...ok, ...patch };
    assert.equal(isWellFormedProducerEvent(e), false, why);
    assert.equal(traceEventSchema.safeParse(e).success, false, why);
  }
});
