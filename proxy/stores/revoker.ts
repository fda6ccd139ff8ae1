import { MAX_TOKEN_LIFETIME_SECONDS, unrevocableId } from '../auth/token-limits.js';
import type { RevocationBus } from './revocation-bus.js';
import type { Revocation } from './revocation-set.js';
import type { RevocationRecord, RevocationStore } from './revocation-store.js';

/**
 * What an operator asks to revoke. Times in epoch seconds. `requestId`: the admin API request
 * or `ca-a2a revoke` invocation that asked, for the audit line.
 */
export type RevokeRequest = { readonly reason: string; readonly revokedBy: string; readonly requestId?: string } & (
  | { readonly kind: 'jti'; readonly jti: string; readonly expiresAt?: number }
  | { readonly kind: 'subject'; readonly subject: string }
  | { readonly kind: 'before'; readonly before: number }
);

export interface RevokeResult {
  /**
   * As the store now holds it: a jti revoked already keeps its first `revokedAt`, `revokedBy` and
   * `reason`, and the later of the two expiries.
   */
  readonly record: RevocationRecord;
  /** This request as validated: the same as `record` when `created`. */
  readonly requested: RevocationRecord;
  /** False when the jti was already revoked (the request is idempotent). */
  readonly created: boolean;
  /** False when the push failed: peers pick the revocation up at their next resync. */
  readonly pushed: boolean;
  /** The request's `requestId`, when it had one. */
  readonly requestId?: string;
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
    const requested = this.#record(request);
    // A jti revoked already stays as stored: answer, push and audit the record kept.
    const { created, record } = await this.#options.store.add(requested);
    let pushed = true;
    try {
      await this.#options.bus.publish(record.revocation, this.#now() / 1000);
    } catch (error) {
      pushed = false;
      this.#options.onPushError?.(error, record.revocation);
    }
    const result = { record, requested, created, pushed, ...(request.requestId === undefined ? {} : { requestId: request.requestId }) };
    this.#options.onRevoked?.(result);
    return result;
  }

  #record(request: RevokeRequest): RevocationRecord {
    const now = this.#now() / 1000;
    const reason = text(request.reason, 'reason', MAX_TEXT);
    const revokedBy = text(request.revokedBy, 'revoked_by', 200);
    const base = { revokedAt: now, revokedBy, reason };
    switch (request.kind) {
      case 'jti': {
        id(request.jti, 'jti');
        const exp = request.expiresAt === undefined ? Infinity : time(request.expiresAt, 'expires_at');
        // No sidecar accepts a token this long past its exp: it would revoke nothing, and a mistyped
        // date would become a 5-minute revocation after which the live token works again. Within
        // the grace it is a token's own exp (the anomaly auto-revoke passes one) and is kept.
        if (exp + ACCEPTANCE_GRACE_SECONDS < now) {
          throw new InvalidRevocationError(`expires_at is more than ${ACCEPTANCE_GRACE_SECONDS} s in the past: no sidecar accepts a token that expired then, so it would revoke nothing; give the token's exp, or leave expires_at out`);
        }
        return { ...base, revocation: { kind: 'jti', jti: request.jti, expiresAt: jtiRevokedUntil(exp, now) } };
      }
      case 'subject':
        id(request.subject, 'subject');
        return { ...base, revocation: { kind: 'subject', subject: request.subject, revokedAt: now, expiresAt: now + MAX_TOKEN_LIFETIME_SECONDS + ACCEPTANCE_GRACE_SECONDS } };
      case 'before': {
        const before = time(request.before, 'before');
        // A cut-off far in the future would refuse every token issued until then: an outage, not a revocation.
        if (before > now + MAX_FUTURE_BEFORE_SECONDS) throw new InvalidRevocationError(`before must not be more than ${MAX_FUTURE_BEFORE_SECONDS} s in the future: it would refuse every token issued until then`);
        // Every token issued by a cut-off this old has expired: it would revoke nothing, and a
        // mistyped year would read as done.
        if (before + MAX_TOKEN_LIFETIME_SECONDS + ACCEPTANCE_GRACE_SECONDS <= now) {
          throw new InvalidRevocationError('before is more than the max token lifetime (24 h) in the past: every token issued by then has expired, so it would revoke nothing');
        }
        return { ...base, revocation: { kind: 'before', revokedAt: before, expiresAt: before + MAX_TOKEN_LIFETIME_SECONDS + ACCEPTANCE_GRACE_SECONDS } };
      }
    }
  }
}

/**
 * Until when a jti is kept revoked, given the token's exp (Infinity when unknown): that exp, at
 * most the longest a token accepted now can live, plus the clock tolerance a sidecar grants past
 * it. The durable write and the anomaly alarm's local fallback both keep a jti this long.
 */
export function jtiRevokedUntil(exp: number, nowSeconds: number): number {
  // A token accepted until now was issued at most the leeway ahead of now, so it expires by this;
  // a later exp would only keep the revocation longer.
  const latestExp = nowSeconds + MAX_TOKEN_LIFETIME_SECONDS + ACCEPTANCE_GRACE_SECONDS;
  return Math.max(Math.min(exp, latestExp), nowSeconds + 1) + ACCEPTANCE_GRACE_SECONDS;
}

/** Trimmed free text of 1..max characters; NUL is refused, as PostgreSQL text cannot hold it. */
function text(value: string, name: string, max: number): string {
  const trimmed = value.trim();
  if (!trimmed || trimmed.length > max) throw new InvalidRevocationError(`${name} must be 1..${max} characters`);
  if (trimmed.includes('\u0000')) throw new InvalidRevocationError(`${name} must not contain NUL`);
  return trimmed;
}

/** A jti or subject as authn accepts them in tokens (auth/token-limits.ts). */
function id(value: string, name: string): void {
  const why = unrevocableId(value);
  if (why !== undefined) throw new InvalidRevocationError(`${name} ${why}`);
}

// The instants an RFC 3339 date-time can name (years 0001..9999), all of which PostgreSQL stores.
const EARLIEST = Date.parse('0001-01-01T00:00:00Z') / 1000;
const LATEST = Date.parse('9999-12-31T23:59:59Z') / 1000 + 1; // a leap second is read as the next one

function time(value: number, name: string): number {
  if (!Number.isFinite(value) || value < EARLIEST || value > LATEST) throw new InvalidRevocationError(`${name} must be a time between the years 0001 and 9999`);
  return value;
}
