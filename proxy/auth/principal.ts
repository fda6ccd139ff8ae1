import type { JWTPayload } from 'jose';
import type { Principal } from '../context.js';

/** Builds the frozen Principal from a verified payload; roles read at the configured claim path. */
export function principalFrom(payload: JWTPayload, rolesClaim: readonly string[]): Principal {
  let node: unknown = payload;
  for (const part of rolesClaim) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
  const roles = Array.isArray(node) ? node.filter((role): role is string => typeof role === 'string') : [];
  const cnf = payload.cnf as { jkt?: unknown } | undefined;
  return Object.freeze({
    subject: payload.sub as string,
    clientId: typeof payload.azp === 'string' ? payload.azp : typeof payload.client_id === 'string' ? payload.client_id : '',
    roles: Object.freeze([...new Set(roles)]),
    jti: payload.jti as string,
    issuedAt: payload.iat as number,
    expiresAt: payload.exp as number,
    boundKeyThumbprint: typeof cnf?.jkt === 'string' ? cnf.jkt : undefined,
  });
}

// A field value as RFC 9110 §5.5 has it, in the one form every HTTP stack reads back the same: no
// control character but HTAB, no character past U+00FF (Node sends U+0080..U+00FF as one byte
// each, obs-text; past it, nothing can carry it), no blank at either end (parsers strip it as OWS).
const HEADER_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;

/**
 * Why the principal cannot be passed on to the agent as x-ca-a2a-subject, x-ca-a2a-client-id and
 * x-ca-a2a-roles exactly as verified, or undefined when it can. A value a header cannot carry
 * would fail every call of that caller at the agent's door (undici refuses it: a 502 blamed on the
 * agent); one with a blank at an end would reach the agent trimmed, as another identity (' admin'
 * as 'admin'); a role holding a comma would read as two roles in the comma-separated list.
 */
export function unforwardable(principal: Principal, rolesClaim: readonly string[]): string | undefined {
  if (!HEADER_VALUE.test(principal.subject)) return "'sub' claim: a character or a blank at its ends that a header cannot carry";
  if (!HEADER_VALUE.test(principal.clientId)) return "'azp' claim: a character or a blank at its ends that a header cannot carry";
  for (const role of principal.roles) {
    if (role === '' || role.includes(',') || !HEADER_VALUE.test(role)) return `'${rolesClaim.join('.')}' claim: a role that is empty, holds a comma, or a character or a blank at its ends that a header cannot carry`;
  }
  return undefined;
}
