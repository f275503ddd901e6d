import { Environment, type ParseResult } from '@marcbachmann/cel-js';
import type { LedgerEventForPolicy } from './policy-types';

/**
 * The CEL side of policies: two environments (a rule's `match.when` sees
 * `event`; its `prior.when` sees `event` and `prior`), compile-once
 * expressions, and the conversion of JSON events into CEL values.
 *
 * Numbers. cel-js represents CEL `int` as bigint and `double` as number, and
 * a plain JS number inside a map is a `double`. So that
 * `event.attributes.args.amount > 100` and `amount + 1` behave as a CEL
 * author expects, every JSON number that is a safe integer becomes an `int`
 * (bigint) and every other number a `double`. Comparisons and equality
 * between int and double work (`250.5 > 100`, `250 == 250.0`); arithmetic
 * across them does not (CEL has no implicit conversion): write
 * `double(event.attributes.args.amount) * 1.5`.
 *
 * Missing keys. `event.attributes.x` on an event without `x` is a runtime
 * error in CEL; the engine counts it as "no match" and reports it. Authors
 * can avoid it with `has(event.attributes.x)` or optional chaining
 * (`event.attributes.?x.orValue("")`), which is enabled here.
 */

const ENV_OPTIONS = { homogeneousAggregateLiterals: false, enableOptionalTypes: true };

/** Environments are costly to build: one of each, for the process. */
const ENVIRONMENTS = {
  event: new Environment(ENV_OPTIONS).registerVariable('event', 'map'),
  'event+prior': new Environment(ENV_OPTIONS)
    .registerVariable('event', 'map')
    .registerVariable('prior', 'map'),
} as const;

export type CelVariables = keyof typeof ENVIRONMENTS;

/** A JSON value converted for CEL: integers are bigint, objects are Maps. */
export type CelValue = bigint | number | string | boolean | null | CelValue[] | CelMap;
export type CelMap = ReadonlyMap<string, CelValue>;

export type CelOutcome = { readonly ok: true; readonly value: boolean } | { readonly ok: false; readonly error: string };

/** A `when` expression compiled once at load and evaluated many times. */
export interface CompiledCel {
  readonly source: string;
  evaluate(context: { readonly event: CelMap; readonly prior?: CelMap }): CelOutcome;
}

export type CelCompileResult =
  | { readonly ok: true; readonly expr: CompiledCel }
  /** `offset`: character index in the expression where the problem is, when known. */
  | { readonly ok: false; readonly message: string; readonly offset?: number };

/**
 * Parses and type-checks `source` against the variables it may use. An
 * expression that references an unknown variable (`prior` in a match), does
 * not parse, or cannot yield a bool is refused here, at load, not at run time.
 */
export function compileCel(source: string, variables: CelVariables): CelCompileResult {
  let parsed: ParseResult;
  try {
    parsed = ENVIRONMENTS[variables].parse(source);
  } catch (err) {
    return compileFailure(err);
  }
  const checked = parsed.check();
  if (!checked.valid) return compileFailure(checked.error);
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return { ok: false, message: `expression must be a bool, it is a ${checked.type ?? 'unknown type'}` };
  }
  return { ok: true, expr: { source, evaluate: (context) => run(parsed, context) } };
}

function run(parsed: ParseResult, context: { readonly event: CelMap; readonly prior?: CelMap }): CelOutcome {
  try {
    const value: unknown = parsed(context);
    if (typeof value === 'boolean') return { ok: true, value };
    return { ok: false, error: `expression yielded ${describe(value)}, not a bool` };
  } catch (err) {
    return { ok: false, error: errorSummary(err) };
  }
}

function compileFailure(err: unknown): { ok: false; message: string; offset?: number } {
  const offset = errorOffset(err);
  return offset === undefined
    ? { ok: false, message: errorSummary(err) }
    : { ok: false, message: errorSummary(err), offset };
}

/** The one-line summary cel-js errors carry (their `message` spans lines). */
function errorSummary(err: unknown): string {
  if (err instanceof Error) {
    const summary: unknown = (err as { summary?: unknown }).summary;
    if (typeof summary === 'string' && summary !== '') return summary;
    return err.message.split('\n')[0] ?? err.message;
  }
  return String(err);
}

function errorOffset(err: unknown): number | undefined {
  const range: unknown = (err as { range?: { start?: unknown } } | null)?.range;
  const start = (range as { start?: unknown } | undefined)?.start;
  return typeof start === 'number' ? start : undefined;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'bigint') return `the int ${value}`;
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'number') return `the double ${value}`;
  return `a ${typeof value}`;
}

/** Converts any JSON-like value for CEL (see the note on numbers above). */
export function toCelValue(value: unknown): CelValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'boolean' || typeof value === 'bigint') return value;
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(toCelValue);
  if (typeof value === 'object') return toCelMap(value as Record<string, unknown>);
  return null;
}

/**
 * JSON objects become Maps, not plain objects: cel-js types a plain object
 * by its `constructor` property, so an agent's attribute named
 * `constructor` would make the whole object unusable; with a Map every key
 * (`constructor`, `__proto__`) is plain data.
 */
function toCelMap(obj: Readonly<Record<string, unknown>>): CelMap {
  const out = new Map<string, CelValue>();
  for (const [key, v] of Object.entries(obj)) {
    if (v !== undefined) out.set(key, toCelValue(v));
  }
  return out;
}

/**
 * The `event`/`prior` variable: every DESIGN.md §2 field (absent optional
 * fields as null, `attributes` as an empty map when absent) plus `seq`.
 */
export function toCelEvent(event: LedgerEventForPolicy): CelMap {
  return toCelMap({
    id: event.id,
    trace_id: event.trace_id,
    span_id: event.span_id,
    parent_span_id: event.parent_span_id ?? null,
    session_id: event.session_id ?? null,
    type: event.type,
    name: event.name ?? null,
    agent: event.agent ?? null,
    time: event.time,
    duration_ms: event.duration_ms ?? null,
    status: event.status ?? null,
    attributes: event.attributes ?? {},
    seq: event.seq,
  });
}
