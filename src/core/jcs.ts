import canonicalize from 'canonicalize';

/**
 * RFC 8785 (JCS) canonical JSON. The `canonicalize` package is the reference
 * implementation by one of the RFC's authors; this wrapper only turns its
 * "undefined" result (for values JSON cannot represent) into an error, so a
 * caller can never hash the empty string by accident.
 */
export function jcs(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON representation');
  return text;
}

export function jcsBytes(value: unknown): Buffer {
  return Buffer.from(jcs(value), 'utf8');
}
