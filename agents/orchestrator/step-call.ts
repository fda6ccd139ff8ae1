import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { isEgressError, isTransportFailure, withRetry, type EgressClient, type EgressError, type RetryOptions } from '../shared/egress-client.js';

/**
 * How long a run keeps asking a step agent that answers `busy` (it holds its bound of documents:
 * nothing was read or written) before it leaves the document to the stale sweep instead.
 */
export interface BusyRetryOptions {
  /** Longest a step waits across its busy answers, in all; 0 defers at the first one. */
  readonly maxWaitMs: number;
  /** The first wait, doubled after each busy answer up to `maxDelayMs`, with jitter. */
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * 30 s: a quarter of the default stale window (120 s), so a run waiting on a busy agent is never
 * taken for a stalled one, and about the orchestrator sidecar's upstream timeout, so a caller of
 * process_document is not held much longer than it would be anyway.
 */
export const DEFAULT_BUSY_RETRY: BusyRetryOptions = { maxWaitMs: 30_000, initialDelayMs: 500, maxDelayMs: 5_000 };

/** The step agent had no room for the document now (a bound of PDFs or documents): it did nothing. */
export function isBusy(error: unknown): error is EgressError {
  return isEgressError(error) && error.kind === 'remote' && error.code === 'busy';
}

/** The wait a busy answer asked for (`data.retry_after_seconds`), in ms; 0 when it named none. */
function hintMs(error: EgressError): number {
  const seconds = error.data?.['retry_after_seconds'];
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/**
 * What a step call came to: the agent's result; still busy once the busy wait was spent, or when
 * the next ask could not have started before the step's deadline (`outOfTime`); its hop failed on
 * every attempt made, all of `retry.attempts` or as many as the deadline left time for
 * (`outOfTime`); or no time left at all when the step was to start (`notAsked`).
 */
export type StepAnswer =
  | { readonly result: unknown }
  | { readonly busy: EgressError; readonly attempts: number; readonly waitedMs: number; readonly outOfTime: boolean }
  | { readonly unreachable: EgressError; readonly attempts: number; readonly outOfTime: boolean }
  | { readonly notAsked: true };

/**
 * Calls a step agent, within `deadline` (performance.now()'s clock): every attempt is cut at it,
 * and no attempt or wait starts that would end past it. A hop that failed is asked again per
 * `retry`; a `busy` answer is asked again after a backoff with jitter (half the delay, plus up to
 * the other half at random: a burst's runs do not come back together), never sooner than the
 * answer's `retry_after_seconds`, while the waits fit in `busy.maxWaitMs`. Past that the step
 * answers `busy` with what it waited, for the run to leave the document in flight: the stale
 * sweep retakes it once its stale window has passed.
 */
export async function callStep(egress: EgressClient, retry: RetryOptions, busy: BusyRetryOptions, deadline: number, service: string, method: string, params: Record<string, unknown>): Promise<StepAnswer> {
  const started = performance.now();
  if (!(started < deadline)) return { notAsked: true };
  let delay = busy.initialDelayMs;
  for (let attempts = 1; ; attempts++) {
    let hopAttempts = 0;
    try {
      const ask = () => {
        hopAttempts++;
        return egress.call<unknown>(service, method, params, { deadline });
      };
      return { result: await withRetry(retry, ask, isTransportFailure, deadline) };
    } catch (error) {
      if (isTransportFailure(error)) return { unreachable: error, attempts: hopAttempts, outOfTime: hopAttempts < retry.attempts };
      if (!isBusy(error)) throw error;
      const backoff = delay / 2 + Math.random() * (delay / 2);
      const wait = Math.max(hintMs(error), backoff);
      const now = performance.now();
      const waitedMs = now - started;
      if (waitedMs + wait > busy.maxWaitMs) return { busy: error, attempts, waitedMs, outOfTime: false };
      if (!(now + wait < deadline)) return { busy: error, attempts, waitedMs, outOfTime: true };
      await sleep(wait);
      delay = Math.min(delay * 2, busy.maxDelayMs);
    }
  }
}
