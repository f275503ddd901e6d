import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCel, toCelValue, type CelMap } from '../../src/core/policy/cel';

function evalEvent(source: string, event: unknown): boolean | string {
  const compiled = compileCel(source, 'event');
  assert.ok(compiled.ok, source);
  const outcome = compiled.expr.evaluate({ event: toCelValue(event) as CelMap });
  return outcome.ok ? outcome.value : `error: ${outcome.error}`;
}

describe('CEL values from JSON', () => {
  test('safe integers become int, other numbers double', () => {
    assert.equal(toCelValue(250), 250n);
    assert.equal(toCelValue(-3), -3n);
    assert.equal(toCelValue(250.5), 250.5);
    assert.equal(toCelValue(2 ** 60), 2 ** 60);
    assert.deepEqual(toCelValue([1, 'a', null, true]), [1n, 'a', null, true]);
    assert.deepEqual(toCelValue({ a: { b: 1 } }), new Map([['a', new Map([['b', 1n]])]]));
  });

  test('comparisons across int and double, and int arithmetic', () => {
    const amount = (v: number) => ({ attributes: { args: { amount: v } } });
    assert.equal(evalEvent('event.attributes.args.amount > 100', amount(250)), true);
    assert.equal(evalEvent('event.attributes.args.amount > 100', amount(250.5)), true);
    assert.equal(evalEvent('event.attributes.args.amount > 100', amount(100)), false);
    assert.equal(evalEvent('event.attributes.args.amount > 100.0', amount(101)), true);
    assert.equal(evalEvent('event.attributes.args.amount == 250', amount(250)), true);
    assert.equal(evalEvent('event.attributes.args.amount + 1 == 251', amount(250)), true);
    assert.equal(evalEvent('double(event.attributes.args.amount) * 1.5 > 300.0', amount(250)), true);
  });

  test('run-time errors are outcomes, not exceptions', () => {
    assert.match(String(evalEvent('event.attributes.args.amount > 100', { attributes: {} })), /^error: No such key: args/);
    assert.match(String(evalEvent('event.x > 1', { x: 'a' })), /^error: no such overload/);
    assert.match(String(evalEvent('event.x', { x: 3 })), /^error: expression yielded the int 3, not a bool/);
  });
});

describe('compiling', () => {
  test('match expressions see only event; prior expressions see both', () => {
    assert.equal(compileCel('event.a == 1', 'event').ok, true);
    assert.equal(compileCel('prior.a == event.a', 'event').ok, false);
    assert.equal(compileCel('prior.a == event.a', 'event+prior').ok, true);
  });

  test('failures carry a message and the offset in the expression', () => {
    const r = compileCel('event.a ==', 'event');
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.message.length > 0 && r.offset === 10);
    const typed = compileCel('1 + "a" == 2', 'event');
    assert.ok(!typed.ok && /no such overload/.test(typed.message));
    const notBool = compileCel('"text"', 'event');
    assert.ok(!notBool.ok && /must be a bool, it is a string/.test(notBool.message));
  });
});
