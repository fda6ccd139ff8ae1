import { createPrivateKey, createPublicKey, generateKeyPair, sign, verify } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { createJsonExclusive, ensurePrivateDir, readJsonIfExists, tightenFileMode } from './files.js';

const generateRsaKeyPair = promisify(generateKeyPair);

/** A private RSA signing key in JWK form, with the `kid`, `alg` and `use` the JWKS will advertise. */
export interface SigningJwk extends JWK {
  readonly kty: 'RSA';
  readonly kid: string;
  readonly alg: 'RS256';
  readonly use: 'sig';
}

/** Path of the issuer's private signing key inside a data directory. */
export function signingKeyPath(dataDir: string): string {
  return path.join(dataDir, 'issuer-signing-key.json');
}

/**
 * Loads the issuer's RS256 key from `<dataDir>/issuer-signing-key.json` (0600), generating a
 * 2048-bit key on first start. Persisting it keeps tokens issued before a restart verifiable after
 * it, which is what sidecars caching the JWKS expect from Keycloak too.
 */
export async function ensureSigningKey(dataDir: string): Promise<SigningJwk> {
  await ensurePrivateDir(dataDir);
  const file = signingKeyPath(dataDir);
  const existing = await readJsonIfExists(file);
  if (existing !== undefined) {
    await tightenFileMode(file);
    return parseSigningKey(existing, file);
  }
  const { privateKey } = await generateRsaKeyPair('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' }) as JWK;
  // RFC 7638 thumbprint as kid: stable for the key and meaningful in logs.
  const key: SigningJwk = { ...jwk, kty: 'RSA', kid: await calculateJwkThumbprint(jwk), alg: 'RS256', use: 'sig' };
  if (await createJsonExclusive(file, key)) return key;
  return ensureSigningKey(dataDir);
}

function parseSigningKey(content: unknown, file: string): SigningJwk {
  const jwk = content as Partial<SigningJwk> | null;
  const complete =
    typeof jwk === 'object' && jwk !== null && jwk.kty === 'RSA' && jwk.alg === 'RS256' &&
    typeof jwk.kid === 'string' && typeof jwk.d === 'string' && typeof jwk.n === 'string';
  if (!complete || !signsVerifiably(jwk as SigningJwk)) {
    throw new Error(`${file} is not a usable RS256 private JWK (2048 bits or more, public and private parts of one key); delete it to have a new key generated`);
  }
  return jwk as SigningJwk;
}

/**
 * A damaged key file can still hold every member: oidc-provider would then start, publish the
 * public half and fail every token request with a 500 (modulus too short), or sign tokens that the
 * published half does not verify (modulus and primes of different keys). Sign once now instead.
 */
function signsVerifiably(jwk: SigningJwk): boolean {
  try {
    const privateKey = createPrivateKey({ key: { ...jwk }, format: 'jwk' });
    if ((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return false;
    const publicKey = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
    const probe = Buffer.from('ca-a2a signing key check');
    return verify('sha256', probe, publicKey, sign('sha256', probe, privateKey));
  } catch {
    return false;
  }
}
