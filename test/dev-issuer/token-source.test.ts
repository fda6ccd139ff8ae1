import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, exportJWK, jwtVerify } from 'jose';
import { loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../deploy/dev-issuer/issuer.js';
import { createTokenSource } from '../../proxy/oauth/client-credentials.js';
import { countTokenRequests, sleep, tempDir } from './helpers.js';

/** Resolves to the `code` a promise rejects with (the stable contract), or fails the test. */
async function rejectionCode(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return assert.fail('expected a rejection');
}

describe('client_credentials token source', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let issuer: DevIssuer;
  let shortIssuer: DevIssuer;
  let secrets: Record<string, string>;
  let hits: ReturnType<typeof countTokenRequests>;
  let shortHits: ReturnType<typeof countTokenRequests>;

  before(async () => {
    dir = await tempDir('token-source');
    issuer = await startIssuer({ port: 0, dataDir: dir.path });
    // Same data dir, so same secrets and key; a 2 s TTL lets refresh happen in real time.
    shortIssuer = await startIssuer({ port: 0, dataDir: dir.path, accessTokenTtlSeconds: 2 });
    secrets = await loadClientSecrets(dir.path);
    hits = countTokenRequests(issuer.port);
    shortHits = countTokenRequests(shortIssuer.port);
  });
  after(async () => {
    hits.stop();
    shortHits.stop();
    await Promise.all([issuer.close(), shortIssuer.close()]);
    await dir.remove();
  });

  const source = (clientId: string, target: DevIssuer, extra: { dpopKey?: webcrypto.CryptoKeyPair; refreshSkewSeconds?: number } = {}) =>
    createTokenSource({ issuer: target.issuer, clientId, clientSecret: secrets[clientId] ?? '', ...extra });

  it('returns a verifiable Bearer token and serves it from cache until refresh time', async () => {
    const tokens = source('orchestrator', issuer);
    const before = hits.count;
    const first = await tokens.getToken();
    const second = await tokens.getToken();
    assert.equal(hits.count - before, 1);
    assert.equal(second.accessToken, first.accessToken);
    assert.equal(first.tokenType, 'Bearer');
    const { payload } = await jwtVerify(first.accessToken, createRemoteJWKSet(new URL(`${issuer.issuer}/protocol/openid-connect/certs`)), {
      issuer: issuer.issuer,
      audience: 'ca-a2a-agents',
      algorithms: ['RS256'],
    });
    assert.equal(payload.azp, 'orchestrator');
    assert.ok(Math.abs(first.expiresAt - (payload.exp ?? 0) * 1000) < 2000, 'expiresAt is in epoch milliseconds');
  });

  it('shares one token request between concurrent callers', async () => {
    const tokens = source('viewer', issuer);
    const before = hits.count;
    const results = await Promise.all(Array.from({ length: 20 }, () => tokens.getToken()));
    assert.equal(hits.count - before, 1);
    assert.equal(new Set(results.map((r) => r.accessToken)).size, 1);
  });

  it('invalidate(token) forgets that token only: the next call fetches anew, a newer token stays cached', async () => {
    const tokens = source('extractor', issuer);
    const first = await tokens.getToken();
    tokens.invalidate(first);
    const before = hits.count;
    const second = await tokens.getToken();
    assert.equal(hits.count - before, 1);
    assert.notEqual(second.accessToken, first.accessToken);
    tokens.invalidate(first);
    assert.equal((await tokens.getToken()).accessToken, second.accessToken);
    assert.equal(hits.count - before, 1);
  });

  it('fetches a new token once the refresh time is reached, and keeps the cached one if the issuer is gone', async () => {
    const tokens = source('archivist', shortIssuer, { refreshSkewSeconds: 1 });
    const before = shortHits.count;
    const first = await tokens.getToken();
    assert.equal((await tokens.getToken()).accessToken, first.accessToken);
    assert.equal(shortHits.count - before, 1);

    await sleep(first.expiresAt - 1000 - Date.now() + 50);
    // Past the refresh time with more than half the margin left: handed out at once, the refresh
    // running behind it, so a slow issuer holds up no call.
    assert.equal((await tokens.getToken()).accessToken, first.accessToken);
    let refreshed = first;
    for (let i = 0; i < 100 && refreshed.accessToken === first.accessToken; i++) {
      await sleep(10);
      refreshed = await tokens.getToken();
    }
    assert.equal(shortHits.count - before, 2);
    assert.notEqual(decodeJwt(refreshed.accessToken).jti, decodeJwt(first.accessToken).jti);
    assert.ok(refreshed.expiresAt > first.expiresAt);

    await shortIssuer.close();
    await sleep(refreshed.expiresAt - 1000 - Date.now() + 50);
    const stale = await tokens.getToken();
    assert.equal(stale.accessToken, refreshed.accessToken, 'a still-valid token outlives a failed refresh');
    await sleep(refreshed.expiresAt - Date.now() + 50);
    assert.equal(await rejectionCode(tokens.getToken()), 'ISSUER_UNREACHABLE');
  });

  // Concurrent callers shared one request, but each caller after a failure sent another at once:
  // an issuer refusing or failing fast (a wrong secret, a 503 under load) was asked as often as
  // the agents called, the whole time it failed.
  it('after a failed request, rejects at once with the same error for retryAfterFailureMs instead of asking the issuer again', async () => {
    const wrongSecret = createTokenSource({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: 'wrong-secret', retryAfterFailureMs: 60_000 });
    const before = hits.count;
    for (let i = 0; i < 5; i++) assert.equal(await rejectionCode(wrongSecret.getToken()), 'INVALID_CLIENT');
    assert.equal(hits.count - before, 1, 'the issuer was asked once');
  });

  it('requests a DPoP-bound token whose cnf.jkt is the RFC 7638 thumbprint of the key', async () => {
    const dpopKey = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
    const token = await source('extractor', issuer, { dpopKey }).getToken();
    assert.equal(token.tokenType, 'DPoP');
    const expected = await calculateJwkThumbprint(await exportJWK(dpopKey.publicKey));
    assert.deepEqual(decodeJwt(token.accessToken)['cnf'], { jkt: expected });
  });

  it('fails with stable codes: INVALID_CLIENT, ISSUER_UNREACHABLE, ISSUER_INVALID, INVALID_OPTIONS', async () => {
    const wrongSecret = createTokenSource({ issuer: issuer.issuer, clientId: 'viewer', clientSecret: 'wrong-secret' });
    assert.equal(await rejectionCode(wrongSecret.getToken()), 'INVALID_CLIENT');

    const gone = await startIssuer({ port: 0, dataDir: dir.path });
    await gone.close();
    const closedPort = createTokenSource({ issuer: gone.issuer, clientId: 'viewer', clientSecret: 'x', fetchTimeoutMs: 1000 });
    assert.equal(await rejectionCode(closedPort.getToken()), 'ISSUER_UNREACHABLE');

    // fetch refuses some ports itself (the Fetch standard's bad ports), with a cause but no code.
    const badPort = createTokenSource({ issuer: 'http://127.0.0.1:1/realms/ca-a2a', clientId: 'viewer', clientSecret: 'x' });
    await assert.rejects(badPort.getToken(), { code: 'ISSUER_UNREACHABLE', message: /failed: fetch failed: bad port$/ });

    // Discovery answers for 127.0.0.1, so asking for "localhost" is an issuer mismatch (OIDC Discovery §4.3).
    const mismatch = createTokenSource({ issuer: issuer.issuer.replace('127.0.0.1', 'localhost'), clientId: 'viewer', clientSecret: 'x' });
    assert.equal(await rejectionCode(mismatch.getToken()), 'ISSUER_INVALID');

    assert.throws(() => createTokenSource({ issuer: 'http://issuer.example/realms/ca-a2a', clientId: 'viewer', clientSecret: 'x' }), {
      code: 'INVALID_OPTIONS',
    });
  });
});
