import type { Logger } from 'pino';
import { ToolError } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import type { ResilientBackend } from './resilience.js';
import type { CallerIdentity } from './tool-runner.js';

/** How much of one backend a single caller may hold at once. */
export interface CallerLimitOptions {
  /** Calls of one caller running against the backend at once (each holds a pooled connection or waits for one). */
  maxConcurrent: number;
  /** How long a call over that waits for one of its caller's own calls to end before it is refused. */
  maxWaitMs: number;
}

/** One caller's running calls and, in arrival order, the calls waiting for one of them to end. */
interface Slots {
  active: number;
  readonly waiting: Set<() => void>;
}

/**
 * The caller a call is counted against: the client id the sidecar verified, or one shared
 * bucket for calls that carry none (direct calls in development). Prefixed so that no client id
 * can name the anonymous bucket.
 */
function callerKey(caller: CallerIdentity): string {
  return caller.client_id === undefined ? 'anonymous' : `client:${caller.client_id}`;
}

/**
 * Bounds each caller's calls against one backend, so that one caller (a compromised or looping
 * agent) cannot take every pooled connection and leave the others waiting until they fail. A
 * call over its caller's bound waits, first come first served, for one of that caller's own to
 * end, at most `maxWaitMs`; then it is refused with `caller_busy` without touching the backend,
 * so neither the retries nor the breaker count it. Returns the backend as one caller sees it.
 */
export function limitPerCaller(
  backend: ResilientBackend,
  options: CallerLimitOptions,
  metrics: GatewayMetrics,
  logger: Logger,
): (caller: CallerIdentity) => ResilientBackend {
  // Only callers with a call running or waiting have an entry: the map is as large as the calls in flight.
  const callers = new Map<string, Slots>();
  // Present at 0 from the start, so an alert on them has a series to read.
  metrics.callerWaiting.set({ backend: backend.name }, 0);
  metrics.callerLimited.inc({ backend: backend.name }, 0);

  /** The caller's slots once one is its call's, or undefined when the wait ran out. */
  function acquire(key: string): Slots | Promise<Slots | undefined> {
    let slots = callers.get(key);
    if (!slots) {
      slots = { active: 0, waiting: new Set() };
      callers.set(key, slots);
    }
    if (slots.active < options.maxConcurrent) {
      slots.active++;
      return slots;
    }
    const held = slots;
    metrics.callerWaiting.inc({ backend: backend.name });
    return new Promise<Slots | undefined>((resolve) => {
      const timer = setTimeout(() => {
        held.waiting.delete(wake);
        metrics.callerWaiting.dec({ backend: backend.name });
        resolve(undefined);
      }, options.maxWaitMs);
      function wake(): void {
        clearTimeout(timer);
        metrics.callerWaiting.dec({ backend: backend.name });
        resolve(held);
      }
      held.waiting.add(wake);
    });
  }

  function release(key: string, slots: Slots): void {
    const next = slots.waiting.values().next();
    if (!next.done) {
      // The ending call's slot passes to the caller's longest waiting call.
      slots.waiting.delete(next.value);
      next.value();
      return;
    }
    if (--slots.active === 0) callers.delete(key);
  }

  function refuse(caller: CallerIdentity, waitedMs: number): ToolError {
    metrics.callerLimited.inc({ backend: backend.name });
    logger.warn(
      {
        event_type: 'mcp_caller_limited',
        backend: backend.name,
        caller: { subject: caller.subject, client_id: caller.client_id, roles: caller.roles },
        max_concurrent: options.maxConcurrent,
        waited_ms: waitedMs,
        request_id: caller.request_id,
        trace_id: caller.trace_id,
      },
      'caller over its concurrent backend calls',
    );
    return new ToolError(
      'caller_busy',
      `this caller's bound of ${options.maxConcurrent} concurrent ${backend.name} calls is reached; ask again once one has ended`,
      // One of the caller's own calls ending is what frees it: a second is a fair first wait.
      { backend: backend.name, retry_after_seconds: 1 },
    );
  }

  return (caller) => {
    const key = callerKey(caller);
    return {
      ...backend,
      async run(fn, runOptions) {
        const started = Date.now();
        const slots = await acquire(key);
        if (!slots) throw refuse(caller, Date.now() - started);
        try {
          return await backend.run(fn, runOptions);
        } finally {
          release(key, slots);
        }
      },
    };
  };
}
