/**
 * Durations for `within:` (DESIGN.md §6): a positive whole number and one
 * unit, `s`, `m`, `h` or `d` (`30s`, `15m`, `1h`, `7d`). One unit only, so a
 * value reads the same to every author; `90m` is the way to say 1h30.
 */

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;
type Unit = keyof typeof UNIT_MS;

const DURATION = /^([1-9][0-9]{0,9})([smhd])$/;

/** Milliseconds of a duration text, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (m === null) return undefined;
  return Number(m[1]) * UNIT_MS[m[2] as Unit];
}

/**
 * The canonical text of a duration in milliseconds: the largest unit that
 * divides it exactly, so `60m` and `3600s` both normalise to `1h`.
 */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
