import type { IncomingHttpHeaders } from 'node:http';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/), enough to follow one call across
 * hops: each sidecar continues the trace a valid `traceparent` names, or starts one, and passes
 * `traceparent` on to its upstream (inbound) or its target (egress) with a parent id of its own.
 * Every audit line carries the `trace_id`. Nothing is sampled or exported: this is for the logs,
 * and the flags are passed on as they came (00 on a trace the sidecar starts).
 *
 * The ids come from the request id (a random UUID): a trace the sidecar starts has the request
 * id's 32 hex digits as its trace id, and the sidecar's parent id is the request id's first 16,
 * so a trace and a hop are found from the request id quoted by a caller, and no random bytes are
 * drawn per request for them.
 */
export interface TraceContext {
  /** 32 lowercase hex digits. */
  readonly traceId: string;
  /** The parent id this hop passes on: 16 lowercase hex digits. */
  readonly spanId: string;
  /** 2 hex digits, as they came (00 on a trace started here). */
  readonly flags: string;
  /** The caller's `tracestate`, passed on only with a valid `traceparent`, and only when 512 characters or fewer. */
  readonly state: string | undefined;
}

/** version 00: exactly version-traceid-parentid-flags. A later version may add fields after a dash. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-|$)/;
const ALL_ZEROS = /^0+$/;
const MAX_TRACESTATE = 512;

/**
 * The trace a request belongs to: the one its `traceparent` names when that is valid, else a new
 * one. `requestId` is this hop's random UUID.
 */
export function traceContext(headers: IncomingHttpHeaders, requestId: string): TraceContext {
  const hex = requestId.replaceAll('-', '');
  const spanId = hex.slice(0, 16);
  const parent = parseTraceparent(headers.traceparent);
  if (parent === undefined) return { traceId: hex, spanId, flags: '00', state: undefined };
  const state = headers.tracestate;
  return { traceId: parent.traceId, spanId, flags: parent.flags, state: typeof state === 'string' && state.length <= MAX_TRACESTATE ? state : undefined };
}

/**
 * A `traceparent` value's trace id and flags, or undefined unless it is valid by the spec's rules:
 * lowercase hex, neither id all zeros, version ff refused, version 00 exactly 55 characters (so two
 * headers, which Node joins with a comma, are refused too).
 */
export function parseTraceparent(value: string | string[] | undefined): { traceId: string; flags: string } | undefined {
  if (typeof value !== 'string') return undefined;
  const match = TRACEPARENT.exec(value);
  if (match === null) return undefined;
  const [, version = '', traceId = '', parentId = '', flags = ''] = match;
  if (version === 'ff' || (version === '00' && value.length !== 55)) return undefined;
  if (ALL_ZEROS.test(traceId) || ALL_ZEROS.test(parentId)) return undefined;
  return { traceId, flags };
}

/** The `traceparent` (and `tracestate`) headers this hop sends on. */
export function traceHeaders(trace: TraceContext): Record<string, string> {
  const headers: Record<string, string> = { traceparent: `00-${trace.traceId}-${trace.spanId}-${trace.flags}` };
  if (trace.state !== undefined) headers['tracestate'] = trace.state;
  return headers;
}
