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
