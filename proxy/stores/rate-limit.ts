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

/**
 * A sliding-window counter (the weighted two-window estimate Cloudflare and nginx+ use) on top
 * of rate-limiter-flexible's atomic fixed-window counters: one counter per window index, kept
 * for two windows; estimate = previous × (1 − elapsed fraction) + current. Precise to within
 * the previous window's distribution, O(1) memory per principal, two reads on Redis (in parallel).
 */
export class SlidingWindowRateLimit implements RateLimitStore {
  readonly #counters = new Map<string, RateLimiterAbstract>();
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
    const [current, previousCount] = await Promise.all([
      counter.consume(`${key}:${index}`, cost).then((res) => ({ res, over: false }), (rejection: unknown) => overLimit(rejection)),
      this.#previousCount(counter, rule, key, index - 1),
    ]);
    const estimate = previousCount * (1 - elapsed) + current.res.consumedPoints;
    const allowed = !current.over && estimate <= rule.points;
    const remaining = Math.max(0, Math.floor(rule.points - estimate));
    const toNextWindowMs = windowMs - (now - index * windowMs);
    let resetMs = toNextWindowMs;
    if (!allowed && previousCount > 0 && current.res.consumedPoints < rule.points) {
      // Time for the previous window's weight to shrink enough to admit one more request.
      const excess = estimate + 1 - rule.points;
      resetMs = Math.min(toNextWindowMs, (excess * windowMs) / previousCount);
    }
    return { allowed, limit: rule.points, remaining, resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)) };
  }

  /**
   * A finished window's count does not change any more, so it is read from the store once per
   * principal and window and then kept: one store round trip per request instead of two.
   */
  async #previousCount(counter: RateLimiterAbstract, rule: RateLimitRule, key: string, index: number): Promise<number> {
    const id = `${rule.points}/${rule.windowSeconds}`;
    let finished = this.#finished.get(id);
    if (finished?.index !== index) {
      finished = { index, counts: new Map() };
      this.#finished.set(id, finished);
    }
    const known = finished.counts.get(key);
    if (known !== undefined) return known;
    const count = (await counter.get(`${key}:${index}`))?.consumedPoints ?? 0;
    if (finished.counts.size < 100_000) finished.counts.set(key, count);
    return count;
  }

  #counter(rule: RateLimitRule): RateLimiterAbstract {
    const id = `${rule.points}/${rule.windowSeconds}`;
    let counter = this.#counters.get(id);
    if (!counter) {
      // points is generous on purpose: the sliding estimate decides; the counter only counts
      // (capped so a flood cannot grow one key without bound). Kept two windows for the estimate.
      counter = this.#factory({ points: rule.points * 2, duration: rule.windowSeconds * 2, keyPrefix: `${this.#prefix}:${id}` });
      this.#counters.set(id, counter);
    }
    return counter;
  }

  async close(): Promise<void> {
    this.#counters.clear();
  }
}

function overLimit(rejection: unknown): { res: RateLimiterRes; over: boolean } {
  // rate-limiter-flexible rejects with a RateLimiterRes when the counter is full, and with an
  // Error when its store fails: the first is a value, the second must propagate.
  if (rejection instanceof Error) throw rejection;
  return { res: rejection as RateLimiterRes, over: true };
}
