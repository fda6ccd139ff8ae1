import type { Logger } from 'pino';
import { ToolError } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import type { ResilientBackend } from './resilience.js';
import type { CallerIdentity } from './tool-runner.js';

/** How much of one backend a single caller may hold at once, and how its pool is shared. */
export interface CallerLimitOptions {
  /** Calls of one caller running against the backend at once (each holds a pooled connection or waits for one). */
  maxConcurrent: number;
  /** How long a call over that waits for a slot before it is refused. */
  maxWaitMs: number;
  /** Connections of the backend's pool. */
  poolSize: number;
  /**
   * Pooled connections a caller's second and later calls may not take: they are kept for the
   * first call of a caller with nothing in flight. 0 turns sharing off (only `maxConcurrent` holds).
   */
  reserved: number;
}

/** One caller's calls holding a slot, and how many of its calls wait for one. */
interface Slots {
  active: number;
  waiting: number;
}

/** A call waiting for a slot; `admit` hands it one, `cancel` refuses it with `error`. */
interface Waiter {
  readonly slots: Slots;
  readonly admit: () => void;
  readonly cancel: (error: ToolError) => void;
}

/** The backend as each caller sees it, and the end of all waiting. */
export interface CallerLimiter {
  forCaller(caller: CallerIdentity): ResilientBackend;
  /**
   * Refuses every call still waiting for a slot, and every call after, with `backend_unavailable`:
   * the gateway is stopping. Calls holding a slot run on. The gateway calls it once its drain is
   * over, before it closes the pool those calls would have run on.
   */
  close(): void;
}

/** Why a call waited, for the refusal's message and log line. */
type WaitReason = 'caller_bound' | 'pool_share';

/**
 * The caller a call is counted against: the client id the sidecar verified, or one shared
 * bucket for calls that carry none (direct calls in development). Prefixed so that no client id
 * can name the anonymous bucket.
 */
function callerKey(caller: CallerIdentity): string {
  return caller.client_id === undefined ? 'anonymous' : `client:${caller.client_id}`;
}

/**
 * Shares one backend's pool among callers, so that neither one caller nor a few (compromised or
 * looping agents) can take every pooled connection and leave the others waiting until they fail.
 * Three rules, each a bound in calls held from first try to last:
 *
 * 1. A caller with nothing in flight is always let through: its one call is never held back.
 * 2. A caller's further call goes only while the caller holds fewer than `maxConcurrent`, and
 *    while the calls in flight leave `reserved` of the pool to rule 1.
 * 3. A call held back waits; a slot freed goes to the waiting call whose caller holds fewest
 *    (first come first served among equals), so flooding callers end with equal shares.
 *
 * A call still waiting after `maxWaitMs` is refused with `caller_busy` without touching the
 * backend, so neither the retries nor the breaker count it. A wait's timer does not keep the
 * process alive, and `close()` ends every wait at once.
 */
export function limitPerCaller(
  backend: ResilientBackend,
  options: CallerLimitOptions,
  metrics: GatewayMetrics,
  logger: Logger,
): CallerLimiter {
  // Only callers with a call running or waiting have an entry: the map is as large as the calls in flight.
  const callers = new Map<string, Slots>();
  // In arrival order; as long as the calls in flight (the sidecar bounds those).
  const waiters: Waiter[] = [];
  const shared = Math.max(0, options.poolSize - options.reserved);
  let inFlight = 0;
  let closed = false;
  // Present at 0 from the start, so an alert on them has a series to read.
  metrics.callerWaiting.set({ backend: backend.name }, 0);
  metrics.callerLimited.inc({ backend: backend.name }, 0);

  function blockedBy(slots: Slots): WaitReason | undefined {
    if (slots.active === 0) return undefined;
    if (slots.active >= options.maxConcurrent) return 'caller_bound';
    return inFlight < shared ? undefined : 'pool_share';
  }

  function take(slots: Slots): void {
    slots.active++;
    inFlight++;
  }

  /** Hands freed slots to waiting calls, the caller holding fewest first, until none may take one. */
  function dispatch(): void {
    for (;;) {
      let best = -1;
      for (let i = 0; i < waiters.length; i++) {
        const w = waiters[i] as Waiter;
        if (blockedBy(w.slots) !== undefined) continue;
        if (best < 0 || w.slots.active < (waiters[best] as Waiter).slots.active) best = i;
      }
      if (best < 0) return;
      const [chosen] = waiters.splice(best, 1) as [Waiter];
      chosen.slots.waiting--;
      take(chosen.slots);
      chosen.admit();
    }
  }

  function slotsOf(key: string): Slots {
    let slots = callers.get(key);
    if (!slots) {
      slots = { active: 0, waiting: 0 };
      callers.set(key, slots);
    }
    return slots;
  }

  function forget(key: string, slots: Slots): void {
    if (slots.active === 0 && slots.waiting === 0) callers.delete(key);
  }

  /** Resolves once the call holds a slot; rejects with `caller_busy` when the wait ran out, `backend_unavailable` once closed. */
  function acquire(key: string, caller: CallerIdentity): Slots | Promise<Slots> {
    if (closed) throw stopping();
    const slots = slotsOf(key);
    const reason = blockedBy(slots);
    if (reason === undefined) {
      take(slots);
      return slots;
    }
    const started = Date.now();
    slots.waiting++;
    metrics.callerWaiting.inc({ backend: backend.name });
    return new Promise<Slots>((resolve, reject) => {
      /** Takes the call out of the queue and the counts; what holds it back now, which may differ from what did when it arrived. */
      const leave = (): WaitReason => {
        clearTimeout(timer);
        // Still queued (an admitted call's timer is cleared on admission); checked all the same,
        // since splice(-1) would drop another call's place.
        const at = waiters.indexOf(waiter);
        if (at >= 0) waiters.splice(at, 1);
        slots.waiting--;
        metrics.callerWaiting.dec({ backend: backend.name });
        const now = blockedBy(slots) ?? reason;
        forget(key, slots);
        return now;
      };
      const waiter: Waiter = {
        slots,
        admit() {
          clearTimeout(timer);
          metrics.callerWaiting.dec({ backend: backend.name });
          resolve(slots);
        },
        cancel(error) {
          leave();
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        const now = leave();
        reject(refuse(caller, slots.active, now, Date.now() - started));
      }, options.maxWaitMs);
      // A wait is part of a request in flight, whose socket keeps the process alive while it
      // matters; once the gateway has stopped, a wait left over must not hold it up for maxWaitMs.
      timer.unref();
      waiters.push(waiter);
    });
  }

  function release(key: string, slots: Slots): void {
    slots.active--;
    inFlight--;
    dispatch();
    forget(key, slots);
  }

  function refuse(caller: CallerIdentity, held: number, reason: WaitReason, waitedMs: number): ToolError {
    metrics.callerLimited.inc({ backend: backend.name });
    logger.warn(
      {
        event_type: 'mcp_caller_limited',
        backend: backend.name,
        caller: { subject: caller.subject, client_id: caller.client_id, roles: caller.roles },
        reason,
        held,
        max_concurrent: options.maxConcurrent,
        waited_ms: waitedMs,
        request_id: caller.request_id,
        trace_id: caller.trace_id,
      },
      'caller over its concurrent backend calls',
    );
    const message =
      reason === 'caller_bound'
        ? `this caller's bound of ${options.maxConcurrent} concurrent ${backend.name} calls is reached; ask again once one has ended`
        : `this caller already runs ${held} ${backend.name} calls and the rest of the pool is kept for other callers; ask again once one has ended`;
    // One of the caller's own calls ending is what frees it: a second is a fair first wait.
    return new ToolError('caller_busy', message, { backend: backend.name, retry_after_seconds: 1 });
  }

  function stopping(): ToolError {
    return new ToolError('backend_unavailable', `the gateway is stopping; ${backend.name} calls are no longer taken`, { backend: backend.name, retry_after_seconds: 1 });
  }

  return {
    forCaller(caller) {
      const key = callerKey(caller);
      return {
        ...backend,
        async run(fn, runOptions) {
          const slots = await acquire(key, caller);
          try {
            return await backend.run(fn, runOptions);
          } finally {
            release(key, slots);
          }
        },
      };
    },
    close() {
      closed = true;
      for (const waiter of [...waiters]) waiter.cancel(stopping());
    },
  };
}
