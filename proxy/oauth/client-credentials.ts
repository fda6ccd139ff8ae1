import type { webcrypto } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { TokenSourceError, toTokenSourceError } from './token-source-error.js';
import { isLoopbackHostname } from '../http/loopback.js';
import { readAtMost } from '../http/read-at-most.js';

/** An access token ready to put in an `Authorization: <tokenType> <accessToken>` header. */
export interface AccessToken {
  readonly accessToken: string;
  /** `DPoP` when the issuer bound the token to `dpopKey` (RFC 9449 §5), else `Bearer`. */
  readonly tokenType: 'Bearer' | 'DPoP';
  /** When the token expires, in epoch milliseconds (local clock at receipt + `expires_in`). */
  readonly expiresAt: number;
}

/** Hands out a client's access token, fetching a new one only when needed. */
export interface TokenSource {
  getToken(): Promise<AccessToken>;
  /**
   * Forgets `token` if it is the cached one, so the next getToken fetches a new one: for a token a
   * resource server refused (401: revoked, or signed by a key the issuer has since replaced).
   * A newer token cached meanwhile is kept.
   */
  invalidate(token: AccessToken): void;
}

/** Options of {@link createTokenSource}. */
export interface TokenSourceOptions {
  /** Issuer identifier, e.g. `https://keycloak.example/realms/ca-a2a`; plain http only on loopback. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** When given, tokens are requested DPoP-bound to this key pair (ES256 or another alg the issuer accepts). */
  dpopKey?: webcrypto.CryptoKeyPair;
  /** Refresh this long before expiry; default 30. Capped at half the token's lifetime. */
  refreshSkewSeconds?: number;
  /** Timeout of each HTTP request to the issuer; default 5000. */
  fetchTimeoutMs?: number;
  /**
   * After a request to the issuer failed, callers get the same error (or the still-valid cached
   * token) for this long without another request; default 1000. Longer when the issuer's answer
   * carried a Retry-After: for that long, up to 60 s.
   */
  retryAfterFailureMs?: number;
  /**
   * Plain http to an issuer off this machine, when the network itself is trusted or encrypts (ECS
   * Service Connect TLS, a private compose network). Off: plain http on loopback only.
   */
  allowPlainHttp?: boolean;
}

/**
 * The longest wait an issuer's Retry-After imposes between requests: past it, an issuer asking
 * for an hour would leave the sidecar without a token for that hour once its cached one expired.
 */
const MAX_RETRY_AFTER_MS = 60_000;

/** A discovery document or token response larger than this is refused: Keycloak's are a few KB. */
const MAX_ISSUER_ANSWER_BYTES = 1024 * 1024;

/**
 * Every request to the issuer, its answer read whole here up to MAX_ISSUER_ANSWER_BYTES:
 * oauth4webapi reads a body whole, so an issuer (or whoever answers in its place) could make the
 * sidecar buffer an endless answer, or hand it a token of any size to send with every call. As the
 * inbound side's key source bounds discovery and JWKS.
 */
async function boundedFetch(url: string, init: RequestInit): Promise<Response> {
  const response = await fetch(url, init);
  const body = await readAtMost(response, MAX_ISSUER_ANSWER_BYTES);
  // Fetch forbids a body on these statuses, even an empty one.
  const bodyless = response.status === 204 || response.status === 205 || response.status === 304;
  return new Response(bodyless ? null : body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/** RFC 6750 §2.1 (and RFC 9449 §7.1): the access token's syntax in `Authorization: Bearer|DPoP <token>`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Used when the issuer omits `expires_in` (RFC 6749 §5.1 only recommends it). */
const FALLBACK_LIFETIME_MS = 60_000;

/**
 * Creates a client_credentials token source (RFC 6749 §4.4) on oauth4webapi: OIDC discovery once,
 * then a cached token that is refreshed before it expires. Concurrent callers share one in-flight
 * request. Past its refresh time, a token with more than half the refresh margin left is handed
 * out at once while the refresh runs behind it, so a slow or hung issuer holds up no call; nearer
 * its expiry, callers wait for the refresh. If a refresh fails while the cached token is still
 * valid, the cached token is returned. After a failure the issuer is not asked again for
 * `retryAfterFailureMs`, or for the issuer's Retry-After (at most 60 s): an issuer refusing,
 * throttling or failing fast is not asked as often as callers call.
 * Rejects with a {@link TokenSourceError}; throws one synchronously for unusable options.
 */
export function createTokenSource(opts: TokenSourceOptions): TokenSource {
  const plainHttpOk = (url: URL): boolean => opts.allowPlainHttp === true || isLoopback(url);
  const issuerUrl = parseIssuer(opts.issuer, plainHttpOk);
  const skewMs = (opts.refreshSkewSeconds ?? 30) * 1000;
  const timeoutMs = opts.fetchTimeoutMs ?? 5000;
  const retryAfterFailureMs = opts.retryAfterFailureMs ?? 1000;
  const client: oauth.Client = { client_id: opts.clientId };
  const clientAuth = oauth.ClientSecretBasic(opts.clientSecret);
  // One handle per source: it remembers the server's DPoP nonce between requests.
  const dpop = opts.dpopKey === undefined ? undefined : oauth.DPoP(client, opts.dpopKey);

  let server: oauth.AuthorizationServer | undefined;
  let cached: { token: AccessToken; refreshAt: number } | undefined;
  let inFlight: Promise<AccessToken> | undefined;
  let failed: { error: unknown; until: number } | undefined;

  async function discover(): Promise<oauth.AuthorizationServer> {
    if (server !== undefined) return server;
    try {
      const response = await oauth.discoveryRequest(issuerUrl, {
        algorithm: 'oidc',
        signal: AbortSignal.timeout(timeoutMs),
        [oauth.allowInsecureRequests]: plainHttpOk(issuerUrl),
        [oauth.customFetch]: boundedFetch,
      });
      server = await oauth.processDiscoveryResponse(issuerUrl, response);
      return server;
    } catch (err) {
      throw toTokenSourceError(err, opts.issuer, 'discovery');
    }
  }

  async function requestToken(as: oauth.AuthorizationServer, retryNonce: boolean): Promise<oauth.TokenEndpointResponse> {
    const endpoint = as.token_endpoint === undefined ? undefined : new URL(as.token_endpoint);
    try {
      const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, new URLSearchParams(), {
        DPoP: dpop,
        signal: AbortSignal.timeout(timeoutMs),
        [oauth.allowInsecureRequests]: endpoint !== undefined && plainHttpOk(endpoint),
        [oauth.customFetch]: boundedFetch,
      });
      return await oauth.processClientCredentialsResponse(as, client, response);
    } catch (err) {
      // RFC 9449 §8: the server may demand a nonce; the handle has stored it, so retry once.
      if (retryNonce && dpop !== undefined && oauth.isDPoPNonceError(err)) return requestToken(as, false);
      throw toTokenSourceError(err, opts.issuer, 'token request');
    }
  }

  async function fetchToken(): Promise<AccessToken> {
    const as = await discover();
    const response = await requestToken(as, true);
    const receivedAt = Date.now();
    const lifetimeMs = response.expires_in === undefined ? FALLBACK_LIFETIME_MS : response.expires_in * 1000;
    const token: AccessToken = {
      accessToken: response.access_token,
      tokenType: response.token_type === 'dpop' ? 'DPoP' : 'Bearer',
      expiresAt: receivedAt + lifetimeMs,
    };
    if (dpop !== undefined && token.tokenType !== 'DPoP') {
      throw new TokenSourceError('ISSUER_INVALID', `${opts.issuer} ignored the DPoP proof and issued a Bearer token`);
    }
    // Anything else cannot go in an Authorization header: cached, it failed every call until it expired.
    if (!B64TOKEN.test(token.accessToken)) {
      throw new TokenSourceError('ISSUER_INVALID', `${opts.issuer} issued an access_token that is not a b64token (RFC 6750 §2.1)`);
    }
    // A skew larger than the lifetime would refetch on every call; never refresh before half-life.
    cached = { token, refreshAt: Math.max(token.expiresAt - skewMs, receivedAt + lifetimeMs / 2) };
    return token;
  }

  async function refresh(): Promise<AccessToken> {
    try {
      const token = await fetchToken();
      failed = undefined;
      return token;
    } catch (err) {
      // An issuer that said when to ask again (429, 503 with Retry-After) is not asked sooner.
      const asked = err instanceof TokenSourceError ? Math.min(err.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS) : 0;
      failed = { error: err, until: Date.now() + Math.max(retryAfterFailureMs, asked) };
      const stale = cached?.token;
      if (stale !== undefined && Date.now() < stale.expiresAt) return stale;
      throw err;
    } finally {
      inFlight = undefined;
    }
  }

  return {
    getToken(): Promise<AccessToken> {
      const now = Date.now();
      if (cached !== undefined && now < cached.refreshAt) return Promise.resolve(cached.token);
      if (inFlight === undefined && failed !== undefined && now < failed.until) {
        return cached !== undefined && now < cached.token.expiresAt ? Promise.resolve(cached.token) : Promise.reject(failed.error);
      }
      inFlight ??= refresh();
      if (cached !== undefined && now < cached.token.expiresAt - skewMs / 2) {
        // Its failure is for a later caller to see (refresh keeps a still-valid token meanwhile).
        inFlight.catch(() => undefined);
        return Promise.resolve(cached.token);
      }
      return inFlight;
    },
    invalidate(token: AccessToken): void {
      if (cached?.token === token) cached = undefined;
    },
  };
}

function parseIssuer(issuer: string, plainHttpOk: (url: URL) => boolean): URL {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new TokenSourceError('INVALID_OPTIONS', `issuer '${issuer}' is not a URL`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && plainHttpOk(url))) {
    throw new TokenSourceError('INVALID_OPTIONS', `issuer ${issuer} must use https (plain http is allowed on loopback only, or with --allow-http-issuer)`);
  }
  return url;
}

/**
 * oauth4webapi refuses plain http unless told otherwise. Allow it only when the issuer is on this
 * machine (the dev issuer on 127.0.0.1), where no network attacker sits between client and server.
 */
function isLoopback(url: URL): boolean {
  return isLoopbackHostname(url.hostname);
}
