import type { Redis } from 'ioredis';
import { StoreUnavailableError } from './store-error.js';

/**
 * Remembers ids that may be used once (DPoP proof jtis). `claim` answers 'new' the first time an
 * id is seen within its ttl and 'seen' afterwards; `issuedAtSeconds` is when the id was minted
 * (the proof's iat), `caller` who presented it (the token's subject: a replay of a proof comes
 * with the token it was made for, so with the same caller). Failure policy: a store that cannot
 * answer throws an error with code 'STORE_UNAVAILABLE' and never guesses — the replay layer
 * decides (fail closed by default); one that cannot tell a replay from a new id throws a
 * ForgottenIdError, which the replay layer always refuses.
 */
export interface OneTimeIdStore {
  claim(id: string, ttlSeconds: number, issuedAtSeconds: number, caller: string): Promise<'new' | 'seen'>;
  close(): Promise<void>;
}

/**
 * The in-memory store's answer for an id it may have forgotten early: it cannot say 'new', since
 * the id may be a replay. Not an outage, so no policy's fallback lets it through.
 */
export class ForgottenIdError extends StoreUnavailableError {
  readonly forgotten = true;
}

interface Claim {
  readonly caller: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** One caller's claims in claim order, and what it was made to forget early. */
interface CallerClaims {
  readonly claims: Map<string, Claim>;
  /** Milliseconds: an id of this caller minted at or before this may have been forgotten while live. */
  forgottenUpTo: number;
  /** Milliseconds: when the last claim forgotten early would have expired; past it, `forgottenUpTo` matters no more. */
  forgottenUntil: number;
}

/**
 * Per-process ids, for the embedded mode and single replicas. Bounded: `maxEntries` in all, and
 * `maxPerCaller` for any one caller. A caller at its bound forgets its own oldest claim; the store
 * at its bound forgets the oldest of all. An id forgotten before its ttl could be replayed, so the
 * store then remembers, for that id's caller, the latest mint time (iat) among the ids it forgot
 * early, and cannot answer (STORE_UNAVAILABLE) for an id of that caller minted at or before it:
 * under a flood the window of acceptable proofs narrows to what memory holds, never wider, and a
 * caller flooding it narrows its own window, not every caller's. The mint time, not the claim
 * time: a proof may be minted up to the leeway after it is claimed (a client clock ahead), and its
 * replay carries that same iat.
 */
export class MemoryOneTimeIds implements OneTimeIdStore {
  // Insertion order = claim order, and nearly expiry order (the replay layer keeps an id until its
  // iat plus a fixed span); an expired id behind a live one goes when eviction reaches it.
  readonly #claims = new Map<string, Claim>();
  readonly #callers = new Map<string, CallerClaims>();
  readonly #maxEntries: number;
  readonly #maxPerCaller: number;
  readonly #now: () => number;
  /**
   * Milliseconds: the latest `forgottenUpTo` of a caller whose record went while it still
   * mattered (more callers than `maxEntries` had one), applied to every caller.
   */
  #forgottenByAllUpTo = -Infinity;

  constructor(options: { maxEntries?: number; maxPerCaller?: number; now?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#maxPerCaller = Math.min(options.maxPerCaller ?? 10_000, this.#maxEntries);
    this.#now = options.now ?? Date.now;
  }

  async claim(id: string, ttlSeconds: number, issuedAtSeconds: number, caller: string): Promise<'new' | 'seen'> {
    const now = this.#now();
    const known = this.#claims.get(id);
    if (known !== undefined && known.expiresAt > now) return 'seen';
    if (known !== undefined) this.#forget(id, known, now);
    this.#evictGlobal(now);
    const own = this.#callerRecord(caller, now);
    this.#evictOwn(own, now);
    const issuedAt = issuedAtSeconds * 1000;
    const upTo = Math.max(own.forgottenUpTo, this.#forgottenByAllUpTo);
    if (issuedAt <= upTo) {
      throw new ForgottenIdError('one-time-id', `full: ids minted before ${new Date(upTo).toISOString()} were forgotten early and can no longer be told from replays`);
    }
    const entry = { caller, issuedAt, expiresAt: now + ttlSeconds * 1000 };
    this.#claims.set(id, entry);
    own.claims.set(id, entry);
    return 'new';
  }

  #callerRecord(caller: string, now: number): CallerClaims {
    let record = this.#callers.get(caller);
    if (record === undefined) {
      this.#pruneCallers(now);
      record = { claims: new Map(), forgottenUpTo: -Infinity, forgottenUntil: -Infinity };
      this.#callers.set(caller, record);
    }
    return record;
  }

  /** Callers with no claim left go once what they forgot matters no more, or into the global mark. */
  #pruneCallers(now: number): void {
    if (this.#callers.size < this.#maxEntries) return;
    for (const [caller, record] of this.#callers) {
      if (record.claims.size > 0) continue;
      if (record.forgottenUntil > now) this.#forgottenByAllUpTo = Math.max(this.#forgottenByAllUpTo, record.forgottenUpTo);
      this.#callers.delete(caller);
      if (this.#callers.size < this.#maxEntries) return;
    }
  }

  #evictGlobal(now: number): void {
    for (const [id, entry] of this.#claims) {
      if (entry.expiresAt > now && this.#claims.size < this.#maxEntries) break;
      this.#forget(id, entry, now);
    }
  }

  #evictOwn(own: CallerClaims, now: number): void {
    for (const [id, entry] of own.claims) {
      if (entry.expiresAt > now && own.claims.size < this.#maxPerCaller) break;
      this.#forget(id, entry, now);
    }
  }

  /** Drops a claim; one still live raises its caller's mark. */
  #forget(id: string, entry: Claim, now: number): void {
    this.#claims.delete(id);
    const record = this.#callers.get(entry.caller);
    if (record === undefined) return;
    record.claims.delete(id);
    if (entry.expiresAt > now) {
      record.forgottenUpTo = Math.max(record.forgottenUpTo, entry.issuedAt);
      record.forgottenUntil = Math.max(record.forgottenUntil, entry.expiresAt);
    }
  }

  get size(): number {
    return this.#claims.size;
  }

  async close(): Promise<void> {
    this.#claims.clear();
    this.#callers.clear();
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
  async claim(id: string, ttlSeconds: number, _issuedAtSeconds: number, _caller: string): Promise<'new' | 'seen'> {
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
