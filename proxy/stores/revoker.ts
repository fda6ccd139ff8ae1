import { MAX_TOKEN_LIFETIME_SECONDS } from '../auth/token-lifetime.js';
import type { RevocationBus } from './revocation-bus.js';
import type { Revocation } from './revocation-set.js';
import type { RevocationRecord, RevocationStore } from './revocation-store.js';

/** What an operator asks to revoke. Times in epoch seconds. */
export type RevokeRequest = { readonly reason: string; readonly revokedBy: string } & (
  | { readonly kind: 'jti'; readonly jti: string; readonly expiresAt?: number }
  | { readonly kind: 'subject'; readonly subject: string }
  | { readonly kind: 'before'; readonly before: number }
);

export interface RevokeResult {
  readonly record: RevocationRecord;
  /** False when the jti was already revoked (the request is idempotent). */
  readonly created: boolean;
  /** False when the push failed: peers pick the revocation up at their next resync. */
  readonly pushed: boolean;
}

/** A request the revoker refuses before touching any store. Match on `.code`. */
export class InvalidRevocationError extends Error {
  readonly code = 'INVALID_REVOCATION';
}

export interface RevokerOptions {
  readonly store: RevocationStore;
  readonly bus: RevocationBus;
  readonly now?: () => number;
  /** Called once the revocation is durable (audit line, metric). */
  readonly onRevoked?: (result: RevokeResult) => void;
  /** Called when the push after the durable write failed. */
  readonly onPushError?: (error: unknown, revocation: Revocation) => void;
}

const MAX_FUTURE_BEFORE_SECONDS = 60;
/**
 * A sidecar accepts a token up to its policy's clock tolerance past `exp` (300 s at most, the
 * policy schema's bound): a revocation is kept that much longer than the tokens it matches live.
 */
const ACCEPTANCE_GRACE_SECONDS = 300;
const MAX_TEXT = 500;

/**
 * The one write path of revocation, shared by the admin API, the CLI and the anomaly detector's
 * auto-revoke: validate → durable write (the acknowledgement) → push. A failed durable write
 * throws and nothing else happens; a failed push does not undo a durable revocation.
 */
export class Revoker {
  readonly #options: RevokerOptions;
  readonly #now: () => number;

  constructor(options: RevokerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  async revoke(request: RevokeRequest): Promise<RevokeResult> {
    const record = this.#record(request);
    const created = await this.#options.store.add(record);
    let pushed = true;
    try {
      await this.#options.bus.publish(record.revocation);
    } catch (error) {
      pushed = false;
      this.#options.onPushError?.(error, record.revocation);
    }
    const result = { record, created, pushed };
    this.#options.onRevoked?.(result);
    return result;
  }

  #record(request: RevokeRequest): RevocationRecord {
    const now = this.#now() / 1000;
    const reason = request.reason.trim();
    const revokedBy = request.revokedBy.trim();
    if (!reason || reason.length > MAX_TEXT) throw new InvalidRevocationError(`reason must be 1..${MAX_TEXT} characters`);
    if (!revokedBy || revokedBy.length > 200) throw new InvalidRevocationError('revoked_by must be 1..200 characters');
    const base = { revokedAt: now, revokedBy, reason };
    switch (request.kind) {
      case 'jti': {
        if (!request.jti || request.jti.length > 200) throw new InvalidRevocationError('jti must be 1..200 characters');
        const expiresAt = request.expiresAt ?? now + MAX_TOKEN_LIFETIME_SECONDS;
        if (!Number.isFinite(expiresAt)) throw new InvalidRevocationError('expires_at must be a time');
        return { ...base, revocation: { kind: 'jti', jti: request.jti, expiresAt: Math.max(expiresAt, now + 1) + ACCEPTANCE_GRACE_SECONDS } };
      }
      case 'subject':
        if (!request.subject || request.subject.length > 200) throw new InvalidRevocationError('subject must be 1..200 characters');
        return { ...base, revocation: { kind: 'subject', subject: request.subject, revokedAt: now, expiresAt: now + MAX_TOKEN_LIFETIME_SECONDS + ACCEPTANCE_GRACE_SECONDS } };
      case 'before':
        if (!Number.isFinite(request.before)) throw new InvalidRevocationError('before must be a time');
        // A cut-off far in the future would refuse every token issued until then: an outage, not a revocation.
        if (request.before > now + MAX_FUTURE_BEFORE_SECONDS) throw new InvalidRevocationError('before must not be in the future');
        return { ...base, revocation: { kind: 'before', revokedAt: request.before, expiresAt: request.before + MAX_TOKEN_LIFETIME_SECONDS + ACCEPTANCE_GRACE_SECONDS } };
    }
  }
}
