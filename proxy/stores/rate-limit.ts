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

/** Adds points to a key's counter; what the sliding window needs from a store. */
interface PointCounter {
  readonly counter: RateLimiterAbstract;
  consume(key: string, cost: number): Promise<Consumed>;
}

/** The counter after a consume, whether rate-limiter-flexible resolved (under its cap) or rejected (over it). */
function consumedFrom(outcome: RateLimiterRes, cap: number): Consumed {
  return { consumedPoints: outcome.consumedPoints, over: outcome.consumedPoints > cap };
}

/**
 * rate-limiter-flexible rejects with a RateLimiterRes when the counter is full, and with an
 * Error when its store fails: the first is a value, the second must propagate.
 */
function fullCounter(rejection: unknown): RateLimiterRes {
  if (rejection instanceof Error) throw rejection;
  return rejection as RateLimiterRes;
}

/** An in-process counter: a consume is no round trip, so there is nothing to gather. */
class DirectCounter implements PointCounter {
  readonly counter: RateLimiterAbstract;
  readonly #cap: number;

  constructor(counter: RateLimiterAbstract, cap: number) {
    this.counter = counter;
    this.#cap = cap;
  }

  consume(key: string, cost: number): Promise<Consumed> {
    return this.counter.consume(key, cost).catch(fullCounter).then((outcome) => consumedFrom(outcome, this.#cap));
  }
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
class CoalescingCounter implements PointCounter {
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
      consumed = (await this.counter.consume(key, total).catch(fullCounter)).consumedPoints;
    } catch (error) {
      for (const waiter of batch) waiter.reject(error);
      return;
    }
    let position = consumed - total;
    for (const waiter of batch) {
      position += waiter.cost;
      waiter.resolve({ consumedPoints: position, over: position > this.#cap });
    }
  }
}

/**
 * How long until the same request would pass, for Retry-After: the estimate must leave room for
 * `cost` more points. Within this window only the previous window's weight shrinks; past it, this
 * window's count becomes the previous one and shrinks in turn.
 */
function untilAdmitted(previous: number, current: number, elapsed: number, cost: number, points: number, windowMs: number): number {
  const toNextWindowMs = (1 - elapsed) * windowMs;
  if (current + cost <= points) {
    // previous × (1 − elapsed − t/W) + current + cost ≤ points
    const excess = previous * (1 - elapsed) + current + cost - points;
    return previous > 0 ? Math.min(toNextWindowMs, (excess * windowMs) / previous) : 0;
  }
  // In the next window: current × (1 − t′/W) + cost ≤ points; a cost above points never fits.
  if (cost >= points) return toNextWindowMs + windowMs;
  return toNextWindowMs + ((current + cost - points) * windowMs) / current;
}

/** One budget (points per window): its counter, and the counts of its last finished window by principal key. */
interface Budget {
  readonly counter: PointCounter;
  finished: { index: number; counts: Map<string, number> };
}

/**
 * A sliding-window counter (the weighted two-window estimate Cloudflare and nginx+ use) on top
 * of rate-limiter-flexible's atomic fixed-window counters: one counter per window index, kept
 * for two windows; estimate = previous × (1 − elapsed fraction) + current. Precise to within
 * the previous window's distribution, O(1) memory per principal, one Redis command per request
 * (the finished window's count is read once per principal and window).
 */
export class SlidingWindowRateLimit implements RateLimitStore {
  /** By points and window, so a reloaded policy with the same budget keeps counting where it was. */
  readonly #budgets = new Map<string, Budget>();
  /** The same budgets by rule object (one per policy version): no key to build per request. */
  #byRule = new WeakMap<RateLimitRule, Budget>();
  readonly #factory: CounterFactory;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(factory: CounterFactory, prefix: string, now: () => number = Date.now) {
    this.#factory = factory;
    this.#prefix = prefix;
    this.#now = now;
  }

  async consume(key: string, rule: RateLimitRule, cost: number): Promise<RateLimitOutcome> {
    const budget = this.#budget(rule);
    const windowMs = rule.windowSeconds * 1000;
    const now = this.#now();
    const index = Math.floor(now / windowMs);
    const elapsed = (now - index * windowMs) / windowMs;
    const previous = this.#previousCount(budget, key, index - 1);
    const consumed = budget.counter.consume(`${key}:${index}`, cost);
    const [current, previousCount] = typeof previous === 'number' ? [await consumed, previous] : await Promise.all([consumed, previous]);
    const estimate = previousCount * (1 - elapsed) + current.consumedPoints;
    const allowed = !current.over && estimate <= rule.points;
    const remaining = Math.max(0, Math.floor(rule.points - estimate));
    const toNextWindowMs = windowMs - (now - index * windowMs);
    let resetMs = toNextWindowMs;
    if (!allowed) resetMs = untilAdmitted(previousCount, current.consumedPoints, elapsed, cost, rule.points, windowMs);
    return { allowed, limit: rule.points, remaining, resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)) };
  }

  /**
   * A finished window's count does not change any more, so it is read from the store once per
   * principal and window and then kept: one store round trip per request instead of two (and,
   * known, it is answered without a promise).
   */
  #previousCount(budget: Budget, key: string, index: number): number | Promise<number> {
    if (budget.finished.index !== index) budget.finished = { index, counts: new Map() };
    const counts = budget.finished.counts;
    const known = counts.get(key);
    if (known !== undefined) return known;
    return budget.counter.counter.get(`${key}:${index}`).then((stored) => {
      const count = stored?.consumedPoints ?? 0;
      if (counts.size < 100_000) counts.set(key, count);
      return count;
    });
  }

  #budget(rule: RateLimitRule): Budget {
    let budget = this.#byRule.get(rule);
    if (budget !== undefined) return budget;
    const id = `${rule.points}/${rule.windowSeconds}`;
    budget = this.#budgets.get(id);
    if (budget === undefined) {
      // points is generous on purpose: the sliding estimate decides; the counter only counts
      // (capped so a flood cannot grow one key without bound). Kept two windows for the estimate.
      const cap = rule.points * 2;
      const limiter = this.#factory({ points: cap, duration: rule.windowSeconds * 2, keyPrefix: `${this.#prefix}:${id}` });
      const counter = limiter instanceof RateLimiterMemory ? new DirectCounter(limiter, cap) : new CoalescingCounter(limiter, cap);
      budget = { counter, finished: { index: Number.NaN, counts: new Map() } };
      this.#budgets.set(id, budget);
    }
    this.#byRule.set(rule, budget);
    return budget;
  }

  async close(): Promise<void> {
    this.#budgets.clear();
    this.#byRule = new WeakMap();
  }
}
