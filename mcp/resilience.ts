import {
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TaskCancelledError,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  isBrokenCircuitError,
  timeout,
} from 'cockatiel';
import type { IBackoff, TimeoutPolicy } from 'cockatiel';
import { setMaxListeners } from 'node:events';
import { setTimeout as wait } from 'node:timers/promises';
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
  /** Timeout of one attempt. Default 10 000 ms; a call may set its own ({@link RunOptions.timeoutMs}). */
  timeoutMs?: number;
}

/** Backend names used in metrics, errors and /health. */
export type BackendName = 'postgres' | 's3';

/** Breaker state as reported by /health. */
export type BreakerStateName = 'closed' | 'half_open' | 'open';

/** A test of one failed try: true when it may be tried again. */
export type RetryTest = (err: unknown) => boolean;

/** Options of one {@link ResilientBackend.run} call. */
export interface RunOptions {
  /**
   * Which transient failures of this call may be tried again; default all, timeouts included.
   * A call whose effect must not happen twice passes a test that holds only when the failed try
   * certainly did nothing.
   */
  retryOn?: RetryTest;
  /**
   * The timeout of each of this call's tries, when it is not the backend's (an upload, whose time
   * grows with its size). Pass a value fixed at start: a policy is built once per value.
   */
  timeoutMs?: number;
}

/** One backend's resilience policy: breaker ∘ retry ∘ per-attempt timeout. */
export interface ResilientBackend {
  readonly name: BackendName;
  /**
   * Runs `fn` under the policy. Transient failures that survive retries, timeouts and an open
   * breaker become ToolErrors naming the backend; permanent errors are rethrown untouched for
   * the tool to map (NoSuchKey, constraint violations…).
   */
  run<T>(fn: (signal: AbortSignal) => Promise<T>, options?: RunOptions): Promise<T>;
  state(): BreakerStateName;
  /**
   * Stops the backend: the tries still running are given up (their signal aborted, their timers
   * cleared) and none is started after, each such call refused with backend_unavailable.
   */
  dispose(): void;
}

const STATE_NAMES: Record<CircuitState, BreakerStateName> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Open]: 'open',
  [CircuitState.Isolated]: 'open',
};
const STATE_VALUES: Record<BreakerStateName, number> = { closed: 0, half_open: 1, open: 2 };

// cockatiel 3.2.1's isTaskCancelledError tests for 'isBulkheadRejectedError'
// (dist/errors/Errors.js), so it never recognises a timeout; test the class it throws instead.
const isTimeout = (err: unknown): err is TaskCancelledError => err instanceof TaskCancelledError;

const ANY_TRANSIENT: RetryTest = () => true;

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
  const transient = (err: unknown) => isTimeout(err) || isTransient(err);
  const breaker = circuitBreaker(handleWhen(transient), {
    halfOpenAfter,
    breaker: new ConsecutiveBreaker(options.failureThreshold ?? 5),
  });
  const retries = (options.maxAttempts ?? 3) - 1;
  const backoff = new ExponentialBackoff({
    initialDelay: options.initialDelayMs ?? 100,
    maxDelay: options.maxDelayMs ?? 2_000,
  });
  const defaultTimeoutMs = options.timeoutMs ?? 10_000;
  const listeners: { dispose(): void }[] = [];
  // Aborted by dispose(), once the gateway's connections are closed and nobody waits for an answer.
  // A try running then (a bucket that went silent) would otherwise hold the stopping process for
  // its bound, up to an hour for an upload, by its timer and its socket, and a try cut off when the
  // bucket client closes would be tried again on a new connection. Each try's timeout derives from it.
  const stopping = new AbortController();
  // One listener per try in flight, however many: no leak warning past Node's default of 10.
  setMaxListeners(0, stopping.signal);
  const stopped = () =>
    new ToolError('backend_unavailable', `the gateway is stopping; ${name} calls are no longer taken`, { backend: name, retry_after_seconds: 1 });
  // One timeout policy per bound, built on first use.
  const byTimeout = new Map<number, TimeoutPolicy>();
  const timeoutFor = (timeoutMs: number): TimeoutPolicy => {
    let perAttempt = byTimeout.get(timeoutMs);
    if (!perAttempt) {
      // abortOnReturn off: an object body streams on after the attempt that opened it returned;
      // the timeout still aborts an attempt that takes too long to answer.
      perAttempt = timeout(timeoutMs, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });
      // A timed-out try never settles in time for the wrapper in run() to count it.
      listeners.push(perAttempt.onTimeout(() => metrics.backendAttempts.inc({ backend: name, result: 'transient' })));
      byTimeout.set(timeoutMs, perAttempt);
    }
    return perAttempt;
  };
  // Retry, between the breaker and the per-attempt timeout. Not cockatiel's retry(): its backoff
  // waits on a timer no signal clears, so a call stopped between tries would hold the stopping
  // process up to maxDelayMs; here the stop ends the wait and clears its timer.
  const retrying = async <T>(tryOnce: (signal: AbortSignal) => Promise<T>, retryOn: RetryTest, signal: AbortSignal): Promise<T> => {
    let delay: IBackoff<unknown> | undefined;
    for (let retried = 0; ; retried++) {
      try {
        return await tryOnce(signal);
      } catch (err) {
        if (retried >= retries || !transient(err) || !retryOn(err)) throw err;
        delay = delay ? delay.next(undefined) : backoff.next();
        await wait(delay.duration, undefined, { signal });
      }
    }
  };

  let openedAt = 0;
  metrics.breakerState.set({ backend: name }, 0);
  listeners.push(
    breaker.onBreak(() => {
      openedAt = Date.now();
    }),
    breaker.onStateChange((state) => {
      const stateName = STATE_NAMES[state];
      metrics.breakerState.set({ backend: name }, STATE_VALUES[stateName]);
      metrics.breakerTransitions.inc({ backend: name, state: stateName });
      logger.warn({ event_type: 'mcp_breaker_state', backend: name, state: stateName }, 'breaker state changed');
    }),
  );

  return {
    name,
    async run<T>(fn: (signal: AbortSignal) => Promise<T>, runOptions: RunOptions = {}): Promise<T> {
      if (stopping.signal.aborted) throw stopped();
      const perAttempt = timeoutFor(runOptions.timeoutMs ?? defaultTimeoutMs);
      const attempt = async ({ signal }: { signal: AbortSignal }): Promise<T> => {
        try {
          const result = await fn(signal);
          if (!signal.aborted) metrics.backendAttempts.inc({ backend: name, result: 'ok' });
          return result;
        } catch (err) {
          if (!signal.aborted) metrics.backendAttempts.inc({ backend: name, result: transient(err) ? 'transient' : 'permanent' });
          throw err;
        }
      };
      try {
        // Breaker outermost: it counts calls whose retries are exhausted, not single attempts, and
        // every call shares it, so calls that may not be retried, or bounded otherwise, count too.
        // The stop signal is passed in directly: a call that queued behind a half-open trial is run
        // again by cockatiel 3.2.1 without the signal it was given (CircuitBreakerPolicy.execute).
        return await breaker.execute(
          () => retrying((signal) => perAttempt.execute(attempt, signal), runOptions.retryOn ?? ANY_TRANSIENT, stopping.signal),
          stopping.signal,
        );
      } catch (err) {
        if (stopping.signal.aborted) throw stopped();
        if (isBrokenCircuitError(err)) {
          metrics.breakerRejections.inc({ backend: name });
          const retryAfter = Math.max(1, Math.ceil((openedAt + halfOpenAfter - Date.now()) / 1000));
          throw new ToolError('backend_unavailable', `${name} is unavailable (circuit open); retry in ${retryAfter} s`, {
            backend: name,
            retry_after_seconds: retryAfter,
          });
        }
        if (isTimeout(err)) {
          logger.warn({ event_type: 'mcp_backend_error', backend: name, err_code: 'timeout' }, 'backend call timed out');
          throw new ToolError('backend_error', `${name} did not answer in time`, { backend: name });
        }
        if (isTransient(err)) {
          logger.warn({ event_type: 'mcp_backend_error', backend: name, ...errorFields(err) }, 'backend call failed');
          throw new ToolError('backend_error', `${name} failed`, { backend: name });
        }
        throw err;
      }
    },
    state: () => STATE_NAMES[breaker.state],
    dispose() {
      for (const l of listeners) l.dispose();
      stopping.abort();
    },
  };
}

/**
 * What a log line says of a backend failure. Many carry no `.code`: pg-pool's wait for a pooled
 * connection ('timeout exceeded when trying to connect'), a statement left unanswered, an S3 5xx
 * (SlowDown, InternalError) or the S3 client's own timeouts; their name and message (fixed text
 * of the driver or the service, never a tool argument) tell a saturated pool from a server that
 * is down.
 */
function errorFields(err: unknown): { err_code?: string; err_name?: string; err_message?: string } {
  const code = errorCode(err);
  return err instanceof Error ? { err_code: code, err_name: err.name, err_message: err.message.slice(0, 200) } : { err_code: code };
}

/** The `.code` of an error-like value, if any (pg, Node and AWS errors all set one). */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
