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
  return json;
}
