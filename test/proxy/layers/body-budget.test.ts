import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { loadPolicy } from '../../../proxy/policy/load.js';
import { loadProblems } from '../../helpers/policy-problems.js';
import { rawJson, rawRequest } from '../../helpers/raw-http.js';

// A body of 800 bytes: one fits the 1 500-byte budget, two do not.
const body = (): string => {
  const bare = JSON.stringify(rpc('get_document', { document_id: DOC_ID, pad: '' }));
  return JSON.stringify(rpc('get_document', { document_id: DOC_ID, pad: 'x'.repeat(800 - bare.length) }));
};

/** A one-method policy with these limits (YAML flow mapping). */
const policy = (limits: string): string =>
  writePolicy(`service: budget-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
limits: ${limits}
methods:
  get_document: {}
`);

describe('limits.max_buffered_body_bytes: the request bodies the sidecar holds at once', () => {
  let h: Harness;
  let token: string;
  let release: () => void = () => undefined;
  before(async () => {
    h = await startHarness({ policyFile: policy('{ max_body_bytes: 1024, max_buffered_body_bytes: 1500 }') });
    token = await h.issuer.sign();
    // Holds the first request's answer, and with it its body, until release().
    h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: {} }, after: new Promise<void>((resolve) => (release = resolve)) }));
  });
  after(() => h.close());

  it('refuses a body that would go past it with 503, -32019 and Retry-After, never forwarded; takes it again once the held request ends', async () => {
    assert.equal(body().length, 800);
    const held = h.call(body(), { token });
    while (h.upstream.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(await h.metric('ca_a2a_buffered_body_bytes'), 800);
    assert.equal(await h.metric('ca_a2a_buffered_body_bytes_limit'), 1500);

    const audited = h.audit.events('transport_rejected').length;
    const refused = await h.call(body(), { token });
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error?.code, -32019);
    assert.equal(refused.json.error?.data?.reason, 'transport.overloaded');
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.headers.connection, 'close');
    assert.equal(h.upstream.requests.length, 1, 'the refused request was not forwarded');
    const lines = h.audit.events('transport_rejected').slice(audited);
    assert.deepEqual(lines.map((line) => line.code), ['transport.overloaded']);
    assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'transport.overloaded', status: '503' }), 1);

    // Without a Content-Length: refused at the chunk that would go past the budget.
    const chunk = body();
    const chunked = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`);
    assert.match(chunked.text, /^HTTP\/1\.1 503/);
    assert.equal(rawJson(chunked.text).error?.code, -32019);

    // Expect: 100-continue: refused before the client is invited to send its body.
    const expecting = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: 800\r\nExpect: 100-continue\r\n\r\n`);
    assert.match(expecting.text, /^HTTP\/1\.1 503/);
    assert.doesNotMatch(expecting.text, /100 Continue/);
    assert.equal(h.upstream.requests.length, 1);
    // What the refusals had read was given back at once: only the held request's body is counted.
    assert.equal(await h.metric('ca_a2a_buffered_body_bytes'), 800);

    release();
    assert.equal((await held).status, 200);
    assert.equal(await h.metric('ca_a2a_buffered_body_bytes'), 0);
    h.upstream.respond(undefined);
    assert.equal((await h.call(body(), { token })).status, 200, 'the budget is free again');
    assert.equal(await h.metric('ca_a2a_buffered_body_bytes'), 0);
  });

  // The body is read once the caller is authenticated and not revoked: before, clients with no
  // token each holding a body short of its end kept every verified call out with 503s.
  it('holds no body of a caller without a valid token: refused from its head, never invited to send it', async () => {
    const chunk = 'x'.repeat(700);
    const unfinished = (authorization: string): string =>
      `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n${authorization}Transfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    const audited = h.audit.events('authentication_failure').length;
    const anonymous = await Promise.all([
      rawRequest(h.sidecar.url, unfinished('')),
      rawRequest(h.sidecar.url, unfinished('Authorization: Bearer not.a-token.at-all\r\n')),
    ]);
    for (const { text, closed } of anonymous) {
      assert.match(text, /^HTTP\/1\.1 401 /);
      assert.equal(rawJson(text).error?.code, -32010);
      assert.ok(closed, 'the connection closes: its body is never read');
    }
    assert.deepEqual(h.audit.events('authentication_failure').slice(audited).map((line) => line.code).sort(), ['authn.token_malformed', 'authn.token_missing']);
    assert.equal(await h.metric('ca_a2a_buffered_body_bytes'), 0);

    // Waiting for 100 Continue with no token: a 401, and no invitation to send the body.
    const expecting = await rawRequest(h.sidecar.url, 'POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 800\r\nExpect: 100-continue\r\n\r\n');
    assert.match(expecting.text, /^HTTP\/1\.1 401 /);
    assert.doesNotMatch(expecting.text, /100 Continue/);

    // A verified caller waiting for it is invited, and served.
    const invited = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: 800\r\nExpect: 100-continue\r\n\r\n`, 500);
    assert.match(invited.text, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    const count = h.upstream.requests.length;
    assert.equal((await h.call(body(), { token })).status, 200);
    assert.equal(h.upstream.requests.length, count + 1);
  });

  it('refuses, at load, a budget smaller than one request of the largest size allowed; unset, it is 64 MiB or max_body_bytes when larger', () => {
    assert.equal(loadPolicy(policy('{}')).limits.maxBufferedBodyBytes, 64 * 1024 * 1024);
    // A policy written before the budget existed, with bodies over 64 MiB, still loads.
    assert.equal(loadPolicy(policy('{ max_body_bytes: 104857600 }')).limits.maxBufferedBodyBytes, 104857600);
    assert.deepEqual(loadProblems(policy('{ max_body_bytes: 2048, max_buffered_body_bytes: 2047 }')), ['/limits/max_buffered_body_bytes: max_buffered_body_bytes (2047) must not be below max_body_bytes (2048): a request of the largest size allowed must fit']);
  });
});
