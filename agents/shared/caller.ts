import type { IncomingHttpHeaders } from 'node:http';
import { callTrace, type CallTrace } from './trace.js';

/** Who called, as the agent's sidecar asserted it (the agent binds 127.0.0.1 only, so it trusts these). */
export interface Caller {
  readonly subject: string | undefined;
  readonly clientId: string | undefined;
  readonly roles: readonly string[];
  readonly requestId: string | undefined;
  /** The trace the sidecar passed on (`traceparent`), continued by every call out made while serving this one. */
  readonly trace: CallTrace | undefined;
}

/** A header's value, cut to 256 characters unless `whole`. */
function single(headers: IncomingHttpHeaders, name: string, whole = false): string | undefined {
  const value = headers[name];
  return typeof value === 'string' && value !== '' ? (whole ? value : value.slice(0, 256)) : undefined;
}

/** Reads the x-ca-a2a-* identity headers and the trace headers. */
export function callerFrom(headers: IncomingHttpHeaders): Caller {
  const roles = single(headers, 'x-ca-a2a-roles');
  return {
    // Whole (Node bounds a request's headers, 16 KiB): it names whose idempotency keys an upload
    // uses, and two subjects cut to a common prefix would share them.
    subject: single(headers, 'x-ca-a2a-subject', true),
    clientId: single(headers, 'x-ca-a2a-client-id'),
    roles: roles === undefined ? [] : roles.split(',').map((role) => role.trim()).filter(Boolean),
    requestId: single(headers, 'x-ca-a2a-request-id'),
    trace: callTrace(headers),
  };
}
