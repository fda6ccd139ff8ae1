import {
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  isBrokenCircuitError,
  isTaskCancelledError,
  retry,
  timeout,
  wrap,
} from 'cockatiel';
import type { Logger } from 'pino';
import { ToolError } from './errors.js';
import type { GatewayMetrics } from './metrics.js';

/** Resilience settings per backend; defaults follow the seed (5 failures, 60 s, 3 tries). */
export interface BreakerOptions {
  /** Consecutive failed calls (after retries) that open the breaker. Default 5. */
  failureThreshold?: number;
  /** Time an open breaker waits before letting one trial call through. Default 60 000 ms. */
  halfOpenAfterMs?: number;
  /** Tries per call, the first included, for transient errors only. Default 3. */
  maxAttempts?: number;
  /** First backoff delay; later ones grow exponentially with decorrelated jitter. Default 100 ms. */
  initialDelayMs?: number;
  /** Backoff ceiling. Default 2 000 ms. */
  maxDelayMs?: number;
  /** Timeout of one attempt. Default 10 000 ms. */
  timeoutMs?: number;
}

/** Backend names used in metrics, errors and /health. */
export type BackendName = 'postgres' | 's3';

/** Breaker state as reported by /health. */
export type BreakerStateName = 'closed' | 'half_open' | 'open';

/** One backend's resilience policy: breaker ∘ retry ∘ per-attempt timeout. */
export interface ResilientBackend {
  readonly name: BackendName;
  /**
   * Runs `fn` under the policy. Transient failures that survive retries, timeouts and an open
   * breaker become ToolErrors naming the backend; permanent errors are rethrown untouched for
   * the tool to map (NoSuchKey, constraint violations…).
   */
  run<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  state(): BreakerStateName;
  dispose(): void;
}

const STATE_NAMES: Record<CircuitState, BreakerStateName> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Open]: 'open',
  [CircuitState.Isolated]: 'open',
};
const STATE_VALUES: Record<BreakerStateName, number> = { closed: 0, half_open: 1, open: 2 };

/** Builds the policy of one backend; `isTransient` decides what is retried and counted as failure. */
export function createResilientBackend(
  name: BackendName,
  isTransient: (err: unknown) => boolean,
  options: BreakerOptions,
  metrics: GatewayMetrics,
  logger: Logger,
): ResilientBackend {
  const halfOpenAfter = options.halfOpenAfterMs ?? 60_000;
  // Timeouts are transient too: the backend was too slow this time.
  const transient = (err: unknown) => isTaskCancelledError(err) || isTransient(err);
  const breaker = circuitBreaker(handleWhen(transient), {
    halfOpenAfter,
    breaker: new ConsecutiveBreaker(options.failureThreshold ?? 5),
  });
  const retries = retry(handleWhen(transient), {
    maxAttempts: (options.maxAttempts ?? 3) - 1,
    backoff: new ExponentialBackoff({
      initialDelay: options.initialDelayMs ?? 100,
      maxDelay: options.maxDelayMs ?? 2_000,
    }),
  });
  // abortOnReturn off: an object body streams on after the attempt that opened it returned; the
  // timeout still aborts an attempt that takes too long to answer.
  const perAttempt = timeout(options.timeoutMs ?? 10_000, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });
  // Breaker outermost: it counts calls whose retries are exhausted, not single attempts.
  const policy = wrap(breaker, retries, perAttempt);

  let openedAt = 0;
  metrics.breakerState.set({ backend: name }, 0);
  const listeners = [
    breaker.onBreak(() => {
      openedAt = Date.now();
    }),
    breaker.onStateChange((state) => {
      const stateName = STATE_NAMES[state];
      metrics.breakerState.set({ backend: name }, STATE_VALUES[stateName]);
      metrics.breakerTransitions.inc({ backend: name, state: stateName });
      logger.warn({ event_type: 'mcp_breaker_state', backend: name, state: stateName }, 'breaker state changed');
    }),
  ];

  return {
    name,
    async run<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
      try {
        return await policy.execute(async ({ signal }) => {
          try {
            const result = await fn(signal);
            metrics.backendAttempts.inc({ backend: name, result: 'ok' });
            return result;
          } catch (err) {
            metrics.backendAttempts.inc({ backend: name, result: transient(err) ? 'transient' : 'permanent' });
            throw err;
          }
        });
      } catch (err) {
        if (isBrokenCircuitError(err)) {
          metrics.breakerRejections.inc({ backend: name });
          const retryAfter = Math.max(1, Math.ceil((openedAt + halfOpenAfter - Date.now()) / 1000));
          throw new ToolError('backend_unavailable', `${name} is unavailable (circuit open); retry in ${retryAfter} s`, {
            backend: name,
            retry_after_seconds: retryAfter,
          });
        }
        if (isTaskCancelledError(err)) {
          throw new ToolError('backend_error', `${name} did not answer in time`, { backend: name });
        }
        if (isTransient(err)) {
          logger.warn({ event_type: 'mcp_backend_error', backend: name, err_code: errorCode(err) }, 'backend call failed');
          throw new ToolError('backend_error', `${name} failed after retries`, { backend: name });
        }
        throw err;
      }
    },
    state: () => STATE_NAMES[breaker.state],
    dispose() {
      for (const l of listeners) l.dispose();
    },
  };
}

/** The `.code` of an error-like value, if any (pg, Node and AWS errors all set one). */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
