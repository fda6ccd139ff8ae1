import { timingSafeEqual } from 'node:crypto';
import { base64url, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { ProofKeyCache } from '../integrity/proof-key-cache.js';
import type { Layer, Principal, RequestContext, Verdict } from '../context.js';
import { denial, type Denial } from '../denials.js';
import { parseContentDigest, sha256 } from '../integrity/digest.js';
import { expectedHtus, normaliseHtu } from '../integrity/htu.js';
import type { IntegrityMode, ServicePolicy } from '../policy/model.js';

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'] as const;
// Checking an RSA signature costs more the longer the modulus and the public exponent, both the
// client's choice (a 3072-bit exponent: about 7 ms, about 50 ES256 checks). Clients use 65537 and
// at most 4096 bits; in base64url (RFC 7518 §6.3.1: no leading zeros) that is at most 683 and 6
// characters, and a longer string cannot decode to less.
const MAX_RSA_MODULUS_CHARS = Math.ceil(4096 / 6);
const MAX_RSA_EXPONENT_CHARS = Math.ceil(32 / 6);
const KEY_MEMBERS = ['x', 'y', 'n', 'e'] as const;
const BASE64URL = /^[\w-]+$/;
const STRICTNESS: Record<IntegrityMode, number> = { off: 0, optional: 1, required: 2 };

export interface IntegrityDeps {
  /** --public-url values: the URLs clients address this service by (htu). */
  readonly publicUrls: readonly string[];
  readonly now: () => number;
}

/**
 * Layer 6, integrity (docs/integrity.md): a DPoP proof (RFC 9449 §4.3) signed by the key in its
 * own header, for this method and URL, fresh, bound to the presented token (ath) and to the exact
 * body (htd, plus Content-Digest per RFC 9530); for a token with cnf.jkt the proof key must be
 * that key. Runs after parsing because the mode can be set per method.
 */
export function integrityLayer(policy: ServicePolicy, deps: IntegrityDeps): Layer {
  const settings = policy.integrity;
  const verifyOptions = { typ: 'dpop+jwt', algorithms: [...settings.algorithms] };
  const maxAgeMs = settings.proofMaxAgeSeconds * 1000;
  const leewayMs = settings.leewaySeconds * 1000;
  const keys = new ProofKeyCache(10_000);

  return {
    name: 'integrity',
    // Synchronous up to the proof itself: without a proof (integrity off, token unbound) no promise is made.
    check(ctx: RequestContext): Verdict | Promise<Verdict> {
      const mode = effectiveMode(policy, ctx);
      const principal = ctx.principal;
      if (principal === undefined) return denial('internal.error', 'integrity check without a principal');
      if (settings.requireBoundTokens && principal.boundKeyThumbprint === undefined) return denial('integrity.key_mismatch', 'this service accepts only DPoP-bound tokens');
      const proofs = headerValues(ctx, 'dpop');
      if (proofs.length > 1) return denial('integrity.proof_missing', 'exactly one DPoP header');
      const proof = proofs[0];
      // A bound token is never usable without its key, whatever the mode (RFC 9449 §7.1).
      if (proof === undefined && (mode === 'required' || principal.boundKeyThumbprint !== undefined)) return denial('integrity.proof_missing');
      // Optional without a proof: a Content-Digest that was sent still holds, or the agent would
      // read a digest of other bytes as the sidecar's word on this body.
      if (proof === undefined) return mode === 'optional' ? checkContentDigest(ctx, mode, bodyDigestOf(ctx)) : undefined;
      if (mode === 'off' && principal.boundKeyThumbprint === undefined) return undefined;
      return verifyProof(ctx, mode, principal, proof);
    },
  };

  async function verifyProof(ctx: RequestContext, mode: IntegrityMode, principal: Principal, proof: string): Promise<Verdict> {
    // Hashed once: both Content-Digest and the proof's htd are checked against it (a 1 MiB body
    // costs about 0.5 ms to hash here).
    const bodyDigest = bodyDigestOf(ctx);
    const digestRefusal = checkContentDigest(ctx, mode, bodyDigest);
    if (digestRefusal) return digestRefusal;

    let header;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      return denial('integrity.proof_invalid', 'not a JWS');
    }
    // The header is the client's JSON: 'jwk' may be null, a string or an array as well.
    const jwk = header.jwk as unknown;
    if (header.typ !== 'dpop+jwt' || typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return denial('integrity.proof_invalid', "typ must be dpop+jwt with a 'jwk' object header");
    if (PRIVATE_JWK_MEMBERS.some((member) => (jwk as Record<string, unknown>)[member] !== undefined)) return denial('integrity.proof_invalid', 'jwk holds private key material');
    if (typeof header.alg !== 'string' || !settings.algorithms.includes(header.alg)) return denial('integrity.proof_invalid', 'algorithm not allowed');
    if (isCostlyRsaKey(jwk)) return denial('integrity.proof_invalid', 'RSA proof keys are at most 4096 bits with a public exponent of at most 32 bits');
    if (!hasCanonicalKeyMembers(jwk)) return denial('integrity.proof_invalid', 'jwk members must be unpadded base64url');
    let payload;
    let proofKey;
    try {
      proofKey = await keys.get(jwk as JWK, header.alg);
      ({ payload } = await jwtVerify(proof, proofKey.key, verifyOptions));
    } catch (error) {
      const code = (error as { code?: string }).code;
      return denial('integrity.proof_invalid', code === 'ERR_JOSE_ALG_NOT_ALLOWED' ? 'algorithm not allowed' : 'signature or format invalid');
    }
    const { jti, htm, htu, iat, ath, htd } = payload as Record<string, unknown>;
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256 || typeof htm !== 'string' || typeof htu !== 'string' || typeof iat !== 'number') {
      return denial('integrity.proof_invalid', 'jti, htm, htu and iat are required');
    }
    if (htm !== ctx.req.method) return denial('integrity.proof_mismatch', 'htm');
    const expected = expectedHtus(deps.publicUrls, ctx.req.headers.host, ctx.path);
    if (!expected.includes(normaliseHtu(htu) ?? '\0')) return denial('integrity.proof_mismatch', 'htu');
    const nowMs = deps.now();
    if (iat * 1000 > nowMs + leewayMs || iat * 1000 < nowMs - maxAgeMs - leewayMs) return denial('integrity.proof_stale');
    if (typeof ath !== 'string' || !sameDigest(ath, sha256(ctx.token ?? ''))) return denial('integrity.proof_mismatch', 'ath');
    if (bodyDigest !== undefined) {
      if (typeof htd !== 'string') return denial('integrity.proof_invalid', 'htd is required with a body');
      if (!sameDigest(htd, bodyDigest)) return denial('integrity.digest_mismatch', 'htd does not match the body');
    }
    const thumbprint = proofKey.thumbprint;
    if (principal.boundKeyThumbprint !== undefined && principal.boundKeyThumbprint !== thumbprint) return denial('integrity.key_mismatch');
    ctx.proof = { jti, thumbprint, issuedAt: iat };
    return undefined;
  }
}

/** Each call's method's own mode, or the service's (methods.NAME.integrity overrides it either way); the strictest of a batch. */
function effectiveMode(policy: ServicePolicy, ctx: RequestContext): IntegrityMode {
  const service = policy.integrity.dpop;
  if (ctx.calls.length === 0) return service;
  let mode: IntegrityMode = 'off';
  for (const call of ctx.calls) {
    const own = policy.methods.get(call.method)?.integrity ?? service;
    if (STRICTNESS[own] > STRICTNESS[mode]) mode = own;
  }
  return mode;
}

/** SHA-256 of the body, undefined when there is no body. */
function bodyDigestOf(ctx: RequestContext): Buffer | undefined {
  const body = ctx.body;
  return body !== undefined && body.length > 0 ? sha256(body) : undefined;
}

/** `bodyDigest`: SHA-256 of the body, undefined when there is no body. */
function checkContentDigest(ctx: RequestContext, mode: IntegrityMode, bodyDigest: Buffer | undefined): Denial | undefined {
  if (bodyDigest === undefined) return undefined;
  const values = headerValues(ctx, 'content-digest');
  if (values.length === 0) return mode === 'required' ? denial('integrity.digest_missing') : undefined;
  // Two field lines would be checked here as one and read by the agent as it reads them.
  if (values.length > 1) return denial('integrity.digest_missing', 'exactly one Content-Digest field line');
  const declared = parseContentDigest(values[0] as string);
  if (!declared) return denial('integrity.digest_missing', 'no well-formed sha-256 member');
  return timingSafeEqual(declared, bodyDigest) ? undefined : denial('integrity.digest_mismatch', 'Content-Digest does not match the body');
}

function headerValues(ctx: RequestContext, name: string): string[] {
  const values: string[] = [];
  const raw = ctx.req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) values.push(raw[i + 1] as string);
  return values;
}

function isCostlyRsaKey(jwk: object): boolean {
  const { kty, n, e } = jwk as { kty?: unknown; n?: unknown; e?: unknown };
  if (kty !== 'RSA') return false;
  return typeof n !== 'string' || typeof e !== 'string' || n.length > MAX_RSA_MODULUS_CHARS || e.length > MAX_RSA_EXPONENT_CHARS;
}

/**
 * The public key members in their one spelling (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2): unpadded
 * base64url, unused low bits zero. Node's JWK import skips any other character, so one key had
 * endless spellings, each with a thumbprint and a proof-key cache entry of its own, that entry as
 * large as the header allows.
 */
function hasCanonicalKeyMembers(jwk: object): boolean {
  for (const member of KEY_MEMBERS) {
    const value = (jwk as Record<string, unknown>)[member];
    if (value !== undefined && (typeof value !== 'string' || !isCanonicalBase64url(value))) return false;
  }
  return true;
}

function isCanonicalBase64url(value: string): boolean {
  if (!BASE64URL.test(value)) return false;
  try {
    return base64url.encode(base64url.decode(value)) === value;
  } catch {
    return false;
  }
}

function sameDigest(encoded: string, digest: Buffer): boolean {
  let decoded: Uint8Array;
  try {
    decoded = base64url.decode(encoded);
  } catch {
    return false;
  }
  return decoded.length === digest.length && timingSafeEqual(decoded, digest);
}
