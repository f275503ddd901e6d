import { Injectable } from '@nestjs/common';
import { calculateJwkThumbprint, importJWK, type CryptoKey, type JWK } from 'jose';
import { NotFoundError } from '../common/problem';
import { LEDGER_KID } from '../core/record';
import { LedgerService } from '../ledger/ledger.service';
import { KID_PATTERN, type KeyView } from './dto/keys.dto';
import { KeysError } from './keys.errors';
import { KeysRepository, type KeyRow } from './keys.repository';

export type ProducerAlg = 'EdDSA' | 'ES256';

export interface VerificationKey {
  key: CryptoKey;
  alg: ProducerAlg;
  revoked: boolean;
}

/** The public members we keep: nothing else of a submitted JWK is stored. */
function publicPart(jwk: Record<string, unknown>): { jwk: JWK; alg: ProducerAlg } {
  if ('d' in jwk) throw KeysError.privateKey();
  const str = (k: string) => (typeof jwk[k] === 'string' ? (jwk[k] as string) : undefined);
  const kty = str('kty');
  const crv = str('crv');
  if (kty === 'RSA') throw KeysError.unsupported('RSA keys are not accepted; use Ed25519 (OKP) or P-256 (EC)');
  if (kty === 'OKP' && crv === 'Ed25519' && str('x')) return { jwk: { kty, crv, x: str('x') }, alg: 'EdDSA' };
  if (kty === 'EC' && crv === 'P-256' && str('x') && str('y')) {
    return { jwk: { kty, crv, x: str('x'), y: str('y') }, alg: 'ES256' };
  }
  if (kty === 'OKP' || kty === 'EC') {
    throw KeysError.unsupported(`curve "${crv ?? '(none)'}" is not accepted for kty ${kty}; use Ed25519 or P-256 with all coordinates`);
  }
  throw KeysError.unsupported(`kty "${kty ?? '(none)'}" is not accepted; use Ed25519 (OKP) or P-256 (EC)`);
}

function view(r: KeyRow): KeyView {
  return {
    kid: r.kid,
    producer: r.producer,
    alg: r.alg,
    jwk: { ...r.jwk, kid: r.kid },
    created_at: r.created_at.toISOString(),
    registered_seq: Number(r.registered_seq),
    revoked_at: r.revoked_at ? r.revoked_at.toISOString() : null,
    revoked_seq: r.revoked_seq === null ? null : Number(r.revoked_seq),
  };
}

@Injectable()
export class KeysService {
  /** Imported keys by tenant and kid; a revocation here evicts, and the ledger re-checks revocation at commit. */
  private readonly cache = new Map<string, VerificationKey>();

  constructor(
    private readonly repo: KeysRepository,
    private readonly ledger: LedgerService,
  ) {}

  /** Registers a producer key; the registration is a ledger entry in the same transaction. */
  async register(tenant: string, producer: string, submitted: Record<string, unknown>): Promise<{ created: boolean; key: KeyView }> {
    const { jwk, alg } = publicPart(submitted);
    try {
      await importJWK(jwk, alg);
    } catch {
      throw KeysError.unsupported('the JWK is not a valid public key (bad coordinates?)');
    }
    const kid = typeof submitted.kid === 'string' ? submitted.kid : await calculateJwkThumbprint(jwk);
    if (!KID_PATTERN.test(kid)) throw KeysError.unsupported('kid must be 1-128 characters of A-Z a-z 0-9 . _ : ~ -');
    if (kid === LEDGER_KID) throw KeysError.unsupported(`kid "${LEDGER_KID}" is reserved for the service's own entries`);

    const already = await this.alreadyRegistered(tenant, kid, jwk);
    if (already) return { created: false, key: already };
    try {
      await this.ledger.appendServiceEvents(
        tenant,
        [{ type: 'ledger.key_registered', name: kid, attributes: { kid, producer, alg, jwk } }],
        (tx, [receipt]) => this.repo.insert(tx, { tenant_id: tenant, kid, producer, alg, jwk, registered_seq: String(receipt.seq) }),
      );
    } catch (err) {
      // a concurrent registration of the same kid won the race: same key is fine, another is a conflict
      const winner = (err as { code?: string }).code === '23505' ? await this.alreadyRegistered(tenant, kid, jwk) : undefined;
      if (winner) return { created: false, key: winner };
      throw err;
    }
    return { created: true, key: view((await this.repo.find(tenant, kid))!) };
  }

  /** The existing registration of this kid if it is the same key; KidTaken if it is another. */
  private async alreadyRegistered(tenant: string, kid: string, jwk: JWK): Promise<KeyView | undefined> {
    const existing = await this.repo.find(tenant, kid);
    if (!existing) return undefined;
    if (!sameKey(existing.jwk, jwk)) throw KeysError.kidTaken(kid);
    return view(existing);
  }

  async list(tenant: string): Promise<KeyView[]> {
    return (await this.repo.list(tenant)).map(view);
  }

  /** Revokes a key (idempotent); the revocation is a ledger entry in the same transaction. */
  async revoke(tenant: string, kid: string): Promise<KeyView> {
    const existing = await this.repo.find(tenant, kid);
    if (!existing) throw new NotFoundError(`key "${kid}"`);
    if (!existing.revoked_at) {
      await this.ledger.appendServiceEvents(
        tenant,
        [{ type: 'ledger.key_revoked', name: kid, attributes: { kid, producer: existing.producer } }],
        async (tx, [receipt]) => {
          if (!(await this.repo.revoke(tx, tenant, kid, receipt.seq))) throw new Error('already revoked');
        },
      ).catch((err: Error) => {
        if (err.message !== 'already revoked') throw err;
      });
      this.cache.delete(`${tenant}\n${kid}`);
    }
    return view((await this.repo.find(tenant, kid))!);
  }

  /** The key to verify a batch with, or undefined if the tenant has no such kid. */
  async verificationKey(tenant: string, kid: string): Promise<VerificationKey | undefined> {
    const cacheKey = `${tenant}\n${kid}`;
    const hit = this.cache.get(cacheKey);
    if (hit && !hit.revoked) return hit;
    const row = await this.repo.find(tenant, kid);
    if (!row) return undefined;
    const key = (await importJWK(row.jwk, row.alg)) as CryptoKey;
    const vk = { key, alg: row.alg, revoked: row.revoked_at !== null };
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(cacheKey, vk);
    return vk;
  }
}

function sameKey(a: JWK, b: JWK): boolean {
  return a.kty === b.kty && a.crv === b.crv && a.x === b.x && a.y === b.y;
}
