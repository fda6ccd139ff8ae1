import type { Redis } from 'ioredis';
import { StoreUnavailableError } from './store-error.js';

/**
 * Source addresses seen per token (jti), for the stolen-token alarm. `add` records one address
 * and resolves to the number of distinct addresses seen for that jti within the ttl. Failure
 * policy: throws STORE_UNAVAILABLE; the caller skips the check (it never blocks a request).
 */
export interface TokenSourceStore {
  add(jti: string, source: string, ttlSeconds: number): Promise<number>;
  close(): Promise<void>;
}

/** Per-process record, bounded in tokens and in addresses per token. */
export class MemoryTokenSources implements TokenSourceStore {
  readonly #tokens = new Map<string, { sources: Set<string>; expiresAt: number }>();
  readonly #maxTokens: number;
  readonly #now: () => number;

  constructor(options: { maxTokens?: number; now?: () => number } = {}) {
    this.#maxTokens = options.maxTokens ?? 50_000;
    this.#now = options.now ?? Date.now;
  }

  async add(jti: string, source: string, ttlSeconds: number): Promise<number> {
    const now = this.#now();
    let entry = this.#tokens.get(jti);
    if (!entry || entry.expiresAt <= now) {
      this.#tokens.delete(jti);
      if (this.#tokens.size >= this.#maxTokens) {
        const oldest = this.#tokens.keys().next().value;
        if (oldest !== undefined) this.#tokens.delete(oldest);
      }
      entry = { sources: new Set(), expiresAt: now + ttlSeconds * 1000 };
      this.#tokens.set(jti, entry);
    }
    // Past a few dozen addresses the answer is "too many" already; stop growing.
    if (entry.sources.size < 64) entry.sources.add(source);
    return entry.sources.size;
  }

  async close(): Promise<void> {
    this.#tokens.clear();
  }
}

/** A Redis set per jti shared by every replica (SADD + EXPIRE + SCARD in one round trip). */
export class RedisTokenSources implements TokenSourceStore {
  readonly #client: Redis;
  readonly #prefix: string;

  constructor(client: Redis, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  async add(jti: string, source: string, ttlSeconds: number): Promise<number> {
    const key = `${this.#prefix}:${jti}`;
    let results;
    try {
      results = await this.#client.multi().sadd(key, source).expire(key, Math.max(1, Math.ceil(ttlSeconds)), 'NX').scard(key).exec();
    } catch (error) {
      throw new StoreUnavailableError('token-sources', error);
    }
    const count = results?.[2];
    if (!count || count[0] !== null) throw new StoreUnavailableError('token-sources', count?.[0] ?? 'transaction aborted');
    return Number(count[1]);
  }

  async close(): Promise<void> {}
}
