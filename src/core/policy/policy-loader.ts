import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import canonicalize from 'canonicalize';
import { compileCel, type CelVariables, type CompiledCel } from './cel';
import { formatDuration, parseDuration } from './duration';
import { policyFileSchema, ruleSchema, type MatcherInput, type PriorInput, type RuleInput } from './policy-schema';
import type { NormalizedMatcher, NormalizedPrior, NormalizedRule, RuleKind, Scope, Severity } from './policy-types';
import {
  formatProblem,
  issuesToProblems,
  parseYaml,
  problem,
  type ParsedYaml,
  type PathSegment,
  type Position,
  type SourceProblem,
} from './yaml-source';

/**
 * Loading a policy set: parse every file, validate every rule, compile every
 * CEL expression once, and either return a complete set or throw one
 * `PolicyLoadError` that lists every problem (file, rule id, line:column).
 * A set is all or nothing, so the caller can keep the set already in force.
 */

export interface PolicySource {
  /** Shown in problems and in `PolicySet.files`, e.g. `policies/support-agent.yaml`. */
  readonly file: string;
  readonly text: string;
}

export type PolicyProblem = SourceProblem;

export class PolicyLoadError extends Error {
  override readonly name = 'PolicyLoadError';
  constructor(readonly problems: readonly PolicyProblem[]) {
    super(
      `policy set refused, ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n` +
        problems.map((p) => `  ${formatProblem(p)}`).join('\n'),
    );
  }
}

/** A matcher ready for evaluation: filters as sets, `when` compiled. */
export interface CompiledMatcher {
  readonly types?: ReadonlySet<string>;
  readonly names?: ReadonlySet<string>;
  readonly agents?: ReadonlySet<string>;
  readonly when?: CompiledCel;
}

export interface CompiledPrior extends CompiledMatcher {
  readonly withinMs?: number;
}

export interface CompiledRule {
  readonly id: string;
  readonly description?: string;
  readonly severity: Severity;
  readonly kind: RuleKind;
  readonly scope: Scope;
  readonly match: CompiledMatcher;
  /** Present exactly for preceded_by and not_preceded_by. */
  readonly prior?: CompiledPrior;
  /** Present exactly for max_count. */
  readonly max?: number;
  /** The file the rule came from. */
  readonly file: string;
  /** The canonical form: what is hashed and what `GET /v1/policies` shows. */
  readonly definition: NormalizedRule;
}

export interface PolicySet {
  /** In file order (files sorted by name), then in order within each file. */
  readonly rules: readonly CompiledRule[];
  readonly files: readonly string[];
  /** Lowercase hex SHA-256 of JCS(the normalised rules sorted by id). */
  readonly hash: string;
}

const POLICY_FILE = /\.ya?ml$/i;

/**
 * Loads the `*.yaml`/`*.yml` files directly in `dir` (not subfolders: the
 * fixtures live in `policies/tests/`), in name order.
 */
export async function loadPolicySetFromDir(dir: string): Promise<PolicySet> {
  let names: string[];
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    names = entries.filter((e) => e.isFile() && POLICY_FILE.test(e.name)).map((e) => e.name);
  } catch (err) {
    throw new PolicyLoadError([{ file: dir, message: `cannot read the policy folder: ${errorText(err)}` }]);
  }
  names.sort();
  const sources = await Promise.all(
    names.map(async (name) => ({ file: join(dir, name), text: await readFile(join(dir, name), 'utf8') })),
  );
  return loadPolicySet(sources);
}

/** Pure: the same sources always give the same set and hash. */
export function loadPolicySet(sources: readonly PolicySource[]): PolicySet {
  const problems: PolicyProblem[] = [];
  const rules: CompiledRule[] = [];
  const seen = new Map<string, string>();
  for (const source of sources) {
    const result = loadFile(source);
    problems.push(...result.problems);
    rules.push(...result.rules);
    // Every written id counts, also of rules with other problems.
    for (const { id, at } of result.ids) {
      const first = seen.get(id);
      if (first !== undefined) problems.push(problem(source.file, id, at, `duplicate rule id, first defined at ${first}`));
      else seen.set(id, at === undefined ? source.file : `${source.file}:${at.line}`);
    }
  }
  if (problems.length > 0) throw new PolicyLoadError(problems);
  return { rules, files: sources.map((s) => s.file), hash: policySetHash(rules.map((r) => r.definition)) };
}

/** Order-independent: rules are sorted by id before hashing. */
export function policySetHash(rules: readonly NormalizedRule[]): string {
  const sorted = [...rules].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const text = canonicalize(sorted);
  if (text === undefined) throw new TypeError('policy rules have no JSON form');
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

interface LoadedFile {
  readonly rules: CompiledRule[];
  /** Every string id written in the file, valid rule or not, where it was written. */
  readonly ids: { id: string; at: Position | undefined }[];
  readonly problems: PolicyProblem[];
}

function loadFile(source: PolicySource): LoadedFile {
  const yaml = parseYaml(source.file, source.text);
  if (!yaml.ok) return { rules: [], ids: [], problems: [...yaml.problems] };
  const parsed = yaml.parsed;
  if (parsed.value === null || parsed.value === undefined) {
    return {
      rules: [],
      ids: [],
      problems: [problem(source.file, undefined, undefined, 'empty file: expected `rules:`, a list')],
    };
  }
  const file = policyFileSchema.safeParse(parsed.value);
  if (!file.success) return { rules: [], ids: [], problems: issuesToProblems(file.error.issues, parsed, [], undefined) };

  const loaded: LoadedFile = { rules: [], ids: [], problems: [] };
  file.data.rules.forEach((raw, index) => {
    const id = (raw as { id?: unknown } | null)?.id;
    if (typeof id === 'string') loaded.ids.push({ id, at: parsed.positionOf(['rules', index, 'id']) });
    const result = loadRule(parsed, raw, ['rules', index]);
    if (result.ok) loaded.rules.push(result.rule);
    else loaded.problems.push(...result.problems);
  });
  return loaded;
}

type RuleResult = { ok: true; rule: CompiledRule } | { ok: false; problems: PolicyProblem[] };

/** Schema and CEL problems of one rule are all reported, not just the first. */
function loadRule(parsed: ParsedYaml, raw: unknown, base: readonly PathSegment[]): RuleResult {
  const rawId = (raw as { id?: unknown } | null)?.id;
  const ruleId = typeof rawId === 'string' ? rawId : undefined;
  const schema = ruleSchema.safeParse(raw);
  const problems = schema.success ? [] : issuesToProblems(schema.error.issues, parsed, base, ruleId);

  const compileAt = (section: 'match' | 'prior', variables: CelVariables): CompiledCel | undefined => {
    const when = ((raw as Record<string, unknown> | null)?.[section] as { when?: unknown } | undefined)?.when;
    if (typeof when !== 'string' || when === '') return undefined;
    const result = compileCel(when, variables);
    if (result.ok) return result.expr;
    const at = parsed.positionOf([...base, section, 'when']);
    const offset = result.offset === undefined ? '' : ` (at character ${result.offset + 1} of the expression)`;
    problems.push(problem(parsed.file, ruleId, at, `${section}.when: CEL: ${result.message}${offset}`));
    return undefined;
  };
  const isObject = typeof raw === 'object' && raw !== null;
  const matchWhen = isObject ? compileAt('match', 'event') : undefined;
  const priorWhen = isObject ? compileAt('prior', 'event+prior') : undefined;

  if (!schema.success || problems.length > 0) return { ok: false, problems };
  return { ok: true, rule: compileRule(schema.data, parsed.file, matchWhen, priorWhen) };
}

function compileRule(
  input: RuleInput,
  file: string,
  matchWhen: CompiledCel | undefined,
  priorWhen: CompiledCel | undefined,
): CompiledRule {
  const match = normalizeMatcher(input.match);
  const prior = input.prior === undefined ? undefined : normalizePrior(input.prior);
  const definition: NormalizedRule = {
    id: input.id,
    ...(input.description === undefined ? {} : { description: input.description }),
    severity: input.severity,
    kind: input.kind,
    scope: input.scope,
    match,
    ...(prior === undefined ? {} : { prior }),
    ...(input.max === undefined ? {} : { max: input.max }),
  };
  const withinMs = input.prior?.within === undefined ? undefined : parseDuration(input.prior.within);
  return {
    id: input.id,
    ...(input.description === undefined ? {} : { description: input.description }),
    severity: input.severity,
    kind: input.kind,
    scope: input.scope,
    match: compileMatcher(match, matchWhen),
    ...(prior === undefined ? {} : { prior: { ...compileMatcher(prior, priorWhen), ...(withinMs === undefined ? {} : { withinMs }) } }),
    ...(input.max === undefined ? {} : { max: input.max }),
    file,
    definition,
  };
}

/** Sorted, de-duplicated lists: `[b, a, a]` and `[a, b]` mean the same. */
function normalizeList(list: readonly string[] | undefined): readonly string[] | undefined {
  return list === undefined ? undefined : [...new Set(list)].sort();
}

function normalizeMatcher(m: MatcherInput): NormalizedMatcher {
  const type = normalizeList(m.type);
  const name = normalizeList(m.name);
  const agent = normalizeList(m.agent);
  return {
    ...(type === undefined ? {} : { type }),
    ...(name === undefined ? {} : { name }),
    ...(agent === undefined ? {} : { agent }),
    ...(m.when === undefined ? {} : { when: m.when }),
  };
}

function normalizePrior(p: PriorInput): NormalizedPrior {
  const withinMs = p.within === undefined ? undefined : parseDuration(p.within);
  return {
    ...normalizeMatcher(p),
    ...(withinMs === undefined ? {} : { within: formatDuration(withinMs) }),
  };
}

function compileMatcher(m: NormalizedMatcher, when: CompiledCel | undefined): CompiledMatcher {
  return {
    ...(m.type === undefined ? {} : { types: new Set(m.type) }),
    ...(m.name === undefined ? {} : { names: new Set(m.name) }),
    ...(m.agent === undefined ? {} : { agents: new Set(m.agent) }),
    ...(when === undefined ? {} : { when }),
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
