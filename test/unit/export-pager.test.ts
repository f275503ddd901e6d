import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { pager } from '../../src/export/pager';

/** A ledger of `size` seqs where `matches` says which ones the filter selects; reads as the repository does. */
function ledger(matching: number[]) {
  const reads: { after: number; upTo: number; returned: number }[] = [];
  const read = async (after: number, upTo: number, limit: number) => {
    const rows = matching.filter((s) => s > after && s <= upTo).slice(0, limit).map((seq) => ({ seq }));
    reads.push({ after, upTo, returned: rows.length });
    return rows;
  };
  return { read, reads };
}

async function drain(p: { next(): Promise<{ seq: number }[]> }, page: number): Promise<number[]> {
  const out: number[] = [];
  for (let rows = await p.next(); rows.length; rows = await p.next()) {
    assert.ok(rows.length <= page, 'a page never holds more than the page size');
    out.push(...rows.map((r) => r.seq));
  }
  return out;
}

test('pager returns every matching seq in the range once, in order, whatever the density and window', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3000 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 1, max: 50 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 2 ** 31 }),
      async (size, density, page, adaptive, seed) => {
        let x = seed;
        const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
        const matching = Array.from({ length: size }, (_, i) => i + 1).filter(() => rand() < density);
        const { read, reads } = ledger(matching);
        const range = matching.length ? { first: matching[0], last: matching[matching.length - 1] } : undefined;
        const got = await drain(pager((a, u) => read(a, u, page), range, page, adaptive), page);
        assert.deepEqual(got, matching);
        for (const r of reads) assert.ok(r.after < r.upTo && r.after >= (range?.first ?? 1) - 1 && r.upTo <= range!.last);
      },
    ),
    { numRuns: 300 },
  );
});

test('pager: the adaptive window grows over sparse stretches and shrinks when a page fills', async () => {
  // 100 matches at the start, none for 100k seqs, then 100 more
  const matching = [...Array.from({ length: 100 }, (_, i) => i + 1), ...Array.from({ length: 100 }, (_, i) => 100_001 + i)];
  const { read, reads } = ledger(matching);
  const got = await drain(pager((a, u) => read(a, u, 10), { first: 1, last: 100_100 }, 10, true), 10);
  assert.deepEqual(got, matching);
  assert.ok(reads.length < 80, `the sparse stretch took ${reads.length} reads, not one per window of 10`);
  assert.ok(Math.max(...reads.map((r) => r.upTo - r.after)) > 1000, 'the window grew');
});

test('pager: a trace or session (not adaptive) reads the whole rest of the range by keyset; no range, no reads', async () => {
  const matching = [5, 9, 400, 401, 402, 9000];
  const { read, reads } = ledger(matching);
  assert.deepEqual(await drain(pager((a, u) => read(a, u, 2), { first: 5, last: 9000 }, 2, false), 2), matching);
  assert.ok(reads.every((r) => r.upTo === 9000));
  const none = ledger([]);
  assert.deepEqual(await drain(pager((a, u) => none.read(a, u, 2), undefined, 2, true), 2), []);
  assert.equal(none.reads.length, 0);
});

test('pager: a failed read surfaces at next(), and a read ahead nobody awaits does not become an unhandled rejection', async () => {
  let n = 0;
  const p = pager(
    async (after) => {
      if (n++ > 0) throw new Error('connection lost');
      return Array.from({ length: 2 }, (_, i) => ({ seq: after + i + 1 }));
    },
    { first: 1, last: 100 },
    2,
    true,
    3,
  );
  assert.deepEqual((await p.next()).map((r) => r.seq), [1, 2]);
  await assert.rejects(p.next(), /connection lost/);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(n, 2, 'no read starts after one failed');
});

test('pager: reads run one at a time, start before the pages are consumed, and hold at most `depth` pages ahead', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 20 }), async (size, depth, page) => {
      const matching = Array.from({ length: size }, (_, i) => i + 1);
      let inFlight = 0;
      let reads = 0;
      let consumed = 0;
      const read = async (after: number, upTo: number) => {
        assert.equal(inFlight, 0, 'a read started before the one before it returned');
        inFlight++;
        await new Promise((r) => setImmediate(r));
        inFlight--;
        reads++;
        assert.ok(reads - consumed <= depth + 1, `${reads} reads for ${consumed} pages consumed, depth ${depth}`);
        return matching.filter((s) => s > after && s <= upTo).slice(0, page).map((seq) => ({ seq }));
      };
      const p = pager(read, { first: 1, last: size }, page, true, depth);
      // the consumer is slow: by the time it asks, the reads ahead are done
      for (let i = 0; i < 3 * depth + 3; i++) await new Promise((r) => setImmediate(r));
      const expectedAhead = Math.min(depth, Math.ceil(size / page));
      assert.equal(reads, expectedAhead, 'the pages ahead are read before the first is asked for');
      const got: number[] = [];
      for (let rows = await p.next(); rows.length; rows = await p.next()) {
        consumed++;
        got.push(...rows.map((r) => r.seq));
      }
      assert.deepEqual(got, matching);
    }),
    { numRuns: 100 },
  );
});
