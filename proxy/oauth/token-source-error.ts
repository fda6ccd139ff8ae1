import * as oauth from 'oauth4webapi';

/** Stable reasons a token source fails; match on these, never on messages or classes. */
export type TokenSourceErrorCode =
  /** The options cannot work (bad issuer URL, plain http to a non-loopback host, …). */
  | 'INVALID_OPTIONS'
  /** Network failure, timeout or 5xx from the issuer: retrying later may help. */
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

  constructor(code: TokenSourceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Maps whatever discovery or the token request threw to a {@link TokenSourceError}. */
export function toTokenSourceError(err: unknown, issuer: string, step: 'discovery' | 'token request'): TokenSourceError {
  if (err instanceof TokenSourceError) return err;
  const refusal = oauthRefusal(err);
  if (refusal !== undefined) {
    const detail = refusal.description === undefined ? refusal.error : `${refusal.error}: ${refusal.description}`;
    if (refusal.status >= 500) {
      return new TokenSourceError('ISSUER_UNREACHABLE', `${step} at ${issuer} failed with HTTP ${refusal.status} (${detail})`, { cause: err });
    }
    const reason = refusal.error === 'invalid_client' ? 'INVALID_CLIENT' : 'TOKEN_REQUEST_REJECTED';
    return new TokenSourceError(reason, `${step} at ${issuer} was refused: ${detail}`, { cause: err });
  }
  const code = errorCode(err);
  if (code !== undefined && code.startsWith('OAUTH_')) {
    const status = responseStatus(err);
    if (status !== undefined && status >= 500) {
      return new TokenSourceError('ISSUER_UNREACHABLE', `${step} at ${issuer} failed with HTTP ${status}`, { cause: err });
    }
    return new TokenSourceError('ISSUER_INVALID', `${step} at ${issuer}: ${messageOf(err)}`, { cause: err });
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

function responseStatus(err: unknown): number | undefined {
  // oauth4webapi puts the offending Response in `cause` for HTTP-level failures.
  const cause = typeof err === 'object' && err !== null ? (err as { cause?: unknown }).cause : undefined;
  const status = typeof cause === 'object' && cause !== null ? (cause as { status?: unknown }).status : undefined;
  return typeof status === 'number' ? status : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function networkReason(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timed out';
  const cause = typeof err === 'object' && err !== null ? (err as { cause?: unknown }).cause : undefined;
  return errorCode(cause) ?? messageOf(err);
}
