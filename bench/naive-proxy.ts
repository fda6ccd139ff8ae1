import { createServer } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { Pool } from 'undici';

/**
 * What a developer writes in an afternoon: jose jwtVerify on every request (remote JWKS cached by
 * jose), a role check, then forward. No parsing, no schema, no rate limit, no cache of results.
 */
const [port, upstream, issuer] = [Number(process.argv[2]), process.argv[3] as string, process.argv[4] as string];
const jwks = createRemoteJWKSet(new URL(`${issuer}/protocol/openid-connect/certs`));
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 30_000 });
createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const { payload } = await jwtVerify(token, jwks, { issuer, audience: 'ca-a2a-agents', algorithms: ['RS256'] });
    const roles = (payload.realm_access as { roles?: string[] } | undefined)?.roles ?? [];
    if (!roles.includes('viewer')) {
      res.writeHead(403).end();
      return;
    }
  } catch {
    res.writeHead(401).end();
    return;
  }
  try {
    const response = await pool.request({ method: 'POST', path: req.url ?? '/', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
    res.writeHead(response.statusCode, { 'content-type': 'application/json' });
    await pipeline(response.body, res);
  } catch {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  }
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
