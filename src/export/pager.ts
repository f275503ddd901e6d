/**
 * Pages of the matching entries in seq order within [first, last], `depth`
 * pages read ahead. Each read covers the seqs (after, upTo] and returns at
 * most `page` rows: when it is full, the next read starts after its last row
 * (keyset); otherwise the next read starts at upTo. Reads therefore run one
 * after the other, each started as soon as the one before it has returned
 * (not when its page is consumed), while at most `depth` pages wait for the
 * consumer. For a trace or a session (their own (tenant_id, x, seq) indexes)
 * the window is the whole rest of the range. For an agent or a time range it
 * starts at `page` seqs, doubles while the matches are sparse and halves when
 * a page fills: the sort PostgreSQL may do per page stays bounded even when
 * the planner misjudges the range (fresh tables have no statistics, and a
 * bitmap scan of the rest of the ledger, sorted for each page, made the
 * export quadratic). A read ahead that nobody awaits (the client went away)
 * cannot become an unhandled rejection, and no read starts after one failed.
 */
export function pager<T extends { seq: number }>(
  read: (afterSeq: number, upTo: number) => Promise<T[]>,
  range: { first: number; last: number } | undefined,
  page: number,
  adaptive: boolean,
  depth = 1,
): { next(): Promise<T[]> } {
  const MAX_WINDOW = 1 << 20;
  let after = range ? range.first - 1 : 0;
  let window = adaptive ? page : Infinity;
  let failed = false;
  /** Settles once the last read started has moved `after` on (or failed). */
  let previous: Promise<unknown> = Promise.resolve();
  const readNext = (): Promise<T[] | undefined> => {
    const p = previous.then(() => {
      if (failed || !range || after >= range.last) return undefined;
      const upTo = Math.min(after + window, range.last);
      return read(after, upTo).then(
        (rows) => {
          if (rows.length === page) {
            after = rows[rows.length - 1].seq;
            if (adaptive) window = Math.max(page, window / 2);
          } else {
            after = upTo;
            if (adaptive && rows.length < page / 2) window = Math.min(MAX_WINDOW, window * 2);
          }
          return rows;
        },
        (err: unknown) => {
          failed = true;
          throw err;
        },
      );
    });
    previous = p.catch(() => undefined);
    return p;
  };
  const ahead: Promise<T[] | undefined>[] = [];
  for (let i = 0; i < Math.max(1, depth); i++) ahead.push(readNext());
  return {
    async next(): Promise<T[]> {
      // Skip empty windows; stop at the end of the range.
      for (;;) {
        const rows = await ahead.shift()!;
        ahead.push(readNext());
        if (rows === undefined) return [];
        if (rows.length) return rows;
      }
    },
  };
}
