/**
 * Pages of the matching entries in seq order within [first, last], one read
 * ahead. Each read covers the seqs (after, upTo] and returns at most `page`
 * rows: when it is full, the next read starts after its last row (keyset);
 * otherwise the next read starts at upTo. For a trace or a session (their own
 * (tenant_id, x, seq) indexes) the window is the whole rest of the range.
 * For an agent or a time range it starts at `page` seqs, doubles while the
 * matches are sparse and halves when a page fills: the sort PostgreSQL may do
 * per page stays bounded even when the planner misjudges the range (fresh
 * tables have no statistics, and a bitmap scan of the rest of the ledger,
 * sorted for each page, made the export quadratic). A read ahead that nobody
 * awaits (the client went away) cannot become an unhandled rejection.
 */
export function pager<T extends { seq: number }>(
  read: (afterSeq: number, upTo: number) => Promise<T[]>,
  range: { first: number; last: number } | undefined,
  page: number,
  adaptive: boolean,
): { next(): Promise<T[]> } {
  const MAX_WINDOW = 1 << 20;
  let after = range ? range.first - 1 : 0;
  let window = adaptive ? page : Infinity;
  const readNext = (): Promise<T[]> | undefined => {
    if (!range || after >= range.last) return undefined;
    const upTo = Math.min(after + window, range.last);
    return read(after, upTo).then((rows) => {
      if (rows.length === page) {
        after = rows[rows.length - 1].seq;
        if (adaptive) window = Math.max(page, window / 2);
      } else {
        after = upTo;
        if (adaptive && rows.length < page / 2) window = Math.min(MAX_WINDOW, window * 2);
      }
      return rows;
    });
  };
  let ahead = readNext();
  ahead?.catch(() => undefined);
  return {
    async next(): Promise<T[]> {
      // Skip empty windows; stop at the end of the range.
      for (;;) {
        if (!ahead) return [];
        const rows = await ahead;
        ahead = readNext();
        ahead?.catch(() => undefined);
        if (rows.length) return rows;
      }
    },
  };
}
