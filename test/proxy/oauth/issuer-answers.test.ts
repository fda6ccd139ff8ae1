import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTokenSource } from '../../../proxy/oauth/client-credentials.js';
import type { TokenSourceError } from '../../../proxy/oauth/token-source-error.js';

interface FakeIssuer {
  readonly issuer: string;
  readonly tokenRequests: () => number;
  close(): Promise<void>;
}

/** An issuer whose token endpoint gives every request `answer`; discovery works. */
async function fakeIssuer(answer: { status: number; headers: Record<string, string>; body: string }): Promise<FakeIssuer> {
  let tokenRequests = 0;
  const server: Server = createServer((req, res) => {
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === '/realms/x/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ issuer: `${origin}/realms/x`, token_endpoint: `${origin}/realms/x/token` }));
      return;
    }
    tokenRequests += 1;
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    issuer: `http://127.0.0.1:${(server.address() as AddressInfo).port}/realms/x`,
    tokenRequests: () => tokenRequests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function rejection(promise: Promise<unknown>): Promise<TokenSourceError> {
  return promise.then(() => assert.fail('expected a rejection'), (error: unknown) => error as TokenSourceError);
}

describe('token source against a throttling issuer (429 with Retry-After)', () => {
  let page: FakeIssuer;
  let oauthError: FakeIssuer;
  before(async () => {
    // A gateway's page in front of the issuer, and the issuer's own OAuth error body.
    page = await fakeIssuer({ status: 429, headers: { 'content-type': 'text/html', 'retry-after': '30' }, body: '<html>slow down</html>' });
    const later = new Date(Date.now() + 30_000).toUTCString();
    oauthError = await fakeIssuer({ status: 429, headers: { 'content-type': 'application/json', 'retry-after': later }, body: '{"error":"slow_down"}' });
  });
  after(async () => {
    await Promise.all([page.close(), oauthError.close()]);
  });

  for (const [name, issuer] of [['an HTML page, Retry-After in seconds', () => page], ['an OAuth error body, Retry-After as a date', () => oauthError]] as const) {
    it(`is ISSUER_UNREACHABLE naming HTTP 429, and not asked again before its Retry-After: ${name}`, async () => {
      const source = createTokenSource({ issuer: issuer().issuer, clientId: 'a', clientSecret: 's', retryAfterFailureMs: 20 });
      const first = await rejection(source.getToken());
      assert.equal(first.code, 'ISSUER_UNREACHABLE');
      assert.match(first.message, /HTTP 429/);
      // Well past retryAfterFailureMs, well within the 30 s the issuer asked for.
      await sleep(200);
      const second = await rejection(source.getToken());
      assert.equal(second, first, 'the same error, without asking');
      assert.equal(issuer().tokenRequests(), 1);
    });
  }
});

describe('token source against an issuer answering more than it should', () => {
  let huge: FakeIssuer;
  let spaced: FakeIssuer;
  const tokenAnswer = (accessToken: string) => ({
    status: 200,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: JSON.stringify({ access_token: accessToken, token_type: 'Bearer', expires_in: 300 }),
  });
  before(async () => {
    // Well-formed, and 2 MiB: the token would be read whole, cached and sent with every call.
    huge = await fakeIssuer(tokenAnswer('a'.repeat(2 * 1024 * 1024)));
    spaced = await fakeIssuer(tokenAnswer('eyJh bGci\r\nOiJ'));
  });
  after(async () => {
    await Promise.all([huge.close(), spaced.close()]);
  });

  it('refuses an access_token that cannot go in an Authorization header as ISSUER_INVALID (RFC 6750 §2.1)', async () => {
    const source = createTokenSource({ issuer: spaced.issuer, clientId: 'a', clientSecret: 's' });
    const error = await rejection(source.getToken());
    assert.equal(error.code, 'ISSUER_INVALID');
    assert.match(error.message, /not a b64token/);
    assert.doesNotMatch(error.message, /eyJh/, 'the token is not repeated');
  });

  it('refuses a token response over 1 MiB as ISSUER_INVALID, without reading it whole', async () => {
    const source = createTokenSource({ issuer: huge.issuer, clientId: 'a', clientSecret: 's' });
    const error = await rejection(source.getToken());
    assert.equal(error.code, 'ISSUER_INVALID');
    assert.match(error.message, /^token request at http:\/\/127\.0\.0\.1:\d+\/realms\/x: answer larger than 1048576 bytes$/);
  });
});
