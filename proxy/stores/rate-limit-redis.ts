import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterRes } from 'rate-limiter-flexible';
import type { CounterFactory } from './rate-limit.js';

/**
 * The in-memory limiter rate-limiter-flexible switches to when a Redis command fails. It counts
 * each use so the sidecar can say (metric + log) that budgets are per-replica for now.
 */
class CountingInsurance extends RateLimiterMemory {
  readonly #onUse: () => void;

  constructor(options: { points: number; duration: number; keyPrefix: string }, onUse: () => void) {
    super(options);
    this.#onUse = onUse;
  }

  override consume(key: string | number, points?: number, options?: { [key: string]: unknown }): Promise<RateLimiterRes> {
    this.#tell();
    return super.consume(key, points, options);
  }

  override get(key: string | number, options?: { [key: string]: unknown }): Promise<RateLimiterRes | null> {
    this.#tell();
    return super.get(key, options);
  }

  /**
   * rate-limiter-flexible calls the insurance from inside a promise callback and settles the
   * caller's promise only from what the insurance returns: a throw here would leave the request,
   * and every later one of its principal queued behind it, pending forever. Reporting is best effort.
   */
  #tell(): void {
    try {
      this.#onUse();
    } catch {
      // The limit is still enforced; only the report of the fallback is lost.
    }
  }
}

/**
 * Redis-backed counters for SlidingWindowRateLimit: every replica configured with the same Redis
 * and prefix spends one budget. Failure policy: while Redis is unreachable the insurance limiter
 * (memory, same rule) answers, so limits stay enforced per replica instead of failing open or
 * closed; `onInsurance` is called for every request it answers.
 */
export function redisCounters(client: Redis, onInsurance: () => void): CounterFactory {
  return (options) => new RateLimiterRedis({
    ...options,
    storeClient: client,
    // Do not wait for a command that cannot succeed: go to the insurance limiter at once.
    rejectIfRedisNotReady: true,
    insuranceLimiter: new CountingInsurance(options, onInsurance),
  });
}
