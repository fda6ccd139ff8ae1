import { createSchemaCompiler } from '../policy/ajv.js';
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
export function readRevokeRequest(kind: Kind, body: unknown, revokedBy: string, requestId: string): RevokeRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequest('body must be a JSON object');
  const b = body as Record<string, unknown>;
  const reason = text(b.reason, 'reason');
  const by = { reason, revokedBy, requestId };
  switch (kind) {
    case 'jti': {
      const expiresAt = b.expires_at === undefined ? undefined : time(b.expires_at, 'expires_at');
      return { kind, jti: text(b.jti, 'jti'), ...by, ...(expiresAt === undefined ? {} : { expiresAt }) };
    }
    case 'subject':
      return { kind, subject: text(b.subject, 'subject'), ...by };
    case 'before':
      return { kind, before: time(b.before, 'before'), ...by };
  }
}

function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.trim().length === 0) throw new BadRequest(`${name} must be a non-empty string`);
  return value;
}

// The admin sidecar checks these fields against `format: date-time` (RFC 3339 §5.6, ajv-formats);
// the same compiler here makes the API accept exactly what the sidecar lets through.
const isDateTime = createSchemaCompiler().compile<string>({ type: 'string', format: 'date-time' });
// The parts of a value isDateTime accepted: T, t or whitespace between date and time (RFC 3339
// §5.6 note), seconds up to 60 (a leap second, §5.7), a zone Z, z, ±hh, ±hhmm or ±hh:mm.
const DATE_TIME_PARTS = /^(\d{4}-\d\d-\d\d)[t\s](\d\d:\d\d):(\d\d)(\.\d+)?(z|[+-]\d\d(?::?\d\d)?)$/i;

// What the API and `ca-a2a revoke` took before: ISO 8601 with a zone, seconds optional.
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 date-time, or an ISO 8601 one with a zone (or epoch seconds) → epoch seconds. */
export function time(value: unknown, name: string): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && ISO_8601.test(value) && dayExists(value)) {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms / 1000;
  }
  const parts = typeof value === 'string' && isDateTime(value) ? DATE_TIME_PARTS.exec(value) : null;
  if (parts) {
    const [, date, hoursMinutes, seconds, fraction = '', zone = ''] = parts;
    // Date.parse knows no leap second: 23:59:60 is the instant after 23:59:59, as in POSIX time.
    const leap = seconds === '60' ? 1000 : 0;
    const ms = Date.parse(`${date}T${hoursMinutes}:${leap ? '59' : seconds}${fraction}${isoZone(zone)}`) + leap;
    if (Number.isFinite(ms)) return ms / 1000;
  }
  throw new BadRequest(`${name} must be an RFC 3339 date-time with a time zone, e.g. 2025-01-31T12:00:00Z`);
}

// Date.parse rolls a day past the end of its month over into the next (2025-02-30 is March 2).
function dayExists(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const length = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  return day <= length;
}

function isoZone(zone: string): string {
  if (zone.toUpperCase() === 'Z') return 'Z';
  return `${zone.slice(0, 3)}:${zone.length > 3 ? zone.slice(-2) : '00'}`;
}

const MAX_REVOKED_BY = 200; // the revoker's limit (stores/revoker.ts)

/** Who made the request, from the identity headers the sidecar sets (and strips from clients). */
export function requester(headers: Record<string, string | string[] | undefined>): string {
  const one = (name: string): string | undefined => {
    const value = headers[name];
    return typeof value === 'string' && value.length > 0 ? value.slice(0, 100) : undefined;
  };
  const subject = one('x-ca-a2a-subject');
  const client = one('x-ca-a2a-client-id');
  // Two 100-character names plus " ()" would exceed what the revoker stores.
  if (subject && client && client !== subject) return `${subject} (${client})`.slice(0, MAX_REVOKED_BY);
  return subject ?? client ?? 'unknown';
}
