import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose';

/**
 * A JWKS and discovery document served by the test on port 0, with a signer, for the tests that
 * need tokens the real issuer never makes (expired, wrong aud, alg games). Counts fetches.
 * Tokens are access tokens as the dev issuer makes them (RFC 9068: header typ at+jwt); pass
 * `header: { typ: 'JWT' }` and a `typ` claim for Keycloak's shape (typ Bearer, ID, Refresh…).
 */
export interface TestIssuer {
  readonly issuer: string;
  readonly fetches: { discovery: number; jwks: number };
  sign(claims?: JWTPayload, options?: { kid?: string; header?: Record<string, unknown>; key?: CryptoKey; omit?: string[] }): Promise<string>;
  /** Adds a new current key (the old one stays published unless `dropOld`). */
  rotate(options?: { dropOld?: boolean }): Promise<void>;
  /** Make the JWKS endpoint fail (status), answer garbage or its keys padded past 1 MiB, or recover (undefined). */
  breakJwks(mode: 'down' | 'garbage' | 'huge' | undefined): void;
  /** Make the discovery document name its jwks_uri as a path, no absolute URL (`relative`), or recover (undefined). */
  breakDiscovery(mode: 'relative' | undefined): void;
  /** Hold every JWKS answer from now until the returned function is called (an issuer slow to answer). */
  holdJwks(): () => void;
  publicJwk(): JWK;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const keys: { kid: string; privateKey: CryptoKey; jwk: JWK }[] = [];
  const addKey = async (): Promise<void> => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const kid = randomUUID();
    keys.push({ kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } });
  };
  await addKey();
  const fetches = { discovery: 0, jwks: 0 };
  let broken: 'down' | 'garbage' | 'huge' | undefined;
  let brokenDiscovery: 'relative' | undefined;
  let held: Promise<void> | undefined;
  let issuer = '';
  const server: Server = createServer((req, res) => {
    if (req.url === '/realms/test/.well-known/openid-configuration') {
      fetches.discovery++;
      const jwksUri = brokenDiscovery === 'relative' ? '/realms/test/protocol/openid-connect/certs' : `${issuer}/protocol/openid-connect/certs`;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer, jwks_uri: jwksUri }));
    } else if (req.url === '/realms/test/protocol/openid-connect/certs') {
      fetches.jwks++;
      if (held !== undefined) void held.then(() => answerJwks(res));
      else answerJwks(res);
    } else {
      res.writeHead(404).end();
    }
  });
  const answerJwks = (res: ServerResponse): void => {
    if (broken === 'down') res.writeHead(503).end();
    else if (broken === 'garbage') res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys": "nope"');
    else if (broken === 'huge') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: keys.map((key) => key.jwk), padding: 'x'.repeat(1024 * 1024) }));
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: keys.map((key) => key.jwk) }));
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/realms/test`;

  return {
    issuer,
    fetches,
    async sign(claims = {}, options = {}) {
      const current = keys[keys.length - 1] as (typeof keys)[number];
      const now = Math.floor(Date.now() / 1000);
      const payload: JWTPayload = {
        iss: issuer, aud: 'ca-a2a-agents', sub: 'service-account-viewer', azp: 'viewer', jti: randomUUID(),
        iat: now, exp: now + 300, realm_access: { roles: ['viewer'] }, ...claims,
      };
      for (const name of options.omit ?? []) delete payload[name];
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: options.kid ?? current.kid, ...options.header })
        .sign(options.key ?? current.privateKey);
    },
    async rotate({ dropOld = false } = {}) {
      await addKey();
      if (dropOld) keys.splice(0, keys.length - 1);
    },
    breakJwks(mode) {
      broken = mode;
    },
    breakDiscovery(mode) {
      brokenDiscovery = mode;
    },
    holdJwks() {
      let release = (): void => undefined;
      held = new Promise((resolve) => {
        release = () => {
          held = undefined;
          resolve();
        };
      });
      return release;
    },
    publicJwk: () => (keys[keys.length - 1] as (typeof keys)[number]).jwk,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
