/**
 * RFC 4180 CSV lines. Text cells that a spreadsheet would run as a formula
 * (starting with = + - @ tab or CR) get a leading apostrophe (OWASP "CSV
 * injection"); numbers are written as numbers. NDJSON is the exact export.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  let s = typeof value === 'string' ? value : JSON.stringify(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(values: readonly unknown[]): string {
  return `${values.map(csvCell).join(',')}\r\n`;
}
