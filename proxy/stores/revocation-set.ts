import type { Principal } from '../context.js';

/** A revocation as stored durably and pushed to sidecars. Times are seconds since the epoch. */
export type Revocation =
  | { readonly kind: 'jti'; readonly jti: string; readonly expiresAt: number }
  | { readonly kind: 'subject'; readonly subject: string; readonly revokedAt: number; readonly expiresAt: number }
  | { readonly kind: 'before'; readonly revokedAt: number; readonly expiresAt: number };

/** A revocation from untrusted JSON (a pushed message, a journal line): only the known fields, or undefined. */
export function toRevocation(value: unknown): Revocation | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.expiresAt !== 'number') return undefined;
  if (v.kind === 'jti' && typeof v.jti === 'string') return { kind: 'jti', jti: v.jti, expiresAt: v.expiresAt };
  if (typeof v.revokedAt !== 'number') return undefined;
  if (v.kind === 'subject' && typeof v.subject === 'string') return { kind: 'subject', subject: v.subject, revokedAt: v.revokedAt, expiresAt: v.expiresAt };
  if (v.kind === 'before') return { kind: 'before', revokedAt: v.revokedAt, expiresAt: v.expiresAt };
  return undefined;
}

/**
 * The in-process view of every live revocation: what the hot path asks, with no I/O.
 * `subject` and `before` refuse tokens whose iat is at or before the revocation time.
 */
export class RevocationSet {
  readonly #jtis = new Map<string, number>();
  readonly #subjects = new Map<string, { revokedAt: number; expiresAt: number }>();
  #before: { revokedAt: number; expiresAt: number } | undefined;
  #loaded: boolean;

  /**
   * `loaded: false` for a set fed from a durable store: until its first full load it cannot say
   * "not revoked", and the revocation layer refuses rather than guess.
   */
  constructor(options: { loaded?: boolean } = {}) {
    this.#loaded = options.loaded ?? true;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  markLoaded(): void {
    this.#loaded = true;
  }

  isRevoked(principal: Principal): boolean {
    if (this.#jtis.has(principal.jti)) return true;
    if (this.#before !== undefined && principal.issuedAt <= this.#before.revokedAt) return true;
    const subject = this.#subjects.get(principal.subject);
    return subject !== undefined && principal.issuedAt <= subject.revokedAt;
  }

  /** Adds a revocation; returns false when it was already known (idempotent pushes); a jti revoked until later is extended. */
  add(revocation: Revocation): boolean {
    switch (revocation.kind) {
      case 'jti': {
        // Revoked again until later: the revocation lasts until the later of the two.
        const known = this.#jtis.get(revocation.jti);
        if (known !== undefined && known >= revocation.expiresAt) return false;
        this.#jtis.set(revocation.jti, revocation.expiresAt);
        return true;
      }
      case 'subject': {
        const known = this.#subjects.get(revocation.subject);
        if (known && known.revokedAt >= revocation.revokedAt) return false;
        this.#subjects.set(revocation.subject, { revokedAt: revocation.revokedAt, expiresAt: revocation.expiresAt });
        return true;
      }
      case 'before':
        if (this.#before && this.#before.revokedAt >= revocation.revokedAt) return false;
        this.#before = { revokedAt: revocation.revokedAt, expiresAt: revocation.expiresAt };
        return true;
    }
  }

  /** Drops entries whose tokens have all expired anyway. */
  prune(nowSeconds: number): void {
    for (const [jti, expiresAt] of this.#jtis) if (expiresAt <= nowSeconds) this.#jtis.delete(jti);
    for (const [subject, entry] of this.#subjects) if (entry.expiresAt <= nowSeconds) this.#subjects.delete(subject);
    if (this.#before && this.#before.expiresAt <= nowSeconds) this.#before = undefined;
  }

  get size(): number {
    return this.#jtis.size + this.#subjects.size + (this.#before ? 1 : 0);
  }
}
