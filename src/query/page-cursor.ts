import { ValidationError } from '../common/problem';

/**
 * Keyset cursors: the last key of a page, its list and its order, as
 * base64url JSON. A key never changes once written (a seq; a run's first
 * seq), so pages stay stable while entries are appended.
 */
export type CursorKind = 'events' | 'traces';

export function encodeCursor(kind: CursorKind, order: 'asc' | 'desc', key: number): string {
  return Buffer.from(JSON.stringify({ k: kind, o: order, s: key })).toString('base64url');
}

export function decodeCursor(kind: CursorKind, order: 'asc' | 'desc', cursor: string): number {
  let parsed: { k?: unknown; o?: unknown; s?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    throw bad('not a cursor of this API');
  }
  if (parsed?.k !== kind) throw bad(`not a cursor of the ${kind} list`);
  if (parsed.o !== order) throw bad(`the cursor was made for order=${String(parsed.o)}`);
  if (typeof parsed.s !== 'number' || !Number.isSafeInteger(parsed.s) || parsed.s < 0) throw bad('not a cursor of this API');
  return parsed.s;
}

function bad(message: string): ValidationError {
  return new ValidationError([{ field: 'query.cursor', message }]);
}
