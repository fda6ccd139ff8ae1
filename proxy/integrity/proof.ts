import { randomUUID } from 'node:crypto';
import { base64url, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { sha256 } from './digest.js';

/** A proof key pair with its public JWK, made once per process (the sidecar's, or a CLI run's). */
export interface ProofKey {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

/** The private key cannot be exported: it signs in this process and never leaves it. */
export async function createProofKey(): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: false });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { privateKey, publicKey, publicJwk: { kty, crv, x, y } };
}

/**
 * A DPoP proof (RFC 9449 §4.2) for one request, with our `htd` claim: the base64url SHA-256 of the
 * exact body bytes, binding the body to the signature (docs/integrity.md).
 */
export async function createProof(key: ProofKey, request: { htm: string; htu: string; accessToken: string; body?: Buffer | string; now?: number }): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: randomUUID(),
    htm: request.htm,
    htu: request.htu,
    iat: Math.floor((request.now ?? Date.now()) / 1000),
    ath: base64url.encode(sha256(request.accessToken)),
  };
  if (request.body !== undefined && request.body.length > 0) claims.htd = base64url.encode(sha256(request.body));
  return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk }).sign(key.privateKey);
}
