import { z } from 'zod';
import { parseDuration } from './duration';
import { CUSTOM_EVENT_TYPE, POLICY_EVENT_TYPES, RULE_KINDS, SCOPES, SEVERITIES } from './policy-types';

/**
 * The policy file shape of DESIGN.md §6, written once: it validates files
 * and gives the types. Every object is strict, so a misspelt field
 * (`withn:`) is an error rather than a rule that silently checks less.
 * CEL is compiled by the loader (it needs the compiled form anyway).
 */

const KNOWN_TYPES: ReadonlySet<string> = new Set(POLICY_EVENT_TYPES);

const eventType = z.string().refine((t) => KNOWN_TYPES.has(t) || CUSTOM_EVENT_TYPE.test(t), {
  message: `not an event type: use one of ${POLICY_EVENT_TYPES.join(', ')} or custom.<name>`,
});

/** `x` or `[x, y]`, always a non-empty list after parsing. */
function oneOrMany<T extends z.ZodType<string>>(item: T) {
  return z.preprocess(
    (v) => (typeof v === 'string' ? [v] : v),
    z.array(item, { error: 'expected a string or a list of strings' }).min(1, 'must not be an empty list'),
  );
}

const text = z.string({ error: 'expected a string' }).min(1, 'must not be empty');

const matcherShape = {
  type: oneOrMany(eventType).optional(),
  name: oneOrMany(text).optional(),
  agent: oneOrMany(text).optional(),
  when: text.optional(),
};

export const matcherSchema = z.strictObject(matcherShape);

export const priorSchema = z.strictObject({
  ...matcherShape,
  within: z
    .string({ error: 'expected a duration such as 30s, 15m, 1h or 7d' })
    .refine((s) => parseDuration(s) !== undefined, {
      message: 'expected a duration such as 30s, 15m, 1h or 7d (a positive whole number and one unit s, m, h or d)',
    })
    .optional(),
});

const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

const NEEDS_PRIOR: ReadonlySet<string> = new Set(['preceded_by', 'not_preceded_by']);

export const ruleSchema = z
  .strictObject({
    id: z.string({ error: 'expected a string' }).regex(RULE_ID, 'letters, digits, _ . : - (up to 128)'),
    description: z.string({ error: 'expected a string' }).optional(),
    severity: z.enum(SEVERITIES),
    kind: z.enum(RULE_KINDS),
    scope: z.enum(SCOPES).default('trace'),
    match: matcherSchema,
    prior: priorSchema.optional(),
    max: z.number({ error: 'expected a whole number' }).int('expected a whole number').min(0).optional(),
  })
  // `when: () => true`: also check rules that have other problems, so an
  // author sees every problem of a file at once.
  .check(
    z.superRefine(
      (input: unknown, ctx) => {
        for (const issue of kindCombinationIssues(input)) ctx.addIssue({ code: 'custom', ...issue });
      },
      { when: () => true },
    ),
  );

/**
 * preceded_by and not_preceded_by need a `prior`, other kinds refuse one;
 * only max_count takes (and needs) `max`. Works on the raw input.
 */
function kindCombinationIssues(input: unknown): { path: string[]; message: string }[] {
  if (typeof input !== 'object' || input === null) return [];
  const rule = input as Record<string, unknown>;
  const kind = rule['kind'];
  if (typeof kind !== 'string' || !(RULE_KINDS as readonly string[]).includes(kind)) return [];
  const issues: { path: string[]; message: string }[] = [];
  const needsPrior = NEEDS_PRIOR.has(kind);
  if (needsPrior && rule['prior'] === undefined) {
    issues.push({ path: ['prior'], message: `prior is required for kind ${kind}` });
  }
  if (!needsPrior && rule['prior'] !== undefined) {
    issues.push({ path: ['prior'], message: `prior is not allowed for kind ${kind}` });
  }
  if (kind === 'max_count' && rule['max'] === undefined) {
    issues.push({ path: ['max'], message: 'max is required for kind max_count' });
  }
  if (kind !== 'max_count' && rule['max'] !== undefined) {
    issues.push({ path: ['max'], message: `max is not allowed for kind ${kind}` });
  }
  return issues;
}

/** The file: `rules:`, a list. Rules are validated one by one (see the loader). */
export const policyFileSchema = z.strictObject({
  rules: z.array(z.unknown(), { error: (issue) => (issue.input === undefined ? 'required' : 'expected a list of rules') }),
});

export type RuleInput = z.infer<typeof ruleSchema>;
export type MatcherInput = z.infer<typeof matcherSchema>;
export type PriorInput = z.infer<typeof priorSchema>;
