import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { PolicyEngine } from './policy-engine';
import type { PolicySet } from './policy-loader';
import type { LedgerEventForPolicy, PolicyEvalError, Violation } from './policy-types';
import { issuesToProblems, parseYaml, problem, type SourceProblem } from './yaml-source';

/**
 * Policy fixtures, in the spirit of `opa test`: small traces written by
 * policy authors, each with the exact violations the loaded set must raise.
 *
 * ```yaml
 * defaults:                      # optional, for every case of the file
 *   agent: support-agent
 * cases:
 *   - name: refund above 100 without approval
 *     defaults: { session_id: conv-1 }   # optional, overrides the file's
 *     events:                    # in ledger order; seq = position, 1..n
 *       - { type: tool.call, name: refund_payment, attributes: { args: { order_id: A-1, amount: 250 } } }
 *     expect:                    # exactly these, no more, no fewer
 *       - { rule: refund-needs-approval, seq: 1 }
 *       - { rule: no-retry-after-block, seq: 3, related: [1] }   # related: optional, then exact
 * ```
 *
 * Omitted event fields get defaults: `id` a UUID from the seq, `trace_id`
 * the default trace (or `defaults.trace_id`), `span_id` the seq in hex,
 * `time` `defaults.start` (2026-11-25T10:00:00Z) plus one second per seq,
 * `agent` and `session_id` from `defaults` (else `test-agent`, none).
 */

export const DEFAULT_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const DEFAULT_START = '2026-11-25T10:00:00.000Z';
const DEFAULT_AGENT = 'test-agent';

const rfc3339 = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'expected an RFC 3339 time');

const defaultsSchema = z.strictObject({
  trace_id: z.string().min(1).optional(),
  session_id: z.string().min(1).optional(),
  agent: z.string().min(1).optional(),
  start: rfc3339.optional(),
});

const fixtureEventSchema = z.strictObject({
  id: z.string().min(1).optional(),
  trace_id: z.string().min(1).optional(),
  span_id: z.string().min(1).optional(),
  parent_span_id: z.string().min(1).nullable().optional(),
  session_id: z.string().min(1).nullable().optional(),
  type: z.string().min(1),
  name: z.string().min(1).nullable().optional(),
  agent: z.string().min(1).nullable().optional(),
  time: rfc3339.optional(),
  duration_ms: z.number().nullable().optional(),
  status: z.string().nullable().optional(),
  attributes: z.record(z.string(), z.unknown()).optional(),
});

const expectationSchema = z.strictObject({
  rule: z.string().min(1),
  seq: z.number().int().min(1),
  related: z.array(z.number().int().min(1)).optional(),
});

const caseSchema = z.strictObject({
  name: z.string().min(1),
  defaults: defaultsSchema.optional(),
  events: z.array(fixtureEventSchema).min(1),
  expect: z.array(expectationSchema).nullable().transform((v) => v ?? []),
});

const fixtureFileSchema = z.strictObject({
  defaults: defaultsSchema.optional(),
  cases: z.array(z.unknown()).min(1),
});

type Defaults = z.infer<typeof defaultsSchema>;

export interface ExpectedViolation {
  readonly rule: string;
  readonly seq: number;
  readonly related?: readonly number[];
}

export interface FixtureCase {
  readonly file: string;
  readonly name: string;
  /** The case's events with every default filled, seq 1..n. */
  readonly events: readonly LedgerEventForPolicy[];
  readonly expect: readonly ExpectedViolation[];
}

export interface FixtureParseResult {
  readonly cases: readonly FixtureCase[];
  readonly problems: readonly SourceProblem[];
}

export function parseFixtureFile(file: string, text: string): FixtureParseResult {
  const yaml = parseYaml(file, text);
  if (!yaml.ok) return { cases: [], problems: yaml.problems };
  const parsed = yaml.parsed;
  const top = fixtureFileSchema.safeParse(parsed.value);
  if (!top.success) return { cases: [], problems: issuesToProblems(top.error.issues, parsed, [], undefined) };
  const cases: FixtureCase[] = [];
  const problems: SourceProblem[] = [];
  top.data.cases.forEach((raw, index) => {
    const result = caseSchema.safeParse(raw);
    if (!result.success) {
      problems.push(...issuesToProblems(result.error.issues, parsed, ['cases', index], undefined));
      return;
    }
    const c = result.data;
    const defaults = { ...top.data.defaults, ...c.defaults };
    c.expect.forEach((e, i) => {
      if (e.seq > c.events.length || (e.related ?? []).some((s) => s > c.events.length)) {
        const at = parsed.positionOf(['cases', index, 'expect', i]);
        problems.push(problem(file, undefined, at, `case "${c.name}": expects a seq beyond its ${c.events.length} events`));
      }
    });
    cases.push({
      file,
      name: c.name,
      events: c.events.map((e, i) => withDefaults(e, i + 1, defaults)),
      expect: c.expect,
    });
  });
  return { cases, problems };
}

function withDefaults(e: z.infer<typeof fixtureEventSchema>, seq: number, d: Defaults): LedgerEventForPolicy {
  const start = Date.parse(d.start ?? DEFAULT_START);
  const sessionId = e.session_id === undefined ? d.session_id : e.session_id;
  return {
    seq,
    id: e.id ?? `00000000-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`,
    trace_id: e.trace_id ?? d.trace_id ?? DEFAULT_TRACE_ID,
    span_id: e.span_id ?? seq.toString(16).padStart(16, '0'),
    parent_span_id: e.parent_span_id ?? null,
    ...(sessionId == null ? {} : { session_id: sessionId }),
    type: e.type,
    ...(e.name == null ? {} : { name: e.name }),
    agent: e.agent === undefined ? (d.agent ?? DEFAULT_AGENT) : e.agent,
    time: e.time ?? new Date(start + (seq - 1) * 1000).toISOString(),
    ...(e.duration_ms == null ? {} : { duration_ms: e.duration_ms }),
    status: e.status ?? 'ok',
    attributes: e.attributes ?? {},
  };
}

/** Reads `*.yaml`/`*.yml` directly in `dir`, in name order. */
export async function loadFixturesFromDir(dir: string): Promise<FixtureParseResult> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && /\.ya?ml$/i.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    return { cases: [], problems: [{ file: dir, message: `cannot read the fixtures folder: ${String(err)}` }] };
  }
  const results = await Promise.all(
    names.map(async (name) => parseFixtureFile(join(dir, name), await readFile(join(dir, name), 'utf8'))),
  );
  return { cases: results.flatMap((r) => r.cases), problems: results.flatMap((r) => r.problems) };
}

export interface FixtureResult {
  readonly file: string;
  readonly name: string;
  readonly passed: boolean;
  /** Expected, not raised. */
  readonly missing: readonly ExpectedViolation[];
  /** Raised, not expected (or raised with other related seqs than expected). */
  readonly unexpected: readonly Violation[];
  /** Expectations naming a rule the set does not have. */
  readonly unknownRules: readonly string[];
  /** CEL run-time errors during the case (informational: they count as no match). */
  readonly celErrors: readonly PolicyEvalError[];
}

/** Runs one case on a fresh engine and compares exactly. */
export function runFixtureCase(set: PolicySet, fixture: FixtureCase): FixtureResult {
  const engine = new PolicyEngine(set);
  const raised = fixture.events.flatMap((e) => engine.evaluate(e));
  const ruleIds = new Set(set.rules.map((r) => r.id));
  const unknownRules = [...new Set(fixture.expect.map((e) => e.rule).filter((id) => !ruleIds.has(id)))];
  const unmatched = [...raised];
  const missing: ExpectedViolation[] = [];
  for (const expected of fixture.expect) {
    if (!ruleIds.has(expected.rule)) continue;
    const i = unmatched.findIndex((v) => satisfiesExpectation(v, expected));
    if (i < 0) missing.push(expected);
    else unmatched.splice(i, 1);
  }
  return {
    file: fixture.file,
    name: fixture.name,
    passed: missing.length === 0 && unmatched.length === 0 && unknownRules.length === 0,
    missing,
    unexpected: unmatched,
    unknownRules,
    celErrors: engine.takeErrors(),
  };
}

function satisfiesExpectation(v: Violation, e: ExpectedViolation): boolean {
  if (v.ruleId !== e.rule || v.seq !== e.seq) return false;
  return e.related === undefined || sameList(v.relatedSeqs, e.related);
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** `PASS file › name` or `FAIL file › name: missing …; unexpected …`. */
export function formatFixtureResult(r: FixtureResult): string {
  const head = `${r.passed ? 'PASS' : 'FAIL'} ${r.file} › ${r.name}`;
  if (r.passed) return head;
  const parts: string[] = [];
  if (r.unknownRules.length > 0) parts.push(`unknown rule ${r.unknownRules.join(', ')}`);
  if (r.missing.length > 0) parts.push(`missing ${r.missing.map(formatExpected).join(', ')}`);
  if (r.unexpected.length > 0) parts.push(`unexpected ${r.unexpected.map(formatRaised).join(', ')}`);
  return `${head}: ${parts.join('; ')}`;
}

function formatExpected(e: ExpectedViolation): string {
  return `${e.rule}@${e.seq}${e.related === undefined ? '' : ` (related ${e.related.join(',') || 'none'})`}`;
}

function formatRaised(v: Violation): string {
  return `${v.ruleId}@${v.seq}${v.relatedSeqs.length === 0 ? '' : ` (related ${v.relatedSeqs.join(',')})`}`;
}
