import { type PipeTransform } from '@nestjs/common';
import { z } from 'zod';
import { ValidationError, type FieldError } from './problem';

/** `events[3].trace_id` from a zod issue path. */
export function fieldPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || '(body)';
}

export function zodFieldErrors(error: z.ZodError, prefix = ''): FieldError[] {
  return error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') {
      return { field: fieldPath(prefix, [...i.path, ...i.keys.slice(0, 1)]), message: `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}` };
    }
    return { field: fieldPath(prefix, i.path), message: i.message };
  });
}

export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ValidationError(zodFieldErrors(r.error, prefix));
  return r.data;
}

/**
 * Validates a body, query or params object with a zod schema: the same schema
 * gives the TypeScript type, the validation and (via `openApiSchema`) the
 * OpenAPI description.
 */
export class ZodPipe<S extends z.ZodType> implements PipeTransform<unknown, z.infer<S>> {
  constructor(
    private readonly schema: S,
    private readonly prefix = '',
  ) {}

  transform(value: unknown): z.infer<S> {
    return parseOrThrow(this.schema, value ?? {}, this.prefix);
  }
}

/** The OpenAPI 3.0 schema object for a zod schema (zod 4's own converter). */
export function openApiSchema(schema: z.ZodType): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { target: 'openapi-3.0', unrepresentable: 'any', io: 'input' }) as Record<
    string,
    unknown
  >;
  delete json.$schema;
  // zod names schemas that carry .meta({id}) under local "definitions"; OpenAPI resolves
  // refs from the document root, so inline them (our schemas have no cycles).
  const defs = (json.definitions ?? json.$defs ?? {}) as Record<string, unknown>;
  delete json.definitions;
  delete json.$defs;
  const inline = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(inline);
    if (node === null || typeof node !== 'object') return node;
    const { $ref, ...rest } = node as Record<string, unknown>;
    const target = typeof $ref === 'string' ? /^#\/(?:definitions|\$defs)\/(.+)$/.exec($ref)?.[1] : undefined;
    const base = target !== undefined && defs[target] ? inline(defs[target]) : {};
    return { ...(base as object), ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, inline(v)])) };
  };
  return inline(json) as Record<string, unknown>;
}
