import type { PipeTransform } from '@nestjs/common';
import type { z } from 'zod';
import { ValidationError, type FieldError } from '../common/problem';
import { parseOrThrow } from '../common/validation';
import type { AttributeFilter, EventsQuery, eventsQuerySchema } from './dto/query.dto';

const PREFIX = 'attr.';
const MAX_FILTERS = 8;
const MAX_DEPTH = 8;
const SEGMENT = /^[^.\u0000]{1,128}$/;
const MAX_VALUE = 1024;

/**
 * `attr.args.order_id=A-1009` → `attributes @> {"args":{"order_id":"A-1009"}}`.
 * The value is a string in the URL; it also matches the JSON number, true,
 * false or null it spells, and a string element of an array at that path.
 * Returns the alternatives (any one matches), each served by the GIN index
 * query_events_attributes (jsonb_path_ops).
 */
export function containmentCandidates(f: AttributeFilter): string[] {
  const values: unknown[] = [f.value, [f.value]];
  if (f.value === 'true') values.push(true);
  else if (f.value === 'false') values.push(false);
  else if (f.value === 'null') values.push(null);
  else if (/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(f.value) && Number.isFinite(Number(f.value))) values.push(Number(f.value));
  return values.map((v) => JSON.stringify(f.path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), v)));
}

/** Takes the `attr.*` parameters out of a query object; each bad one is named. */
export function splitAttributeFilters(query: Record<string, unknown>): { rest: Record<string, unknown>; attr: AttributeFilter[] } {
  const rest: Record<string, unknown> = {};
  const attr: AttributeFilter[] = [];
  const errors: FieldError[] = [];
  for (const [key, value] of Object.entries(query)) {
    if (!key.startsWith(PREFIX)) {
      rest[key] = value;
      continue;
    }
    const field = `query.${key}`;
    const path = key.slice(PREFIX.length).split('.');
    if (!path.every((s) => SEGMENT.test(s))) errors.push({ field, message: 'an attribute path: attr.<key>[.<key>…], no empty keys' });
    else if (path.length > MAX_DEPTH) errors.push({ field, message: `at most ${MAX_DEPTH} levels` });
    else if (typeof value !== 'string') errors.push({ field, message: 'give each attribute filter once' });
    else if (value.length > MAX_VALUE || value.includes('\u0000')) errors.push({ field, message: `a value of at most ${MAX_VALUE} characters` });
    else attr.push({ param: key, path, value });
  }
  if (attr.length > MAX_FILTERS) errors.push({ field: 'query.attr', message: `at most ${MAX_FILTERS} attribute filters` });
  if (errors.length) throw new ValidationError(errors);
  return { rest, attr };
}

/** Validates GET /v1/events: the attribute filters, then the other parameters (unknown ones refused). */
export class EventsQueryPipe implements PipeTransform<unknown, EventsQuery> {
  constructor(private readonly schema: typeof eventsQuerySchema) {}

  transform(value: unknown): EventsQuery {
    const { rest, attr } = splitAttributeFilters((value ?? {}) as Record<string, unknown>);
    const parsed: z.infer<typeof eventsQuerySchema> = parseOrThrow(this.schema, rest, 'query');
    return { ...parsed, attr };
  }
}
