import { createLocalJWKSet, createRemoteJWKSet, customFetch, jwksCache, type ExportedJWKSCache, type JWTVerifyGetKey, type JSONWebKeySet } from 'jose';
import type { AuthPolicy } from '../policy/model.js';
import type { SidecarMetrics } from '../observe/metrics.js';
import { readAtMost, TooLargeError } from '../http/read-at-most.js';

/** Thrown when the issuer's discovery or JWKS cannot be fetched or is unusable. */
export class KeysUnavailableError extends Error {
  readonly code = 'CA_A2A_KEYS_UNAVAILABLE';
}

/** With no keys to fall back on, a failed fetch is retried after this long (Envoy's failed_refetch_duration). */
const FAILED_REFETCH_MS = 1_000;

/**
 * The issuer's signing keys: discovery (or an explicit jwks_uri), then jose's remote JWKS with
 * our cache age, cooldown and timeout. jose single-flights refetches and refetches on an
 * unknown kid at most once per cooldown. On top of it: when a fetch fails, the last good keys
 * keep verifying (an IdP outage must not log everyone out) and the IdP is not asked again before
 * the cooldown; with no good keys yet, it is asked again after a second at the soonest. Either
 * way an outage, or a flood of forged tokens during one, cannot turn into a fetch per request.
 */
export class KeySource {
  readonly #auth: AuthPolicy;
  readonly #metrics: SidecarMetrics;
  readonly #service: string;
  #remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  #discovery: Promise<void> | undefined;
  #stale: { jwks: JSONWebKeySet; text: string; local: JWTVerifyGetKey } | undefined;
  /**
   * Where jose puts each key set it fetches, the very object it parsed: seeing a new one costs a
   * comparison. (`remote.jwks()` returns a fresh copy on every call, so comparing those rebuilt the
   * last good keys, their imported public keys included, on every token not yet cached.)
   */
  readonly #fetched: Partial<ExportedJWKSCache> = {};
  readonly #clock: () => number;
  #lastFailureAt = -Infinity;
  /** What that failure was: the refusals it causes until the next fetch name it. */
  #lastFailure: Error | undefined;
  #version = 0;

  /**
   * `clock` times the waits after a failed fetch, in milliseconds: monotonic, so that the wall
   * clock stepped back (NTP correcting a clock that ran ahead) cannot stretch them by the step.
   */
  constructor(auth: AuthPolicy, metrics: SidecarMetrics, service: string, clock: () => number = () => performance.now()) {
    this.#auth = auth;
    this.#metrics = metrics;
    this.#service = service;
    this.#clock = clock;
  }

  /** The jose key resolver for jwtVerify. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const cooldownMs = this.#auth.jwksCooldownSeconds * 1000;
    const sinceFailure = this.#clock() - this.#lastFailureAt;
    if (this.#stale && sinceFailure < cooldownMs) return this.#stale.local(header, token);
    if (!this.#stale && sinceFailure < FAILED_REFETCH_MS) {
      throw new KeysUnavailableError('signing keys unavailable: the last fetch failed moments ago', { cause: this.#lastFailure });
    }
    let remote: ReturnType<typeof createRemoteJWKSet> | undefined;
    try {
      remote = this.#remote ?? (await this.#discover());
      return await remote(header, token);
    } catch (error) {
      if (!isFetchFailure(error)) throw error;
      this.#failed(error as Error);
      if (this.#stale) return this.#stale.local(header, token);
      throw error instanceof KeysUnavailableError ? error : new KeysUnavailableError('signing keys unavailable', { cause: error });
    } finally {
      // Whatever the token's fate, keys jose now holds are the last good ones.
      this.#remember();
    }
  };

  /**
   * Changes when the keys in force do (a fetch that found other keys than the last), not on a
   * fetch that found the same: what was verified under an older version may rest on a key the
   * issuer has since withdrawn.
   */
  get version(): number {
    return this.#version;
  }

  /** Fetches discovery and keys now, so the first request does not pay for it. Never throws. */
  async warm(): Promise<Error | undefined> {
    try {
      const remote = this.#remote ?? (await this.#discover());
      await remote.reload();
      this.#remember();
      return undefined;
    } catch (error) {
      if (isFetchFailure(error)) this.#failed(error as Error);
      return error as Error;
    }
  }

  #failed(error: Error): void {
    this.#lastFailureAt = this.#clock();
    this.#lastFailure = error;
  }

  #remember(): void {
    const jwks = this.#fetched.jwks;
    if (!jwks || jwks === this.#stale?.jwks) return;
    const text = JSON.stringify(jwks);
    if (text !== this.#stale?.text) this.#version++;
    this.#stale = { jwks, text, local: createLocalJWKSet(jwks) };
  }

  #discover(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    this.#discovery ??= this.#resolveJwksUri().then(
      (uri) => {
        this.#remote = createRemoteJWKSet(new URL(uri), {
          cacheMaxAge: this.#auth.jwksCacheMaxAgeSeconds * 1000,
          cooldownDuration: this.#auth.jwksCooldownSeconds * 1000,
          timeoutDuration: this.#auth.jwksTimeoutMs,
          [customFetch]: this.#countedFetch,
          [jwksCache]: this.#fetched as ExportedJWKSCache,
        });
      },
      (error: unknown) => {
        this.#discovery = undefined;
        throw error;
      },
    );
    return this.#discovery.then(() => this.#remote as ReturnType<typeof createRemoteJWKSet>);
  }

  async #resolveJwksUri(): Promise<string> {
    if (this.#auth.jwksUri) return this.#auth.jwksUri;
    const url = discoveryUrl(this.#auth.issuer);
    let response: Response;
    try {
      response = await this.#countedFetch(url, { signal: AbortSignal.timeout(this.#auth.jwksTimeoutMs), redirect: 'manual' });
    } catch (error) {
      throw new KeysUnavailableError(`discovery failed: ${url}`, { cause: error });
    }
    const document = (await response.json().catch(() => undefined)) as { issuer?: unknown; jwks_uri?: unknown } | undefined;
    // OpenID Connect Discovery §4.3: the document's issuer must be exactly the one configured. A
    // jwks_uri that is no absolute URL (a path) is refused here, as a failed discovery asked again
    // later: thrown once discovery had succeeded, it was kept, and every token refused as malformed.
    if (!response.ok || document?.issuer !== this.#auth.issuer || typeof document.jwks_uri !== 'string' || !URL.canParse(document.jwks_uri)) {
      throw new KeysUnavailableError(`discovery document at ${url} unusable (status ${response.status})`);
    }
    return document.jwks_uri;
  }

  /**
   * Every discovery and JWKS fetch: counted, and read whole here up to MAX_KEYS_DOCUMENT_BYTES, so
   * that an issuer (or whoever answers in its place) cannot make the sidecar buffer and parse an
   * endless answer; a longer one is a failed fetch (`too_large`), the last good keys stay in force.
   */
  readonly #countedFetch = async (url: string, init: RequestInit): Promise<Response> => {
    let response: Response;
    let body: Uint8Array;
    try {
      response = await fetch(url, init);
      body = await readAtMost(response, MAX_KEYS_DOCUMENT_BYTES);
    } catch (error) {
      this.#metrics.jwksFetches.inc({ service: this.#service, result: error instanceof TooLargeError ? 'too_large' : 'network_error' });
      throw error;
    }
    const result = !response.ok ? 'http_error' : keysDocument(body) ? 'success' : 'invalid';
    this.#metrics.jwksFetches.inc({ service: this.#service, result });
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

/** A discovery document or JWKS larger than this is refused: Keycloak's, with a few keys, is about 3 KB. */
const MAX_KEYS_DOCUMENT_BYTES = 1024 * 1024;

/**
 * Whether a 200's body is what was asked for, a discovery document (`jwks_uri`) or a JWKS (`keys`),
 * so that a fetch counted `success` gave the sidecar something to use: an issuer answering garbage
 * with 200 is counted `invalid`, as the runbook's `result!="success"` expects.
 */
/**
 * The issuer's OpenID discovery document: OIDC Discovery 1.0 §4 appends the path to the issuer
 * with its trailing slash removed, so `…/realms/x/` and `…/realms/x` name the same document.
 */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}

function keysDocument(body: Uint8Array): boolean {
  try {
    const document = JSON.parse(Buffer.from(body).toString('utf8')) as unknown;
    if (typeof document !== 'object' || document === null) return false;
    return Array.isArray((document as { keys?: unknown }).keys) || typeof (document as { jwks_uri?: unknown }).jwks_uri === 'string';
  } catch {
    return false;
  }
}

function isFetchFailure(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  // ERR_JOSE_GENERIC is jose's code for a non-200 or non-JSON JWKS answer; no code at all is a
  // network error from fetch. Key mismatches (ERR_JWKS_NO_MATCHING_KEY …) are token problems.
  return code === undefined || code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JWKS_INVALID' || code === 'ERR_JOSE_GENERIC' || code === 'CA_A2A_KEYS_UNAVAILABLE';
}
