import { SignJWT } from 'jose';
import { SCOPES, TENANT_PATTERN } from './principal';

/** Mints a local HS256 token (the `npm run token` command and the tests). */
export async function mintToken(opts: {
  secret: Uint8Array;
  tenant: string;
  scope: string;
  sub?: string;
  ttlSeconds?: number;
  issuer?: string;
  audience?: string;
}): Promise<string> {
  if (!TENANT_PATTERN.test(opts.tenant)) throw new Error(`bad tenant "${opts.tenant}": letters, digits, . _ - (max 64)`);
  for (const s of opts.scope.split(' ').filter(Boolean)) {
    if (!(SCOPES as readonly string[]).includes(s)) throw new Error(`unknown scope "${s}"; known: ${SCOPES.join(', ')}`);
  }
  let jwt = new SignJWT({ tenant: opts.tenant, scope: opts.scope })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(opts.sub ?? 'local-user')
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (opts.ttlSeconds ?? 3600));
  if (opts.issuer) jwt = jwt.setIssuer(opts.issuer);
  if (opts.audience) jwt = jwt.setAudience(opts.audience);
  return jwt.sign(opts.secret);
}
