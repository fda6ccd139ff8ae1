import { calculateJwkThumbprint, importJWK, type CryptoKey, type JWK } from 'jose';

/**
 * Imported proof keys and their RFC 7638 thumbprints, by JWK. A client signs every proof with the
 * same key, and importing an EC key costs more than verifying with it (≈120 µs against ≈70 µs
 * here), so each distinct key is imported and hashed once. Bounded: the oldest entry goes first.
 */
export class ProofKeyCache {
  readonly #entries = new Map<string, Promise<{ key: CryptoKey; thumbprint: string }>>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(jwk: JWK, alg: string | undefined): Promise<{ key: CryptoKey; thumbprint: string }> {
    const id = `${alg}|${jwk.kty}|${jwk.crv}|${jwk.x}|${jwk.y}|${jwk.n}|${jwk.e}`;
    let entry = this.#entries.get(id);
    if (entry === undefined) {
      entry = Promise.all([importJWK(jwk, alg), calculateJwkThumbprint(jwk, 'sha256')]).then(([key, thumbprint]) => ({ key: key as CryptoKey, thumbprint }));
      // A key that fails to import is not remembered: the next proof gets a fresh attempt and error.
      entry.catch(() => this.#entries.delete(id));
      if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
      this.#entries.set(id, entry);
    }
    return entry;
  }
}
