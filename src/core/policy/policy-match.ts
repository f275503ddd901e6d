import { toCelEvent, type CelMap, type CompiledCel } from './cel';
import type { CompiledMatcher } from './policy-loader';
import type { LedgerEventForPolicy } from './policy-types';

/**
 * Matching one event against a rule's `match` or `prior`: the static filters
 * (type, name, agent) first, because they are cheap and decide most events,
 * then `when`. An event is converted for CEL once (`EventView`) and the view
 * is reused for every rule and, as a candidate prior, for later events.
 */

export interface EventView {
  readonly seq: number;
  readonly type: string;
  /** Milliseconds since the epoch of `time`; NaN if it does not parse. */
  readonly timeMs: number;
  readonly cel: CelMap;
}

/** The CEL form is built on first use: most events are decided by the static filters and never need it. */
class LazyView implements EventView {
  readonly seq: number;
  readonly type: string;
  readonly timeMs: number;
  private event: LedgerEventForPolicy | undefined;
  private celMap: CelMap | undefined;

  constructor(event: LedgerEventForPolicy) {
    this.seq = event.seq;
    this.type = event.type;
    this.timeMs = Date.parse(event.time);
    this.event = event;
  }

  get cel(): CelMap {
    if (this.celMap === undefined) {
      this.celMap = toCelEvent(this.event as LedgerEventForPolicy);
      this.event = undefined;
    }
    return this.celMap;
  }
}

export function viewOf(event: LedgerEventForPolicy): EventView {
  return new LazyView(event);
}

/** type, name and agent filters; an absent filter matches everything. */
export function matchesStatic(m: CompiledMatcher, event: LedgerEventForPolicy): boolean {
  return (
    (m.types === undefined || m.types.has(event.type)) &&
    (m.names === undefined || (event.name != null && m.names.has(event.name))) &&
    (m.agents === undefined || (event.agent != null && m.agents.has(event.agent)))
  );
}

/** A `when` outcome: an error counts as no match, and is kept for reporting. */
export type WhenResult = { readonly matched: boolean; readonly error?: string };

const MATCHED: WhenResult = { matched: true };
const NOT_MATCHED: WhenResult = { matched: false };

export function evalWhen(when: CompiledCel | undefined, event: CelMap, prior?: CelMap): WhenResult {
  if (when === undefined) return MATCHED;
  const outcome = when.evaluate(prior === undefined ? { event } : { event, prior });
  if (!outcome.ok) return { matched: false, error: outcome.error };
  return outcome.value ? MATCHED : NOT_MATCHED;
}

/**
 * `within` (DESIGN.md §6): the prior's `time` is at most `withinMs` before
 * the event's (`prior.time >= event.time - within`). A prior whose clock is
 * ahead of the event's still counts: order is the ledger's, not the clocks'.
 * Times compare at millisecond precision; an unparsable time is never within.
 */
export function isWithin(withinMs: number | undefined, event: EventView, prior: EventView): boolean {
  if (withinMs === undefined) return true;
  return prior.timeMs >= event.timeMs - withinMs;
}
