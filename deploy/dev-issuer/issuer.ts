import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Provider } from 'oidc-provider';
import { ensureClientSecrets } from './clients.js';
import { buildProviderConfig } from './provider-config.js';
import { DEFAULT_ACCESS_TOKEN_TTL_SECONDS, DEFAULT_LISTEN, KEYCLOAK_ROUTES, REALM_PATH } from './realm.js';
import { ensureSigningKey } from './signing-key.js';

/** A running development issuer. */
export interface DevIssuer {
  /** The issuer identifier, e.g. `http://127.0.0.1:8080/realms/ca-a2a` (the real port when 0 was asked). */
  readonly issuer: string;
  /** The bound TCP port. */
  readonly port: number;
  /** Stops accepting connections, closes idle and active keep-alive sockets, and resolves once closed. */
  close(): Promise<void>;
}

/** Options of {@link startIssuer}. */
export interface StartIssuerOptions {
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** TCP port; default 8080; 0 picks a free port. */
  port?: number;
  /** Holds the client secrets and the signing key; created 0700 if missing. */
  dataDir: string;
  /** Access-token lifetime; default 300 (tests shorten it). */
  accessTokenTtlSeconds?: number;
}

/**
 * Starts the Keycloak-shaped development OIDC issuer (realm `ca-a2a`, client_credentials only,
 * RS256 JWT access tokens, DPoP). Client secrets and the signing key are generated on first start
 * into `dataDir` and reused afterwards.
 */
export async function startIssuer(opts: StartIssuerOptions): Promise<DevIssuer> {
  const ttl = opts.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error(`accessTokenTtlSeconds must be a positive integer, got ${ttl}`);
  // Both settled before a failure is reported: the other one still writing its file after the
  // start has failed would race whoever cleans the directory up next.
  const [secretsResult, keyResult] = await Promise.allSettled([ensureClientSecrets(opts.dataDir), ensureSigningKey(opts.dataDir)]);
  if (secretsResult.status === 'rejected') throw secretsResult.reason;
  if (keyResult.status === 'rejected') throw keyResult.reason;
  const [secrets, signingKey] = [secretsResult.value, keyResult.value];

  // The issuer URL must carry the real port, so bind first and attach the provider afterwards.
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handle === undefined) {
      res.writeHead(503).end();
      return;
    }
    handle(req, res);
  });
  const host = opts.host ?? DEFAULT_LISTEN.host;
  const port = await listen(server, host, opts.port ?? DEFAULT_LISTEN.port);
  const issuer = `http://${formatHost(host)}:${port}${REALM_PATH}`;

  try {
    const provider = new Provider(issuer, buildProviderConfig({ secrets, signingKey, accessTokenTtlSeconds: ttl }));
    provider.on('server_error', (_ctx: unknown, err: unknown) => logServerError(err));
    handle = mountAt(REALM_PATH, provider.callback());
  } catch (err) {
    await closeServer(server);
    throw err;
  }
  let closing: Promise<void> | undefined;
  return { issuer, port, close: () => (closing ??= closeServer(server)) };
}

/**
 * The realm paths served. oidc-provider always mounts its authorization and logout endpoints too:
 * unreachable here, so that the issuer has no page and sets no session cookie, as documented.
 */
const SERVED_PATHS: ReadonlySet<string> = new Set(['/.well-known/openid-configuration', KEYCLOAK_ROUTES.jwks, KEYCLOAK_ROUTES.token]);

/**
 * Serves `app` under `prefix` the way express mounts do: oidc-provider derives its endpoint URLs
 * from the difference between `originalUrl` and `url`. Anything outside {@link SERVED_PATHS} is 404.
 */
function mountAt(prefix: string, app: (req: IncomingMessage, res: ServerResponse) => void) {
  return (req: IncomingMessage & { originalUrl?: string }, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const rest = url.slice(prefix.length);
    if (!url.startsWith(prefix) || !SERVED_PATHS.has(rest.split('?', 1)[0] ?? '')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      return;
    }
    req.originalUrl = url;
    req.url = rest;
    app(req, res);
  };
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    // server.close() waits for keep-alive sockets to time out; a clean shutdown must not.
    server.closeAllConnections();
  });
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** oidc-provider answers 500 with a generic body; the detail goes to stderr only. */
function logServerError(err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${JSON.stringify({ level: 'error', component: 'dev-issuer', msg: 'server_error', err: message })}\n`);
}
