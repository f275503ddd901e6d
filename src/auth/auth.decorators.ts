import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Principal, Scope } from './principal';

export const PUBLIC_KEY = 'agent-ledger:public';
export const SCOPE_KEY = 'agent-ledger:scope';

/** The route needs no token (health, metrics, JWKS, docs). */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** The token must carry this scope. */
export const RequireScope = (scope: Scope) => SetMetadata(SCOPE_KEY, scope);

export type AuthedRequest = FastifyRequest & { principal?: Principal };

/** The verified caller, set by the AuthGuard. */
export const CurrentPrincipal = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  const principal = ctx.switchToHttp().getRequest<AuthedRequest>().principal;
  if (!principal) throw new Error('CurrentPrincipal used on a public route');
  return principal;
});
