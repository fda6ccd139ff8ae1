import type { Redis } from 'ioredis';
import { StoreUnavailableError } from './store-error.js';

/**
 * Remembers ids that may be used once (DPoP proof jtis). `claim` answers 'new' the first time an
 * id is seen within its ttl and 'seen' afterwards. Failure policy: a store that cannot answer
 * throws an error with code 'STORE_UNAVAILABLE' and never guesses — the replay layer decides
 * (fail closed by default).
 */
export interface OneTimeIdStore {
  claim(id: string, ttlSeconds: number): Promise<'new' | 'seen'>;
  close(): Promise<void>;
}

/**
 * Per-process ids, for the embedded mode and single replicas. Bounded: when full, the entries
 * closest to expiry go first, so a flood of ids costs memory up to `maxEntries` and no more.
 */
export class MemoryOneTimeIds implements OneTimeIdStore {
  // Insertion order = claim order; with one ttl per caller, that is also expiry order.
  readonly #expiries = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  async claim(id: string, ttlSeconds: number): Promise<'new' | 'seen'> {
    const now = this.#now();
    const expiry = this.#expiries.get(id);
    if (expiry !== undefined && expiry > now) return 'seen';
    this.#expiries.delete(id);
    this.#evict(now);
    this.#expiries.set(id, now + ttlSeconds * 1000);
    return 'new';
  }

  #evict(now: number): void {
    for (const [id, expiry] of this.#expiries) {
      if (expiry > now && this.#expiries.size < this.#maxEntries) break;
      this.#expiries.delete(id);
    }
  }

  get size(): number {
    return this.#expiries.size;
  }

  async close(): Promise<void> {
    this.#expiries.clear();
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

  async claim(id: string, ttlSeconds: number): Promise<'new' | 'seen'> {
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
