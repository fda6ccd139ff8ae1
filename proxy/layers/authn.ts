import { base64url, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Layer, Principal, RequestContext, Verdict } from '../context.js';
import { denial, type Denial } from '../denials.js';
import type { KeySource } from '../auth/key-source.js';
import { principalFrom, unforwardable } from '../auth/principal.js';
import { MAX_TOKEN_LIFETIME_SECONDS, unrevocableId } from '../auth/token-limits.js';
import { decodePercentRuns } from '../http/percent.js';
import { TokenCache } from '../auth/token-cache.js';
import { notAnAccessToken } from '../auth/token-type.js';
import type { ServicePolicy } from '../policy/model.js';

// Headers that point at a key: a verifier that follows them lets the token choose its own key.
const KEY_REFERENCE_HEADERS = ['jku', 'jwk', 'x5u', 'x5c'] as const;
const TOKEN_PARAMETERS = new Set(['access_token', 'token', 'id_token']);
// RFC 7515 §7.1: three base64url segments, unpadded (§2); the signature empty with alg none,
// which jose then refuses as an algorithm not allowed.
const COMPACT_JWS = /^[\w-]+\.[\w-]+\.[\w-]*$/;

export interface AuthnDeps {
  readonly keys: KeySource;
  /** Milliseconds since the epoch; injected so tests move time without patching globals. */
  readonly now: () => number;
  readonly onVerified?: (cacheHit: boolean) => void;
}

/**
 * Layer 3, authentication: one Authorization header, scheme Bearer (or DPoP for bound tokens),
 * a JWT verified with jose against the issuer's keys: algorithm allow-list, iss, aud, exp (required),
 * nbf, iat with leeway, and typed as an access token (auth.token_types). Results are cached per token until exp, or until the issuer's keys
 * change, so reuse costs a Map lookup.
 */
export function authnLayer(policy: ServicePolicy, deps: AuthnDeps): Layer {
  const auth = policy.auth;
  const cache = new TokenCache(auth.tokenCacheSize);
  // The keys the cached verifications were made with: once the issuer's keys change (one withdrawn,
  // perhaps for a leak), each token is verified again, not trusted until its exp.
  let cachedUnderKeys = deps.keys.version;
  const toleranceMs = auth.clockToleranceSeconds * 1000;
  const verifyOptions = {
    algorithms: [...auth.algorithms],
    issuer: auth.issuer,
    audience: auth.audience,
    clockTolerance: auth.clockToleranceSeconds,
    requiredClaims: ['exp', 'iat', 'sub', 'jti'],
  };

  return {
    name: 'authn',
    // Synchronous on a cache hit: the usual request waits for no promise here.
    check(ctx: RequestContext): Verdict | Promise<Verdict> {
      const presented = readToken(ctx);
      if ('code' in presented) return presented;
      const { token, scheme } = presented;
      ctx.token = token;
      ctx.tokenScheme = scheme;

      const nowMs = deps.now();
      const keysVersion = deps.keys.version;
      if (keysVersion !== cachedUnderKeys) {
        cache.clear();
        cachedUnderKeys = keysVersion;
      }
      const cached = cache.get(token, nowMs);
      if (cached !== undefined) return admit(ctx, cached, true);
      return verify(token, nowMs).then((verified) => {
        if ('code' in verified) return verified;
        // Keys fetched meanwhile: this verification may rest on the ones just replaced.
        if (deps.keys.version === keysVersion) cache.set(token, verified, verified.expiresAt * 1000 + toleranceMs);
        return admit(ctx, verified, false);
      });
    },
  };

  function admit(ctx: RequestContext, principal: Principal, cacheHit: boolean): Verdict {
    deps.onVerified?.(cacheHit);
    // RFC 9449 §7.1: a DPoP-bound token presented as Bearer is refused outright.
    if (principal.boundKeyThumbprint !== undefined && ctx.tokenScheme !== 'DPoP') return denial('authn.dpop_required');
    if (principal.boundKeyThumbprint === undefined && ctx.tokenScheme === 'DPoP') return denial('authn.token_malformed', 'DPoP scheme used with an unbound token');
    ctx.principal = principal;
    return undefined;
  }

  async function verify(token: string, nowMs: number) {
    // jose decodes leniently (whitespace, padding, stray bits past the last byte): each such
    // spelling of one token would verify and take a cache entry of its own.
    if (!isCanonicalCompactJws(token)) return denial('authn.token_malformed');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return denial('authn.token_malformed');
    }
    for (const name of KEY_REFERENCE_HEADERS) {
      if (header[name] !== undefined) return denial('authn.header_not_allowed', `'${name}' header`);
    }
    try {
      const { payload, protectedHeader } = await jwtVerify(token, deps.keys.getKey, { ...verifyOptions, currentDate: new Date(nowMs) });
      // Before anything is cached: an ID or refresh token of the same issuer is never admitted.
      const notAccess = notAnAccessToken(protectedHeader, payload, auth.tokenTypes);
      if (notAccess !== undefined) return denial('authn.claim_invalid', notAccess);
      // jose checks iat only with maxTokenAge; a token issued in the future is refused here.
      if ((payload.iat as number) * 1000 > nowMs + toleranceMs) return denial('authn.claim_invalid', 'iat is in the future');
      if (typeof payload.jti !== 'string' || typeof payload.sub !== 'string') return denial('authn.claim_invalid', 'sub and jti must be strings');
      // jose finds the expected audience among the entries; RFC 7519 §4.1.3 makes every entry a string.
      if (Array.isArray(payload.aud) && !payload.aud.every((entry) => typeof entry === 'string')) return denial('authn.claim_invalid', "'aud' claim: every entry must be a string");
      // A token no revocation could name is not accepted.
      for (const claim of ['jti', 'sub'] as const) {
        const why = unrevocableId(payload[claim] as string);
        if (why !== undefined) return denial('authn.claim_invalid', `'${claim}' claim ${why}`);
      }
      // Revocations are dropped that long after the tokens they match were issued.
      if ((payload.exp as number) - (payload.iat as number) > MAX_TOKEN_LIFETIME_SECONDS) return denial('authn.claim_invalid', "'exp' claim: the token lives longer than 24 h");
      // A token the issuer bound to its holder in a way this sidecar cannot check (an mTLS
      // certificate, x5t#S256; a malformed jkt) is refused, not taken as a bearer token.
      if (payload.cnf !== undefined && !isKeyThumbprintConfirmation(payload.cnf)) return denial('authn.claim_invalid', "'cnf' claim: only a DPoP key thumbprint (jkt) can be checked");
      const principal = principalFrom(payload, auth.rolesClaim);
      const why = unforwardable(principal, auth.rolesClaim);
      return why === undefined ? principal : denial('authn.claim_invalid', why);
    } catch (error) {
      return joseDenial(error);
    }
  }
}

/**
 * A compact JWS in its one spelling: base64url segments without padding, the signature's unused
 * low bits zero (RFC 4648 §3.5). Only the signature can be respelled without breaking it; the
 * other two segments are the signed bytes themselves.
 */
function isCanonicalCompactJws(token: string): boolean {
  if (!COMPACT_JWS.test(token)) return false;
  const signature = token.slice(token.lastIndexOf('.') + 1);
  try {
    return base64url.encode(base64url.decode(signature)) === signature;
  } catch {
    // 4n+1 characters (a token cut short) are no base64url at all: jose throws.
    return false;
  }
}

/** `cnf` as RFC 9449 §6.1 binds a DPoP key: `{ "jkt": <base64url SHA-256 thumbprint> }`, nothing else. */
function isKeyThumbprintConfirmation(cnf: unknown): boolean {
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return false;
  const members = Object.keys(cnf);
  const { jkt } = cnf as { jkt?: unknown };
  return members.length === 1 && typeof jkt === 'string' && /^[A-Za-z0-9_-]{43}$/.test(jkt);
}

function readToken(ctx: RequestContext): { token: string; scheme: 'Bearer' | 'DPoP' } | Denial {
  const raw = ctx.req.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).length === 13 && (raw[i] as string).toLowerCase() === 'authorization') count++;
  if (count > 1) return denial('authn.token_location', 'more than one Authorization header');
  if (tokenInQuery(ctx.query)) return denial('authn.token_location', 'token in the query string');
  const header = ctx.req.headers.authorization;
  if (!header) return denial('authn.token_missing');
  const space = header.indexOf(' ');
  const scheme = space === -1 ? '' : header.slice(0, space);
  const token = space === -1 ? '' : header.slice(space + 1).trim();
  if (!/^(bearer|dpop)$/i.test(scheme) || token.length === 0) return denial('authn.token_missing', 'expected Authorization: Bearer <token>');
  return { token, scheme: scheme.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer' };
}

/**
 * A token parameter in the query, under any spelling a framework reads as one: percent-escaped
 * (`access%5Ftoken`), any case, a PHP/Rails `[]` suffix, `;` as a separator, and PHP's `.`, space
 * or `+` for `_` (`access.token`).
 */
function tokenInQuery(query: string): boolean {
  if (query.length === 0) return false;
  for (const parameter of query.slice(1).split(/[&;]/)) {
    const end = parameter.indexOf('=');
    const name = decodePercentRuns(end === -1 ? parameter : parameter.slice(0, end)).trim().toLowerCase();
    const base = (name.endsWith('[]') ? name.slice(0, -2) : name).replace(/[ .+]/g, '_');
    if (TOKEN_PARAMETERS.has(base)) return true;
  }
  return false;
}

/** The one mapping from jose (and key source) error codes to our denials; matched on .code. */
export function joseDenial(error: unknown): Denial {
  const { code, claim } = error as { code?: string; claim?: string };
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return denial('authn.token_expired');
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return denial('authn.alg_not_allowed');
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return denial('authn.unknown_key');
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return denial('authn.bad_signature');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return denial('authn.claim_invalid', claim ? `'${claim}' claim` : undefined);
    case 'CA_A2A_KEYS_UNAVAILABLE':
      return denial('authn.jwks_unavailable', undefined, { cause: keysUnavailableCause(error as Error) });
    default:
      // ERR_JWS_INVALID, ERR_JWT_INVALID, ERR_JOSE_NOT_SUPPORTED (e.g. alg none) and anything else.
      return denial('authn.token_malformed');
  }
}

/** What the keys' fetch said and what it met (a refused connection, a timeout), for the audit line. */
function keysUnavailableCause(error: Error): string {
  const said: string[] = [];
  for (let at: unknown = error; at instanceof Error && said.length < 5; at = at.cause) {
    if (at.message !== '' && !said.includes(at.message)) said.push(at.message);
  }
  return said.join(': ').slice(0, 300);
}
