import type { Redis } from 'ioredis';
import { StoreUnavailableError } from './store-error.js';

/**
 * Remembers ids that may be used once (DPoP proof jtis). `claim` answers 'new' the first time an
 * id is seen within its ttl and 'seen' afterwards; `issuedAtSeconds` is when the id was minted
 * (the proof's iat). Failure policy: a store that cannot answer throws an error with code
 * 'STORE_UNAVAILABLE' and never guesses — the replay layer decides (fail closed by default).
 */
export interface OneTimeIdStore {
  claim(id: string, ttlSeconds: number, issuedAtSeconds: number): Promise<'new' | 'seen'>;
  close(): Promise<void>;
}

/**
 * Per-process ids, for the embedded mode and single replicas. Bounded: when full, the oldest
 * claims go first, so a flood of ids costs memory up to `maxEntries` and no more. An id forgotten
 * before its ttl could be replayed, so the store then also remembers the latest mint time (iat)
 * among the ids it forgot early, and cannot answer (STORE_UNAVAILABLE) for an id minted at or
 * before it: under a flood the window of acceptable proofs narrows to what memory holds, never
 * wider. The mint time, not the claim time: a proof may be minted up to the leeway after it is
 * claimed (a client clock ahead), and its replay carries that same iat.
 */
export class MemoryOneTimeIds implements OneTimeIdStore {
  // Insertion order = claim order, and nearly expiry order (the replay layer keeps an id until its
  // iat plus a fixed span); an expired id behind a live one goes when eviction reaches it.
  readonly #claims = new Map<string, { readonly issuedAt: number; readonly expiresAt: number }>();
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** Milliseconds: an id minted at or before this may have been forgotten while it was still live. */
  #forgottenUpTo = -Infinity;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  async claim(id: string, ttlSeconds: number, issuedAtSeconds: number): Promise<'new' | 'seen'> {
    const now = this.#now();
    const known = this.#claims.get(id);
    if (known !== undefined && known.expiresAt > now) return 'seen';
    this.#claims.delete(id);
    this.#evict(now);
    if (issuedAtSeconds * 1000 <= this.#forgottenUpTo) {
      throw new StoreUnavailableError('one-time-id', `full: ids minted before ${new Date(this.#forgottenUpTo).toISOString()} were forgotten early and can no longer be told from replays`);
    }
    this.#claims.set(id, { issuedAt: issuedAtSeconds * 1000, expiresAt: now + ttlSeconds * 1000 });
    return 'new';
  }

  #evict(now: number): void {
    for (const [id, entry] of this.#claims) {
      if (entry.expiresAt > now) {
        if (this.#claims.size < this.#maxEntries) break;
        this.#forgottenUpTo = Math.max(this.#forgottenUpTo, entry.issuedAt);
      }
      this.#claims.delete(id);
    }
  }

  get size(): number {
    return this.#claims.size;
  }

  async close(): Promise<void> {
    this.#claims.clear();
  }
}

/** Ids shared by every replica on one Redis: SET key 1 NX EX ttl is the atomic claim. */
export class RedisOneTimeIds implements OneTimeIdStore {
  readonly #client: Redis;
  readonly #prefix: string;

  constructor(client: Redis, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  // Redis keeps every id for its whole ttl, so when it was minted does not matter here.
  async claim(id: string, ttlSeconds: number, _issuedAtSeconds: number): Promise<'new' | 'seen'> {
    let reply: string | null;
    try {
      reply = await this.#client.set(`${this.#prefix}:${id}`, '1', 'EX', Math.max(1, Math.ceil(ttlSeconds)), 'NX');
    } catch (error) {
      throw new StoreUnavailableError('one-time-id', error);
    }
    return reply === 'OK' ? 'new' : 'seen';
  }

  /** The client is shared with the sidecar's other stores; its owner closes it. */
  async close(): Promise<void> {}
}
