import type { RevokeRequest } from '../stores/revoker.js';

/** A body the admin API refuses with 400; `message` is safe to show. */
export class BadRequest extends Error {
  readonly code = 'invalid_request';
}

type Kind = RevokeRequest['kind'];

/**
 * Reads a revocation request body ({jti|subject|before, reason[, expires_at]}). The sidecar in
 * front already validated it against the method's schema; this is the service's own check, so
 * the API stays safe when called some other way (tests, a misconfigured policy).
 */
export function readRevokeRequest(kind: Kind, body: unknown, revokedBy: string): RevokeRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequest('body must be a JSON object');
  const b = body as Record<string, unknown>;
  const reason = text(b.reason, 'reason');
  switch (kind) {
    case 'jti': {
      const expiresAt = b.expires_at === undefined ? undefined : time(b.expires_at, 'expires_at');
      return { kind, jti: text(b.jti, 'jti'), reason, revokedBy, ...(expiresAt === undefined ? {} : { expiresAt }) };
    }
    case 'subject':
      return { kind, subject: text(b.subject, 'subject'), reason, revokedBy };
    case 'before':
      return { kind, before: time(b.before, 'before'), reason, revokedBy };
  }
}

function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.trim().length === 0) throw new BadRequest(`${name} must be a non-empty string`);
  return value;
}

/** An ISO 8601 date-time with a zone (or epoch seconds) → epoch seconds. */
export function time(value: unknown, name: string): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms / 1000;
  }
  throw new BadRequest(`${name} must be an ISO 8601 date-time with a time zone, e.g. 2025-01-31T12:00:00Z`);
}

/** Who made the request, from the identity headers the sidecar sets (and strips from clients). */
export function requester(headers: Record<string, string | string[] | undefined>): string {
  const one = (name: string): string | undefined => {
    const value = headers[name];
    return typeof value === 'string' && value.length > 0 ? value.slice(0, 100) : undefined;
  };
  const subject = one('x-ca-a2a-subject');
  const client = one('x-ca-a2a-client-id');
  if (subject && client && client !== subject) return `${subject} (${client})`;
  return subject ?? client ?? 'unknown';
}
