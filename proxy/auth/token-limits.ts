/**
 * What a token must keep within for every revocation to be able to name and outlive it. One set
 * of values for authn and every revoker (sidecars, admin API, `ca-a2a revoke`), which cannot know
 * each sidecar's policy.
 */

/**
 * The longest lifetime (`exp - iat`) of an access token any sidecar accepts, 24 h (the issuer's
 * are 300 s). Revocations are kept this long past the tokens they match were issued, then
 * dropped: a token living longer would be accepted again once the revocation that refused it is gone.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600;

/** The longest `jti` or `sub`, in characters, that a revocation names (and a store keys by). */
export const MAX_TOKEN_ID_LENGTH = 200;

// With the u flag a pair is one code point: only a surrogate standing alone is in Cs.
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/**
 * Why a `jti` or `sub` cannot be named by a revocation, or undefined when it can: 1..200
 * characters, not only whitespace, no NUL (PostgreSQL text cannot hold one), no unpaired surrogate (a JSON `\ud800`
 * escape: PostgreSQL's UTF-8 text stores it as U+FFFD, so the revocation loaded back names
 * another value).
 */
export function unrevocableId(value: string): string | undefined {
  if (value.length === 0 || value.length > MAX_TOKEN_ID_LENGTH) return `must be 1..${MAX_TOKEN_ID_LENGTH} characters`;
  // The admin API refuses a blank jti or subject (a mistake in a request, not a value to revoke).
  if (value.trim().length === 0) return 'must not be blank';
  if (value.includes('\u0000')) return 'must not contain NUL';
  if (UNPAIRED_SURROGATE.test(value)) return 'must not contain an unpaired surrogate';
  return undefined;
}
