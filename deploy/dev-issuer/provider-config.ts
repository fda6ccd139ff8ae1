import { randomBytes } from 'node:crypto';
import { errors, type Configuration, type ProviderClientMetadata } from 'oidc-provider';
import { DEV_CLIENTS, isDevClient } from './clients.js';
import { createMemoryAdapterFactory } from './memory-adapter.js';
import { AUDIENCE, KEYCLOAK_ROUTES, serviceAccountSubject } from './realm.js';
import type { SigningJwk } from './signing-key.js';

/**
 * The resource indicator (RFC 8707) every token is issued for. oidc-provider requires resource
 * indicators to be absolute URIs, while the audience the sidecars check is the bare Keycloak-style
 * `ca-a2a-agents`; the resource server info maps one to the other.
 */
const AGENTS_RESOURCE = 'urn:ca-a2a:agents';

/** Inputs that vary per issuer instance. */
export interface ProviderConfigInput {
  readonly secrets: Readonly<Record<string, string>>;
  readonly signingKey: SigningJwk;
  readonly accessTokenTtlSeconds: number;
}

/** Builds oidc-provider's configuration: client_credentials only, JWT access tokens, DPoP. */
export function buildProviderConfig(input: ProviderConfigInput): Partial<Configuration> {
  return {
    clients: Object.keys(DEV_CLIENTS).map((clientId) => clientMetadata(clientId, input.secrets)),
    jwks: { keys: [input.signingKey] },
    adapter: createMemoryAdapterFactory(),
    // No cookie is ever set without interactive flows, but oidc-provider insists on keys.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    routes: { ...KEYCLOAK_ROUTES },
    // Keycloak's confidential clients accept both; oidc-provider treats them as one family.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    // No authorization endpoint flows: only client_credentials is meant to be used.
    responseTypes: ['none'],
    scopes: ['openid'],
    claims: { openid: ['sub'] },
    ttl: { ClientCredentials: input.accessTokenTtlSeconds },
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      userinfo: { enabled: false },
      registration: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      // RFC 9449: a token request carrying a DPoP proof gets a token bound to the proof's key.
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Clients written for Keycloak send no `resource`; every token is for the agents.
        defaultResource: () => AGENTS_RESOURCE,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (resourceIndicator !== AGENTS_RESOURCE) throw new errors.InvalidTarget('unknown resource indicator');
          return {
            scope: '',
            audience: AUDIENCE,
            accessTokenTTL: input.accessTokenTtlSeconds,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const clientId = token.clientId;
      if (clientId === undefined || !isDevClient(clientId)) return undefined;
      // Keycloak's shape: roles under realm_access, the client in azp.
      return {
        azp: clientId,
        preferred_username: serviceAccountSubject(clientId),
        realm_access: { roles: [...DEV_CLIENTS[clientId]] },
      };
    },
    formats: {
      customizers: {
        // oidc-provider sets sub = client_id for client_credentials; use the service-account name.
        jwt: async (_ctx, token, jwt) => {
          if (token.clientId !== undefined) jwt.payload['sub'] = serviceAccountSubject(token.clientId);
        },
      },
    },
  };
}

function clientMetadata(clientId: string, secrets: Readonly<Record<string, string>>): ProviderClientMetadata {
  const secret = secrets[clientId];
  if (secret === undefined) throw new Error(`no secret for client '${clientId}'`);
  return {
    client_id: clientId,
    client_secret: secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}
