import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ValidationError } from '../../src/common/problem';
import { containmentCandidates, splitAttributeFilters } from '../../src/query/attribute-filter';
import { csvCell, csvLine } from '../../src/query/csv';
import { decodeCursor, encodeCursor } from '../../src/query/page-cursor';
import { buildTree, runStatus, type TreeInputEvent } from '../../src/query/trace-tree';

describe('query: pure parts', () => {
  test('CSV cells: RFC 4180 quoting, formulas neutralised, numbers as numbers', () => {
    assert.equal(csvCell(null), '');
    assert.equal(csvCell(12.5), '12.5');
    assert.equal(csvCell('plain'), 'plain');
    assert.equal(csvCell('a,b'), '"a,b"');
    assert.equal(csvCell('say "hi"'), '"say ""hi"""');
    assert.equal(csvCell('two\nlines'), '"two\nlines"');
    assert.equal(csvCell('=HYPERLINK("x")'), `"'=HYPERLINK(""x"")"`);
    assert.equal(csvCell('-1'), "'-1");
    assert.equal(csvCell({ a: [1, 'x'] }), '"{""a"":[1,""x""]}"');
    assert.equal(csvLine(['a', 1, null]), 'a,1,\r\n');
  });

  test('attribute filters: containment documents for the string and the value it spells', () => {
    const f = (path: string[], value: string) => containmentCandidates({ param: `attr.${path.join('.')}`, path, value });
    assert.deepEqual(f(['args', 'order_id'], 'A-1009'), ['{"args":{"order_id":"A-1009"}}', '{"args":{"order_id":["A-1009"]}}']);
    assert.deepEqual(f(['amount'], '250'), ['{"amount":"250"}', '{"amount":["250"]}', '{"amount":250}']);
    assert.deepEqual(f(['ok'], 'true'), ['{"ok":"true"}', '{"ok":["true"]}', '{"ok":true}']);
    assert.deepEqual(f(['x'], 'null'), ['{"x":"null"}', '{"x":["null"]}', '{"x":null}']);
    assert.equal(f(['zip'], '01234').length, 2, 'a leading zero is not a JSON number');
    assert.equal(f(['big'], '1e999').length, 2, 'not a finite number');
  });

  test('attribute filters: split from the other parameters, bad ones named', () => {
    const { rest, attr } = splitAttributeFilters({ agent: 'a', 'attr.args.order_id': 'A-1' });
    assert.deepEqual(rest, { agent: 'a' });
    assert.deepEqual(attr, [{ param: 'attr.args.order_id', path: ['args', 'order_id'], value: 'A-1' }]);
    const fields = (q: Record<string, unknown>) => {
      try {
        splitAttributeFilters(q);
        return [];
      } catch (e) {
        assert.ok(e instanceof ValidationError);
        return e.errors!.map((x) => x.field);
      }
    };
    assert.deepEqual(fields({ 'attr.': '1' }), ['query.attr.']);
    assert.deepEqual(fields({ 'attr.a..b': '1' }), ['query.attr.a..b']);
    assert.deepEqual(fields({ 'attr.a': ['1', '2'] }), ['query.attr.a']);
    assert.deepEqual(fields({ [`attr.${Array(9).fill('k').join('.')}`]: '1' }), [`query.attr.${Array(9).fill('k').join('.')}`]);
    assert.deepEqual(fields(Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`attr.k${i}`, 'v']))), ['query.attr']);
  });

  test('cursors: round trip; another list or order is refused', () => {
    const c = encodeCursor('events', 'desc', 4711);
    assert.equal(decodeCursor('events', 'desc', c), 4711);
    assert.throws(() => decodeCursor('events', 'asc', c), ValidationError);
    assert.throws(() => decodeCursor('traces', 'desc', c), ValidationError);
    assert.throws(() => decodeCursor('events', 'desc', Buffer.from('{"k":"events","o":"desc","s":-1}').toString('base64url')), ValidationError);
    assert.throws(() => decodeCursor('events', 'desc', 'garbage'), ValidationError);
  });

  test('tree: a span that is its own parent is an orphan; run status from the newest run event', () => {
    const e = (seq: number, span: string, parent: string | null, type = 'tool.call'): TreeInputEvent => ({
      seq, id: `id-${seq}`, span_id: span, parent_span_id: parent, session_id: null, type, name: null, agent: 'a',
      time: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), duration_ms: null, status: null, attributes: {},
    });
    const tree = buildTree('t', [e(1, 'r', null, 'run.started'), e(2, 's', 's'), e(3, 'c', 'r'), e(4, 'r', null, 'run.failed')], []);
    assert.deepEqual(tree.spans.map((s) => [s.span_id, s.orphan]), [['r', false], ['s', true]]);
    assert.equal(tree.status, 'failed');
    assert.equal(tree.spans[0].duration_ms, 3000);
    assert.equal(runStatus([{ type: 'run.failed' }, { type: 'run.resumed' }]), 'running');
    assert.equal(runStatus([{ type: 'tool.call' }]), 'unknown');
  });
});
