import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ForbiddenError, UnauthenticatedError } from '../common/problem';
import { type AuthedRequest, PUBLIC_KEY, SCOPE_KEY } from './auth.decorators';
import { AuthService } from './auth.service';
import type { Scope } from './principal';

/**
 * Global guard: every route needs a valid bearer token unless marked
 * @Public(); a route marked @RequireScope needs that scope (403 otherwise).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const targets = [ctx.getHandler(), ctx.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const header = req.headers.authorization;
    if (!header) throw new UnauthenticatedError('missing Authorization: Bearer <token> header');
    const m = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(header);
    if (!m) throw new UnauthenticatedError('the Authorization header must be "Bearer <token>"');
    req.principal = await this.auth.verify(m[1]);
    const scope = this.reflector.getAllAndOverride<Scope | undefined>(SCOPE_KEY, targets);
    if (scope && !req.principal.scopes.has(scope)) {
      throw new ForbiddenError(`this operation needs the "${scope}" scope`);
    }
    return true;
  }
}
