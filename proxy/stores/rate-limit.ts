import { RateLimiterMemory, type RateLimiterAbstract, type RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimitRule } from '../policy/model.js';

/** The answer to "may this principal spend `cost` more requests now?". A store failure throws. */
export interface RateLimitOutcome {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  /** Seconds until the budget is (partly) back; for Retry-After and RateLimit-Reset. */
  readonly resetSeconds: number;
}

export interface RateLimitStore {
  consume(key: string, rule: RateLimitRule, cost: number): Promise<RateLimitOutcome>;
  close(): Promise<void>;
}

/** Makes the rate-limiter-flexible counter for one rule (memory, or Redis with an insurance limiter). */
export type CounterFactory = (options: { points: number; duration: number; keyPrefix: string }) => RateLimiterAbstract;

export const memoryCounters: CounterFactory = (options) => new RateLimiterMemory(options);

interface Consumed {
  /** The counter after this consume: what the store held before it, plus its cost. */
  readonly consumedPoints: number;
  /** Past the counter's own cap (the store refused to count further). */
  readonly over: boolean;
}

interface Waiter {
  readonly cost: number;
  readonly resolve: (consumed: Consumed) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * One principal's concurrent requests share a store round trip: while a consume of a key is in
 * flight, later ones for that key wait and go together as one consume of their summed cost; each
 * then gets the count it would have seen alone (the count before the batch plus its own and the
 * earlier members' costs). Exact, since the store still adds every point atomically; on Redis a
 * burst of one caller's requests costs one command instead of one per request.
 */
class CoalescingCounter {
  readonly counter: RateLimiterAbstract;
  readonly #cap: number;
  /** Keys with a consume in flight, and who waits behind it. */
  readonly #waiting = new Map<string, Waiter[]>();

  constructor(counter: RateLimiterAbstract, cap: number) {
    this.counter = counter;
    this.#cap = cap;
  }

  consume(key: string, cost: number): Promise<Consumed> {
    return new Promise((resolve, reject) => {
      const waiting = this.#waiting.get(key);
      if (waiting !== undefined) {
        waiting.push({ cost, resolve, reject });
        return;
      }
      this.#waiting.set(key, []);
      void this.#run(key, [{ cost, resolve, reject }]);
    });
  }

  async #run(key: string, first: Waiter[]): Promise<void> {
    for (let batch = first; batch.length > 0;) {
      await this.#send(key, batch);
      batch = this.#waiting.get(key) ?? [];
      if (batch.length === 0) this.#waiting.delete(key);
      else this.#waiting.set(key, []);
    }
  }

  /** Settles every member of the batch; never throws. */
  async #send(key: string, batch: Waiter[]): Promise<void> {
    let total = 0;
    for (const waiter of batch) total += waiter.cost;
    let consumed: number;
    try {
      consumed = (await this.counter.consume(key, total)).consumedPoints;
    } catch (rejection) {
      // rate-limiter-flexible rejects with a RateLimiterRes when the counter is full, and with an
      // Error when its store fails: the first is a value, the second must propagate.
      if (rejection instanceof Error) {
        for (const waiter of batch) waiter.reject(rejection);
        return;
      }
      consumed = (rejection as RateLimiterRes).consumedPoints;
    }
    let position = consumed - total;
    for (const waiter of batch) {
      position += waiter.cost;
      waiter.resolve({ consumedPoints: position, over: position > this.#cap });
    }
  }
}

/**
 * A sliding-window counter (the weighted two-window estimate Cloudflare and nginx+ use) on top
 * of rate-limiter-flexible's atomic fixed-window counters: one counter per window index, kept
 * for two windows; estimate = previous × (1 − elapsed fraction) + current. Precise to within
 * the previous window's distribution, O(1) memory per principal, two reads on Redis (in parallel).
 */
export class SlidingWindowRateLimit implements RateLimitStore {
  readonly #counters = new Map<string, CoalescingCounter>();
  /** Per rule: the counts of the last finished window, by principal key. */
  readonly #finished = new Map<string, { index: number; counts: Map<string, number> }>();
  readonly #factory: CounterFactory;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(factory: CounterFactory, prefix: string, now: () => number = Date.now) {
    this.#factory = factory;
    this.#prefix = prefix;
    this.#now = now;
  }

  async consume(key: string, rule: RateLimitRule, cost: number): Promise<RateLimitOutcome> {
    const counter = this.#counter(rule);
    const windowMs = rule.windowSeconds * 1000;
    const now = this.#now();
    const index = Math.floor(now / windowMs);
    const elapsed = (now - index * windowMs) / windowMs;
    const previous = this.#previousCount(counter.counter, rule, key, index - 1);
    const consumed = counter.consume(`${key}:${index}`, cost);
    const [current, previousCount] = typeof previous === 'number' ? [await consumed, previous] : await Promise.all([consumed, previous]);
    const estimate = previousCount * (1 - elapsed) + current.consumedPoints;
    const allowed = !current.over && estimate <= rule.points;
    const remaining = Math.max(0, Math.floor(rule.points - estimate));
    const toNextWindowMs = windowMs - (now - index * windowMs);
    let resetMs = toNextWindowMs;
    if (!allowed && previousCount > 0 && current.consumedPoints < rule.points) {
      // Time for the previous window's weight to shrink enough to admit one more request.
      const excess = estimate + 1 - rule.points;
      resetMs = Math.min(toNextWindowMs, (excess * windowMs) / previousCount);
    }
    return { allowed, limit: rule.points, remaining, resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)) };
  }

  /**
   * A finished window's count does not change any more, so it is read from the store once per
   * principal and window and then kept: one store round trip per request instead of two (and,
   * known, it is answered without a promise).
   */
  #previousCount(counter: RateLimiterAbstract, rule: RateLimitRule, key: string, index: number): number | Promise<number> {
    const id = `${rule.points}/${rule.windowSeconds}`;
    let finished = this.#finished.get(id);
    if (finished?.index !== index) {
      finished = { index, counts: new Map() };
      this.#finished.set(id, finished);
    }
    const known = finished.counts.get(key);
    if (known !== undefined) return known;
    const counts = finished.counts;
    return counter.get(`${key}:${index}`).then((stored) => {
      const count = stored?.consumedPoints ?? 0;
      if (counts.size < 100_000) counts.set(key, count);
      return count;
    });
  }

  #counter(rule: RateLimitRule): CoalescingCounter {
    const id = `${rule.points}/${rule.windowSeconds}`;
    let counter = this.#counters.get(id);
    if (!counter) {
      // points is generous on purpose: the sliding estimate decides; the counter only counts
      // (capped so a flood cannot grow one key without bound). Kept two windows for the estimate.
      const cap = rule.points * 2;
      counter = new CoalescingCounter(this.#factory({ points: cap, duration: rule.windowSeconds * 2, keyPrefix: `${this.#prefix}:${id}` }), cap);
      this.#counters.set(id, counter);
    }
    return counter;
  }

  async close(): Promise<void> {
    this.#counters.clear();
  }
}
