import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { JsonScanError, TopLevelScanner, type MemberMode, type ScanEvent } from '../../src/core/json-members';

/** Feeds `text` in chunks of the given sizes (cycled) and rebuilds the object from the events. */
function rebuild(text: string, sizes: number[], modeOf: (key: string) => MemberMode = () => 'elements'): { value: Record<string, unknown>; events: ScanEvent[] } {
  const bytes = Buffer.from(text, 'utf8');
  const scanner = new TopLevelScanner(modeOf);
  const events: ScanEvent[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]);
    events.push(...scanner.write(bytes.subarray(at, at + n)));
    at += n;
  }
  events.push(...scanner.end());
  const value: Record<string, unknown> = {};
  // defined, not assigned: a member may be named "__proto__", which JSON.parse keeps as an own member
  const set = (key: string, v: unknown) => Object.defineProperty(value, key, { value: v, enumerable: true, writable: true, configurable: true });
  for (const ev of events) {
    if (ev.kind === 'array') set(ev.key, []);
    else if (ev.kind === 'element') (value[ev.key] as unknown[]).push(JSON.parse(ev.text));
    else if (ev.kind === 'value') set(ev.key, JSON.parse(ev.text));
    else if (ev.kind === 'skipped') set(ev.key, ev.array ? '<skipped array>' : '<skipped>');
  }
  return { value, events };
}

/** JSON text of `v` with arbitrary whitespace between tokens (JSON.stringify's, re-spaced outside strings). */
function respace(v: unknown, spaces: string[]): string {
  let i = 0;
  const ws = () => spaces[i++ % spaces.length];
  const out = (x: unknown): string => {
    if (Array.isArray(x)) return `[${ws()}${x.map((e) => out(e)).join(`${ws()},${ws()}`)}${ws()}]`;
    if (x !== null && typeof x === 'object') {
      const parts = Object.entries(x).map(([k, e]) => `${JSON.stringify(k)}${ws()}:${ws()}${out(e)}`);
      return `{${ws()}${parts.join(`${ws()},${ws()}`)}${ws()}}`;
    }
    return JSON.stringify(x);
  };
  return out(v);
}

describe('TopLevelScanner', () => {
  test('splits any object into members and array elements, whatever the chunking and whitespace', () => {
    const tricky = fc.oneof(fc.string(), fc.constantFrom('\\', '"', '\\"', '\\\\', '"]}', '[{', '\u2028', '😀', 'é\u0000', '__proto__'));
    const json = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, tricky, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), tie('array'), tie('object')),
      array: fc.array(tie('value'), { maxLength: 4 }),
      object: fc.dictionary(tricky, tie('value'), { maxKeys: 4 }),
    }));
    fc.assert(
      fc.property(
        fc.dictionary(tricky, json.value, { maxKeys: 6 }),
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.constantFrom('', ' ', '\n', '\r\n', '\t', '  \n '), { minLength: 1, maxLength: 4 }),
        (obj, sizes, spaces) => {
          const text = respace(obj, spaces);
          assert.deepEqual(rebuild(text, sizes).value, JSON.parse(text));
        },
      ),
      { numRuns: 300 },
    );
  });

  test('skipped members are passed over, arrays or not, and their elements are not given', () => {
    const text = '{"a":[1,{"x":"]"},"\\"["],"b":{"c":[1]},"d":"s","e":[]}';
    const { value, events } = rebuild(text, [3], (k) => (k === 'b' || k === 'a' ? 'skip' : 'elements'));
    assert.deepEqual(value, { a: '<skipped array>', b: '<skipped>', d: 's', e: [] });
    assert.ok(!events.some((e) => e.kind === 'element'));
    assert.deepEqual(events.filter((e) => e.kind === 'end-array'), [{ kind: 'end-array', key: 'e', count: 0 }]);
  });

  test('element offsets are byte offsets in the document', () => {
    const text = '{"é":["😀", {"k": 1}]}';
    const { events } = rebuild(text, [2]);
    const bytes = Buffer.from(text);
    for (const ev of events) {
      if (ev.kind === 'element') assert.equal(bytes.toString('utf8', ev.offset, ev.offset + Buffer.byteLength(ev.text)), ev.text);
    }
  });

  test('bounds mode gives each element\'s byte range, whatever the chunking', () => {
    const text = '{"a":1,"é":[ "😀" , {"k":[1,"]"]},-2.5e3,null ,[] ],"z":[]}';
    const bytes = Buffer.from(text);
    for (const size of [1, 2, 3, 7, 100]) {
      const { events } = rebuild(text, [size], (k) => (k === 'é' || k === 'z' ? 'bounds' : 'elements'));
      const ranges = events.flatMap((e) => (e.kind === 'bounds' ? [JSON.parse(bytes.toString('utf8', e.start, e.end)) as unknown] : []));
      assert.deepEqual(ranges, ['😀', { k: [1, ']'] }, -2500, null, []]);
      assert.deepEqual(events.filter((e) => e.kind === 'end-array').map((e) => e.kind === 'end-array' && [e.key, e.count]), [['é', 5], ['z', 0]]);
      assert.ok(!events.some((e) => e.kind === 'element'));
    }
  });

  test('every strict prefix of a document is refused at its end (truncated), never read as complete', () => {
    const text = '{"format":"x","entries":[{"a":"b\\"c"},[1,2],3,"\\\\"],"z":{"y":null}}';
    for (let cut = 0; cut < text.length; cut++) {
      assert.throws(() => rebuild(text.slice(0, cut), [5]), JsonScanError, `prefix of ${cut} bytes`);
    }
    assert.doesNotThrow(() => rebuild(`${text} \n`, [5]));
  });

  test('malformed structure is refused with its byte offset', () => {
    const cases: [string, RegExp][] = [
      ['[1]', /expected the top-level JSON object.*byte 0/],
      ['{"a":1,}', /expected a member name.*byte 7/],
      ['{"a" 1}', /expected ":" after "a"/],
      ['{"a":[1,]}', /expected a value in "a"/],
      ['{"a":[1 2]}', /expected "," or "\]" after element 0 of "a"/],
      ['{"a":1 "b":2}', /expected "," or "}" after the value of "a"/],
      ['{"a":1}x', /expected nothing after the top-level object/],
      ['', /the document is empty/],
      ['{"entries":[{"seq":1},{"seq"', /ends inside "entries" \(after 1 complete element\): truncated/],
    ];
    for (const [text, message] of cases) assert.throws(() => rebuild(text, [4]), message, text);
  });
});
