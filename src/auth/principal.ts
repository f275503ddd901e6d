/** Who is calling: the verified claims of the bearer token. */
export const SCOPES = ['events:write', 'audit:read', 'export:create', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  sub: string;
  tenant: string;
  scopes: ReadonlySet<string>;
}

/** Tenant ids appear in origins, chain seeds and logs: keep them plain. */
export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
