import { setTimeout as sleep } from 'node:timers/promises';
import { isEgressError } from '../shared/egress-client.js';

/** Attempts and backoff of a step whose hop failed (sidecar or agent down, timeout). */
export interface RetryOptions {
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { attempts: 4, initialDelayMs: 250, maxDelayMs: 4_000 };

/**
 * Retries transport failures only: an agent that answered (even with an error) has decided, and
 * asking again would not change its mind. Each step is idempotent, so a retry after a lost answer
 * is safe.
 */
export async function withRetry<T>(options: RetryOptions, call: () => Promise<T>): Promise<T> {
  let delay = options.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= options.attempts || !isEgressError(error) || error.kind !== 'transport') throw error;
      await sleep(delay);
      delay = Math.min(delay * 2, options.maxDelayMs);
    }
  }
}
