import type { CompiledRule } from './policy-loader';
import type { LedgerEventForPolicy, Scope } from './policy-types';

/**
 * Human-readable violation messages, for alerts and reviewers:
 * `refund_payment(order_id=A-1009, amount=250) ran with no prior
 * approval.granted within 1h in trace 4bf92f35…`. Arguments are rendered
 * compactly and long values truncated, so a message stays one short line
 * whatever the agent sent.
 */

const MAX_VALUE_CHARS = 32;
const MAX_ARGS = 6;

export function violationMessage(
  rule: CompiledRule,
  event: LedgerEventForPolicy,
  scope: Scope,
  related: readonly number[],
): string {
  const subject = describeEvent(event);
  const where = `in ${scopeLabel(scope, event)}`;
  switch (rule.kind) {
    case 'preceded_by': {
      const within = rule.definition.prior?.within === undefined ? '' : ` within ${rule.definition.prior.within}`;
      return `${subject} ran with no prior ${typesLabel(rule.definition.prior?.type)}${within} ${where}`;
    }
    case 'not_preceded_by':
      return `${subject} ran after ${typesLabel(rule.definition.prior?.type)} (${seqsLabel(related)}) ${where}`;
    case 'max_count':
      return `${typesLabel(rule.definition.match.type)} #${(rule.max ?? 0) + 1} ${where} exceeds the maximum of ${rule.max ?? 0}`;
    case 'forbidden':
      return `${subject}${event.agent == null ? '' : ` by ${event.agent}`} is forbidden`;
  }
}

/** `name(k=v, …)` when the event has `attributes.args`, else `type name`. */
export function describeEvent(event: LedgerEventForPolicy): string {
  const args = event.attributes?.['args'];
  if (args !== undefined) return `${event.name ?? event.type}(${renderArgs(args)})`;
  return event.name == null ? event.type : `${event.type} ${event.name}`;
}

function renderArgs(args: unknown): string {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return renderValue(args);
  const entries = Object.entries(args as Record<string, unknown>);
  const shown = entries.slice(0, MAX_ARGS).map(([k, v]) => `${k}=${renderValue(v)}`);
  if (entries.length > MAX_ARGS) shown.push('…');
  return shown.join(', ');
}

function renderValue(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return truncate(text, MAX_VALUE_CHARS);
}

function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

function scopeLabel(scope: Scope, event: LedgerEventForPolicy): string {
  return scope === 'session'
    ? `session ${truncate(event.session_id ?? '', 16)}`
    : `trace ${event.trace_id.slice(0, 8)}…`;
}

function typesLabel(types: readonly string[] | undefined): string {
  return types === undefined ? 'matching event' : types.join(' or ');
}

function seqsLabel(seqs: readonly number[]): string {
  return seqs.length === 1 ? `seq ${seqs[0]}` : `seqs ${seqs.join(', ')}`;
}
