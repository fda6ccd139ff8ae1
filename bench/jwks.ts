import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

/** A Keycloak-shaped issuer for the benchmark: discovery, JWKS, and a signer for tokens. */
export async function startBenchIssuer(): Promise<{ issuer: string; publicKeyPem: string; sign(claims?: JWTPayload): Promise<string>; close(): void }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const kid = randomUUID();
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  let issuer = '';
  const server: Server = createServer((req, res) => {
    if (req.url?.endsWith('/.well-known/openid-configuration')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer, jwks_uri: `${issuer}/protocol/openid-connect/certs` }));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/realms/bench`;
  return {
    issuer,
    publicKeyPem: await exportSPKI(publicKey),
    sign: (claims = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, aud: 'ca-a2a-agents', sub: 'bench', azp: 'viewer', jti: randomUUID(), iat: now, exp: now + 3600, realm_access: { roles: ['viewer'] }, ...claims })
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid })
        .sign(privateKey);
    },
    close: () => server.close(),
  };
}
