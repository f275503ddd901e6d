import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Semaphore } from '../../src/common/semaphore';

function gate(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

test('Semaphore: at most `limit` holders, the others run in arrival order, a failure frees its slot', async () => {
  const s = new Semaphore(2);
  let holding = 0;
  let most = 0;
  const order: number[] = [];
  const gates = Array.from({ length: 6 }, gate);
  const runs = gates.map((g, i) =>
    s.run(async () => {
      order.push(i);
      most = Math.max(most, ++holding);
      await g.promise;
      holding--;
      if (i === 1) throw new Error('boom');
      return i;
    }),
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [0, 1], 'two run, four wait');
  gates[1].resolve();
  await assert.rejects(runs[1], /boom/);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [0, 1, 2], 'the failed holder handed its slot to the first waiter');
  for (const g of gates) g.resolve();
  assert.deepEqual(await Promise.allSettled(runs).then((r) => r.map((x) => (x.status === 'fulfilled' ? x.value : 'failed'))), [0, 'failed', 2, 3, 4, 5]);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  assert.equal(most, 2);
  // all slots free again: two run at once
  const again = gate();
  let inside = 0;
  const two = [s.run(async () => { inside++; await again.promise; }), s.run(async () => { inside++; await again.promise; })];
  await new Promise((r) => setImmediate(r));
  assert.equal(inside, 2);
  again.resolve();
  await Promise.all(two);
  assert.throws(() => new Semaphore(0), RangeError);
});
