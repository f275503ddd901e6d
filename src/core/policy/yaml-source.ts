import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';

/**
 * YAML with positions. Policy authors need `file:line:column` for every
 * problem, also for problems found after parsing (schema, CEL, duplicate
 * ids), so a parsed file keeps its document and maps a value path such as
 * `['rules', 2, 'prior', 'within']` back to where it was written.
 */

/** One problem in a policy or fixture file. Lines and columns are 1-based. */
export interface SourceProblem {
  readonly file: string;
  readonly ruleId?: string;
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

export interface Position {
  readonly line: number;
  readonly column: number;
}

export type PathSegment = string | number;

export interface ParsedYaml {
  readonly file: string;
  /** The document as plain JS (null for an empty file). */
  readonly value: unknown;
  /**
   * Where the value at `path` was written; with `atKey`, where its key was.
   * A path that does not resolve fully gives the deepest node reached, so a
   * missing field points at the map that lacks it.
   */
  positionOf(path: readonly PathSegment[], atKey?: boolean): Position | undefined;
}

export type YamlParseResult =
  | { readonly ok: true; readonly parsed: ParsedYaml }
  | { readonly ok: false; readonly problems: readonly SourceProblem[] };

export function parseYaml(file: string, text: string): YamlParseResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((err) => {
        const pos = lines.linePos(err.pos[0]);
        return { file, line: pos.line, column: pos.col, message: `YAML: ${err.message}` };
      }),
    };
  }
  const value: unknown = doc.toJS({ maxAliasCount: 100 });
  return {
    ok: true,
    parsed: {
      file,
      value,
      positionOf: (path, atKey = false) => {
        const offset = offsetOf(doc, path, atKey);
        if (offset === undefined) return undefined;
        const pos = lines.linePos(offset);
        return { line: pos.line, column: pos.col };
      },
    },
  };
}

function offsetOf(doc: Document, path: readonly PathSegment[], atKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  for (let i = 0; i < path.length; i++) {
    const segment = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (pair === undefined) return offset;
      if (last && atKey) return rangeStart(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
    } else {
      return offset;
    }
    offset = rangeStart(node) ?? offset;
  }
  return offset;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: unknown } | null | undefined)?.range;
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : undefined;
}

/** `file:line:col [rule]: message`, the form editors and CI logs link. */
export function formatProblem(p: SourceProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  const rule = p.ruleId === undefined ? '' : ` [${p.ruleId}]`;
  return `${where}${rule}: ${p.message}`;
}

/** The subset of a zod issue this file needs (zod's own type is wider). */
export interface SchemaIssue {
  readonly code?: string;
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly keys?: readonly string[];
}

/**
 * Turns schema issues for the value at `base` into positioned problems.
 * Unknown fields get one problem each, pointing at the key itself.
 */
export function issuesToProblems(
  issues: readonly SchemaIssue[],
  parsed: ParsedYaml,
  base: readonly PathSegment[],
  ruleId: string | undefined,
): SourceProblem[] {
  const problems: SourceProblem[] = [];
  for (const issue of issues) {
    const path = issue.path.filter((s): s is PathSegment => typeof s === 'string' || typeof s === 'number');
    const keys = issue.code === 'unrecognized_keys' ? (issue.keys ?? []) : [];
    if (keys.length > 0) {
      for (const key of keys) {
        const at = parsed.positionOf([...base, ...path, key], true);
        problems.push(problem(parsed.file, ruleId, at, `${describePath([...path, key])}: unknown field`));
      }
      continue;
    }
    const at = parsed.positionOf([...base, ...path]);
    const label = path.length === 0 ? '' : `${describePath(path)}: `;
    const message = issue.code === 'invalid_type' && /received undefined$/.test(issue.message) ? 'required' : issue.message;
    problems.push(problem(parsed.file, ruleId, at, `${label}${message}`));
  }
  return problems;
}

export function problem(
  file: string,
  ruleId: string | undefined,
  at: Position | undefined,
  message: string,
): SourceProblem {
  return {
    file,
    ...(ruleId === undefined ? {} : { ruleId }),
    ...(at === undefined ? {} : { line: at.line, column: at.column }),
    message,
  };
}

/** `match.type[1]`: how an author would name the field. */
export function describePath(path: readonly PathSegment[]): string {
  return path.reduce<string>(
    (acc, s) => (typeof s === 'number' ? `${acc}[${s}]` : acc === '' ? s : `${acc}.${s}`),
    '',
  );
}
