import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingHttpHeaders } from 'node:http';
import { parseTraceparent } from '../../proxy/http/trace-context.js';

/** The W3C trace headers of a call the agent serves, as its sidecar sent them. */
export interface CallTrace {
  readonly traceId: string;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * The trace of the call an agent is serving, for the calls it makes out through its sidecar's
 * egress meanwhile (agents/shared/egress-client.ts): the egress sidecar continues that trace, so
 * one document's audit lines share a trace_id across every hop. Work started while serving a call
 * (the orchestrator's pipeline) keeps the call's trace; work started by a timer (the stale sweep)
 * has none and gets a trace of its own at the egress.
 */
const current = new AsyncLocalStorage<CallTrace>();

/** The trace a request's `traceparent` (and `tracestate`) name; undefined unless valid. */
export function callTrace(headers: IncomingHttpHeaders): CallTrace | undefined {
  const { traceparent, tracestate } = headers;
  const parsed = parseTraceparent(traceparent);
  if (parsed === undefined || typeof traceparent !== 'string') return undefined;
  return { traceId: parsed.traceId, headers: typeof tracestate === 'string' ? { traceparent, tracestate } : { traceparent } };
}

/** Runs `work` within `trace`, as is when there is none. */
export function withTrace<T>(trace: CallTrace | undefined, work: () => Promise<T>): Promise<T> {
  return trace === undefined ? work() : current.run(trace, work);
}

/** The headers that pass the served call's trace on: none outside a traced call. */
export function traceHeadersOfCurrentCall(): Readonly<Record<string, string>> {
  return current.getStore()?.headers ?? {};
}
