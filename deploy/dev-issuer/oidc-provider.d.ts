// oidc-provider ships no types and @types/oidc-provider is not installed: this declares only the
// surface the dev issuer uses, so the rest of the file stays strictly typed.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface ProviderClientMetadata {
    client_id: string;
    client_secret: string;
    grant_types: string[];
    response_types: string[];
    redirect_uris: string[];
    token_endpoint_auth_method: 'client_secret_basic' | 'client_secret_post';
  }

  export interface ResourceServerInfo {
    scope: string;
    audience?: string;
    accessTokenTTL?: number;
    accessTokenFormat?: 'opaque' | 'jwt';
    jwt?: { sign?: { alg?: string; kid?: string } };
  }

  /** The subset of oidc-provider's token model read by `extraTokenClaims` and customizers. */
  export interface IssuedToken {
    readonly kind: string;
    readonly clientId?: string;
    readonly accountId?: string;
  }

  export interface StructuredJwt {
    header: Record<string, unknown> | undefined;
    payload: Record<string, unknown>;
  }

  /** Koa context, opaque to us. */
  export type KoaContextWithOIDC = object;

  export interface FeatureToggle {
    enabled: boolean;
  }

  export interface Configuration {
    clients: ProviderClientMetadata[];
    jwks: { keys: object[] };
    cookies: { keys: string[] };
    routes: Record<string, string>;
    clientAuthMethods: string[];
    responseTypes: string[];
    scopes: string[];
    claims: Record<string, string[]>;
    ttl: Record<string, number>;
    enabledJWA: { dPoPSigningAlgValues: string[] };
    features: {
      devInteractions: FeatureToggle;
      clientCredentials: FeatureToggle;
      introspection: FeatureToggle;
      revocation: FeatureToggle;
      userinfo: FeatureToggle;
      registration: FeatureToggle;
      pushedAuthorizationRequests: FeatureToggle;
      rpInitiatedLogout: FeatureToggle;
      dPoP: FeatureToggle & { allowReplay?: boolean };
      resourceIndicators: FeatureToggle & {
        defaultResource: (ctx: KoaContextWithOIDC) => Promise<string> | string;
        getResourceServerInfo: (ctx: KoaContextWithOIDC, resourceIndicator: string) => Promise<ResourceServerInfo>;
      };
    };
    extraTokenClaims: (ctx: KoaContextWithOIDC, token: IssuedToken) => Promise<Record<string, unknown> | undefined>;
    formats: { customizers: { jwt: (ctx: KoaContextWithOIDC, token: IssuedToken, jwt: StructuredJwt) => Promise<void> } };
    /** A factory (not a class) so each provider gets its own storage. */
    adapter: (modelName: string) => object;
  }

  export class Provider {
    constructor(issuer: string, configuration: Partial<Configuration>);
    readonly issuer: string;
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  export const errors: {
    InvalidTarget: new (description?: string) => Error;
  };
}
