import * as oauth from 'oauth4webapi';
import { TooLargeError } from '../http/read-at-most.js';

/** Stable reasons a token source fails; match on these, never on messages or classes. */
export type TokenSourceErrorCode =
  /** The options cannot work (bad issuer URL, plain http to a non-loopback host, …). */
  | 'INVALID_OPTIONS'
  /** Network failure, timeout, 5xx or 429 (throttled) from the issuer: retrying later may help. */
  | 'ISSUER_UNREACHABLE'
  /** The issuer answered, but not like the configured OAuth server (issuer mismatch, bad metadata or body). */
  | 'ISSUER_INVALID'
  /** Unknown client or wrong secret (`invalid_client`). */
  | 'INVALID_CLIENT'
  /** Any other OAuth error response to the token request (`unauthorized_client`, `invalid_dpop_proof`, …). */
  | 'TOKEN_REQUEST_REJECTED';

/** The error a token source rejects with. `message` never holds a secret or a token. */
export class TokenSourceError extends Error {
  override readonly name = 'TokenSourceError';
  readonly code: TokenSourceErrorCode;
  /** The wait the issuer's answer asked for in its Retry-After (RFC 9110 §10.2.3), in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(code: TokenSourceErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options);
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * Statuses that say "not now" rather than "not like this": 5xx, and 429 Too Many Requests
 * (RFC 6585 §4), which a throttling issuer or the gateway in front of it answers.
 */
const isTemporary = (status: number): boolean => status >= 500 || status === 429;

/** Maps whatever discovery or the token request threw to a {@link TokenSourceError}. */
export function toTokenSourceError(err: unknown, issuer: string, step: 'discovery' | 'token request'): TokenSourceError {
  if (err instanceof TokenSourceError) return err;
  if (err instanceof TooLargeError) return new TokenSourceError('ISSUER_INVALID', `${step} at ${issuer}: ${err.message}`, { cause: err });
  const response = responseOf(err);
  const options = { cause: err, retryAfterMs: retryAfterMs(response?.headers.get('retry-after')) };
  const refusal = oauthRefusal(err);
  if (refusal !== undefined) {
    const detail = refusal.description === undefined ? refusal.error : `${refusal.error}: ${refusal.description}`;
    if (isTemporary(refusal.status)) {
      return new TokenSourceError('ISSUER_UNREACHABLE', `${step} at ${issuer} failed with HTTP ${refusal.status} (${detail})`, options);
    }
    const reason = refusal.error === 'invalid_client' ? 'INVALID_CLIENT' : 'TOKEN_REQUEST_REJECTED';
    return new TokenSourceError(reason, `${step} at ${issuer} was refused: ${detail}`, options);
  }
  const code = errorCode(err);
  if (code !== undefined && code.startsWith('OAUTH_')) {
    if (response !== undefined && isTemporary(response.status)) {
      return new TokenSourceError('ISSUER_UNREACHABLE', `${step} at ${issuer} failed with HTTP ${response.status}`, options);
    }
    // A 4xx page that is no OAuth error (a proxy's or a firewall's) is named by its status.
    const status = response === undefined || response.status === 200 ? '' : ` (HTTP ${response.status})`;
    return new TokenSourceError('ISSUER_INVALID', `${step} at ${issuer}${status}: ${messageOf(err)}`, options);
  }
  // fetch() rejects with a TypeError whose cause holds the socket error, or a TimeoutError on abort.
  return new TokenSourceError('ISSUER_UNREACHABLE', `${step} at ${issuer} failed: ${networkReason(err)}`, { cause: err });
}

interface OAuthRefusal {
  readonly error: string;
  readonly description: string | undefined;
  readonly status: number;
}

/**
 * An OAuth error response arrives either as a JSON body (RFC 6749 §5.2) or, for a 401 with
 * client_secret_basic, as a `WWW-Authenticate` challenge carrying the same `error` parameter;
 * oauth4webapi reports them with two codes. Matched on `.code`, so the casts are safe.
 */
function oauthRefusal(err: unknown): OAuthRefusal | undefined {
  const code = errorCode(err);
  if (code === oauth.RESPONSE_BODY_ERROR) {
    const body = err as oauth.ResponseBodyError;
    return { error: body.error, description: body.error_description, status: body.status };
  }
  if (code === oauth.WWW_AUTHENTICATE_CHALLENGE) {
    const challenge = err as oauth.WWWAuthenticateChallengeError;
    const parameters = challenge.cause.find((c) => c.parameters.error !== undefined)?.parameters;
    if (parameters?.error === undefined) return undefined;
    return { error: parameters.error, description: parameters.error_description, status: challenge.status };
  }
  return undefined;
}

function errorCode(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

interface IssuerResponse {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
}

/**
 * The issuer's answer that failed: oauth4webapi keeps it in `response` for an OAuth error (a body
 * or a challenge), in `cause` for any other HTTP-level failure. Read by shape, not by class.
 */
function responseOf(err: unknown): IssuerResponse | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  for (const candidate of [(err as { response?: unknown }).response, (err as { cause?: unknown }).cause]) {
    if (typeof candidate !== 'object' || candidate === null) continue;
    const { status, headers } = candidate as { status?: unknown; headers?: { get?: unknown } };
    if (typeof status === 'number' && typeof headers?.get === 'function') return candidate as IssuerResponse;
  }
  return undefined;
}

/** RFC 9110 §10.2.3: Retry-After is delta-seconds or an HTTP-date; undefined when absent, past or unreadable. */
function retryAfterMs(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  const ms = /^\d+$/.test(trimmed) ? Number(trimmed) * 1000 : Date.parse(trimmed) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function networkReason(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timed out';
  const cause = typeof err === 'object' && err !== null ? (err as { cause?: unknown }).cause : undefined;
  // A cause without a code (fetch's own refusals: 'bad port') says more than 'fetch failed'.
  return errorCode(cause) ?? (cause instanceof Error ? `${messageOf(err)}: ${cause.message}` : messageOf(err));
}
