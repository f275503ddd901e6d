import { applyDecorators } from '@nestjs/common';
import { ApiBody, ApiQuery, ApiResponse } from '@nestjs/swagger';
import type { z } from 'zod';
import { openApiSchema } from './validation';

/** Documents a zod body schema in OpenAPI. */
export const ZodBody = (schema: z.ZodType) => ApiBody({ schema: openApiSchema(schema) });

/** Documents each property of a zod object query schema as a query parameter. */
export function ZodQuery(schema: z.ZodObject) {
  const json = openApiSchema(schema) as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  return applyDecorators(
    ...Object.entries(json.properties ?? {}).map(([name, s]) =>
      ApiQuery({ name, required: json.required?.includes(name) ?? false, schema: s }),
    ),
  );
}

/** Documents a zod response schema for a status. */
export const ZodResponse = (status: number, schema: z.ZodType, description = '') =>
  ApiResponse({ status, description, schema: openApiSchema(schema) });
