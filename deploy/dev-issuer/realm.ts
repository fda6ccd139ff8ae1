/**
 * The realm's fixed facts, shared by the dev issuer, the `token` command and the test that checks
 * `deploy/keycloak/realm-ca-a2a.json` says the same.
 */

/** Keycloak realm name; the issuer URL ends in `/realms/<name>`. */
export const REALM_NAME = 'ca-a2a';

/** Path of the realm under the issuer's origin, as Keycloak lays it out. */
export const REALM_PATH = `/realms/${REALM_NAME}`;

/** The `aud` every access token carries (the sidecars require it). */
export const AUDIENCE = 'ca-a2a-agents';

/** Access-token lifetime from the seed (5 minutes). */
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300;

/** Where `ca-a2a issuer` listens and `ca-a2a token` looks by default. */
export const DEFAULT_LISTEN = { host: '127.0.0.1', port: 8080 } as const;

/** Default issuer URL for clients (`CA_A2A_ISSUER` overrides it). */
export const DEFAULT_ISSUER_URL = `http://${DEFAULT_LISTEN.host}:${DEFAULT_LISTEN.port}${REALM_PATH}`;

/** Keycloak's endpoint paths relative to the realm, so clients configured for one work with the other. */
export const KEYCLOAK_ROUTES = {
  jwks: '/protocol/openid-connect/certs',
  token: '/protocol/openid-connect/token',
  authorization: '/protocol/openid-connect/auth',
  userinfo: '/protocol/openid-connect/userinfo',
  end_session: '/protocol/openid-connect/logout',
  introspection: '/protocol/openid-connect/token/introspect',
  revocation: '/protocol/openid-connect/revoke',
} as const;

/**
 * The `sub` of a client's tokens. Keycloak names a client's service-account user
 * `service-account-<client>` (its `preferred_username`); the dev issuer uses that name as `sub` so
 * that logs, rate-limit keys and `ca-a2a revoke subject` read well. Real Keycloak puts the user's
 * UUID in `sub` instead; nothing in ca-a2a depends on the format.
 */
export function serviceAccountSubject(clientId: string): string {
  return `service-account-${clientId}`;
}
