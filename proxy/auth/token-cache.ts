import type { Principal } from '../context.js';

/**
 * Verified tokens, so that a token reused across requests is verified (RSA) once. Bounded: the
 * oldest entry goes first. An entry is good until the token's exp plus leeway, or until the
 * issuer's keys change (the authn layer clears it then); revocation is checked by its own layer
 * on every request, cache hit or not.
 */
export class TokenCache {
  readonly #entries = new Map<string, { principal: Principal; validUntilMs: number }>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(token: string, nowMs: number): Principal | undefined {
    const entry = this.#entries.get(token);
    if (!entry) return undefined;
    if (nowMs >= entry.validUntilMs) {
      this.#entries.delete(token);
      return undefined;
    }
    return entry.principal;
  }

  clear(): void {
    this.#entries.clear();
  }

  set(token: string, principal: Principal, validUntilMs: number): void {
    if (this.#max === 0) return;
    // A token verified twice at once (an agent's parallel calls on a token it just got) is set
    // twice: the second replaces its entry, and must not push another caller's out to make room.
    this.#entries.delete(token);
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(token, { principal, validUntilMs });
  }
}
