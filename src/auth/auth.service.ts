import { webcrypto } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { UnauthenticatedError } from '../common/problem';
import { APP_CONFIG } from '../runtime/tokens';
import type { AppConfig } from '../runtime/runtime';
import { TENANT_PATTERN, type Principal } from './principal';

/** Asymmetric algorithms accepted from an OIDC provider's JWKS. */
const JWKS_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];

@Injectable()
export class AuthService {
  private readonly jwks?: JWTVerifyGetKey;
  /** The HS256 secret imported once: given the raw bytes, jose imports a WebCrypto key on every request. */
  private hsKey?: Promise<webcrypto.CryptoKey>;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    if (config.auth.jwksUrl) this.jwks = createRemoteJWKSet(new URL(config.auth.jwksUrl));
  }

  /** Verifies a bearer token; every failure is a 401 that says why, never echoing the token. */
  async verify(token: string): Promise<Principal> {
    const { auth } = this.config;
    let payload: JWTPayload;
    try {
      const options = {
        requiredClaims: ['exp', 'sub'],
        clockTolerance: auth.clockToleranceS,
        issuer: auth.issuer,
        audience: auth.audience,
      };
      if (this.jwks) {
        ({ payload } = await jwtVerify(token, this.jwks, { ...options, algorithms: JWKS_ALGORITHMS }));
      } else {
        this.hsKey ??= webcrypto.subtle.importKey('raw', auth.hsSecret!, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
        ({ payload } = await jwtVerify(token, await this.hsKey, { ...options, algorithms: ['HS256'] }));
      }
    } catch (err) {
      throw new UnauthenticatedError(describeJoseError(err));
    }
    const { sub, tenant, scope } = payload as JWTPayload & { tenant?: unknown; scope?: unknown };
    if (typeof tenant !== 'string' || !TENANT_PATTERN.test(tenant)) {
      throw new UnauthenticatedError('the token has no valid "tenant" claim');
    }
    if (scope !== undefined && typeof scope !== 'string') {
      throw new UnauthenticatedError('the "scope" claim must be a space-separated string');
    }
    return { sub: sub!, tenant, scopes: new Set((scope ?? '').split(' ').filter(Boolean)) };
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'the token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `the token's "${err.claim}" claim is invalid (${err.reason})`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'the token algorithm is not allowed';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key in the JWKS matches the token';
  if (err instanceof errors.JOSEError) return 'the token is malformed or cannot be verified';
  return 'the token cannot be verified';
}
