import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sharedFields } from '../../helpers/audit-capture.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { rawJson, rawRequest, rawRequestId, sendAndReset } from '../../helpers/raw-http.js';
import { startTestIssuer } from '../../helpers/test-issuer.js';
import { uncaughtDuring } from '../../helpers/uncaught.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('transport layer', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    const policy = writePolicy(`service: transport-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
public_routes: [GET /health, GET /card]
limits: { max_body_bytes: 1024, headers_timeout_ms: 300, request_timeout_ms: 1000 }
methods:
  get_document: {}
`);
    h = await startHarness({ policyFile: policy });
    token = await h.issuer.sign();
  });
  after(() => h.close());

  const call = () => rpc('get_document', { document_id: DOC_ID });

  it('forwards a well-formed request', async () => {
    assert.equal((await h.call(call(), { token })).status, 200);
  });

  it('refuses a body over the limit with 413 and -32012, never forwarded', async () => {
    const count = h.upstream.requests.length;
    const res = await h.call({ ...call(), pad: 'x'.repeat(2000) }, { token });
    assert.equal(res.status, 413);
    assert.equal(res.json.error?.code, -32012);
    assert.equal(h.upstream.requests.length, count);
    assert.ok((await h.metric('ca_a2a_denials_total', { reason: 'transport.body_too_large' })) >= 1);
  });

  it('refuses an oversized chunked body without a Content-Length', async () => {
    const chunk = 'x'.repeat(1500);
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 413/);
    assert.equal(rawJson(text).error?.code, -32012);
  });

  it('refuses a wrong content type with 415', async () => {
    const res = await h.call(JSON.stringify(call()), { token, headers: { 'content-type': 'text/plain' } });
    assert.equal(res.status, 415);
    assert.equal(res.json.error?.data?.reason, 'transport.unsupported_media_type');
  });

  // The sidecar parses, authorises and digests the bytes as they came; it forwarded the
  // client's Content-Encoding, and a second Content-Type joined to the first, so an upstream that
  // decodes bodies (Express's body-parser inflates gzip, deflate and br) or reads the last type's
  // charset would act on a request other than the one checked.
  it('refuses a body with a Content-Encoding, or with two Content-Type headers, with 415, never forwarded', async () => {
    const cases: Record<string, string | string[]>[] = [{ 'content-encoding': 'br' }, { 'content-encoding': 'identity' }, { 'content-type': ['application/json', 'text/plain; charset=utf-16le'] }];
    for (const headers of cases) {
      const count = h.upstream.requests.length;
      const res = await h.call(call(), { token, headers });
      assert.equal(res.status, 415, JSON.stringify(headers));
      assert.equal(res.json.error?.data?.reason, 'transport.unsupported_media_type');
      assert.equal(h.upstream.requests.length, count, 'never forwarded');
    }
  });

  it('accepts application/json with a utf-8 charset', async () => {
    assert.equal((await h.call(call(), { token, headers: { 'content-type': 'application/json; charset=utf-8' } })).status, 200);
  });

  it('refuses Content-Length with Transfer-Encoding with 400 and a JSON-RPC body', async () => {
    const count = h.upstream.requests.length;
    const { text, closed } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 400/);
    assert.equal(rawJson(text).error?.code, -32600);
    assert.equal(rawJson(text).error?.data?.reason, 'transport.bad_framing');
    assert.ok(closed);
    assert.equal(h.upstream.requests.length, count);
  });

  it('refuses two Content-Length headers with 400, logging where the request came from', async () => {
    const lines = h.audit.events('transport_rejected').length;
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`);
    assert.match(text, /^HTTP\/1\.1 400/);
    assert.equal(rawJson(text).error?.data?.reason, 'transport.bad_framing');
    // Node's parser refused it before any request existed: the connection's address and the policy in force.
    const logged = h.audit.events('transport_rejected').slice(lines);
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.source_ip, '127.0.0.1');
    assert.equal(logged[0]?.policy_version, h.sidecar.policy().version);
    assert.match(String(logged[0]?.request_id), UUID);
    assert.equal(rawRequestId(text), logged[0]?.request_id, 'the answer names its audit line');
  });

  // Node answered these itself: a bare 400 without a body, or a silently closed connection, and
  // neither was counted or logged.
  for (const [name, payload, status, reason] of [
    ['an HTTP/1.1 request without a Host header', 'POST /message HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}', 400, 'transport.bad_framing'],
    ['an HTTP/1.1 request with two Host headers', 'POST /message HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}', 400, 'transport.bad_framing'],
    ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405, 'transport.method_not_allowed'],
  ] as const) {
    it(`refuses ${name} with ${status}, a JSON-RPC body, a count and an audit line`, async () => {
      const count = h.upstream.requests.length;
      const denied = await h.metric('ca_a2a_denials_total', { reason });
      const lines = h.audit.events('transport_rejected').length;
      const { text, closed } = await rawRequest(h.sidecar.url, payload);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `));
      assert.equal(rawJson(text).error?.data?.reason, reason);
      assert.ok(closed);
      assert.equal(h.upstream.requests.length, count);
      assert.equal(await h.metric('ca_a2a_denials_total', { reason }), denied + 1);
      const logged = h.audit.events('transport_rejected').slice(lines);
      assert.equal(logged.length, 1);
      assert.equal(logged[0]?.code, reason);
      assert.equal(logged[0]?.source_ip, '127.0.0.1');
      assert.match(String(logged[0]?.request_id), UUID);
      assert.equal(rawRequestId(text), logged[0]?.request_id, 'the answer names its audit line');
    });
  }

  // Node hands a CONNECT's socket over without its error listener: the client resetting the
  // connection made writing the refusal fail with an 'error' no one heard, which ended the process
  // (one unauthenticated packet pair stopped the sidecar).
  it('survives CONNECTs whose clients reset the connection at once, each refused, counted and logged', async () => {
    const denied = await h.metric('ca_a2a_denials_total', { reason: 'transport.method_not_allowed' });
    const lines = h.audit.events('transport_rejected').length;
    const uncaught = await uncaughtDuring(async () => {
      for (let i = 0; i < 5; i++) await sendAndReset(h.sidecar.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
      // A CONNECT whose reset overtook its bytes never reaches the listener: not waited for.
      for (let i = 0; i < 250 && h.audit.events('transport_rejected').length < lines + 5; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      const refused = h.audit.events('transport_rejected').length - lines;
      assert.ok(refused >= 1, 'a CONNECT reached the listener');
      assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'transport.method_not_allowed' }), denied + refused);
      assert.equal((await h.call(undefined, { method: 'GET', path: '/health' })).status, 200, 'still serving');
    });
    assert.deepEqual(uncaught, []);
  });

  // Node kept about the first thousand fields and dropped the rest unseen: a second Host past them
  // was never counted, and the agent (a Node server too) dropped the x-ca-a2a-* identity the
  // sidecar appends after the client's fields, so it served a verified call as from no one.
  it('refuses a request with more than 100 header fields with 400 and closes, never forwarded; 100 pass', async () => {
    const body = JSON.stringify(call());
    const head = (fields: number, extra = ''): string => {
      const filler = Array.from({ length: fields - 4 }, (_, i) => `f${i}:\r\n`).join('');
      return `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n${filler}${extra}\r\n${body}`;
    };
    const count = h.upstream.requests.length;
    const { text: hundred } = await rawRequest(h.sidecar.url, head(100), 1000);
    assert.match(hundred, /^HTTP\/1\.1 200 /);
    assert.equal(h.upstream.requests.at(-1)?.headers['x-ca-a2a-subject'], 'service-account-viewer');
    assert.equal(h.upstream.requests.length, count + 1);

    for (const payload of [head(101), head(1200, 'Host: b\r\n')]) {
      const denied = await h.metric('ca_a2a_denials_total', { reason: 'transport.bad_framing' });
      const lines = h.audit.events('transport_rejected').length;
      const { text, closed } = await rawRequest(h.sidecar.url, payload);
      assert.match(text, /^HTTP\/1\.1 400 /);
      assert.equal(rawJson(text).error?.data?.reason, 'transport.bad_framing');
      assert.ok(closed);
      assert.equal(h.upstream.requests.length, count + 1, 'never forwarded');
      assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'transport.bad_framing' }), denied + 1);
      const logged = h.audit.events('transport_rejected').slice(lines);
      assert.equal(logged.length, 1);
      assert.match(String(logged[0]?.reason), /more than 100 header fields/);
      assert.equal(rawRequestId(text), logged[0]?.request_id);
    }
  });

  // Node answered 100 Continue to every Expect: 100-continue whose declared length fitted, so a
  // request the transport layer refuses from its head alone invited its body first.
  it('refuses with Expect: 100-continue, before inviting the body, what its head alone refuses', async () => {
    const body = JSON.stringify(call());
    const filler = Array.from({ length: 97 }, (_, i) => `f${i}:\r\n`).join('');
    const cases: [string, string, number, string][] = [
      ['101 fields', `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n${filler}\r\n`, 400, 'transport.bad_framing'],
      ['two Hosts', `POST /message HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`, 400, 'transport.bad_framing'],
      ['a wrong type', `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`, 415, 'transport.unsupported_media_type'],
      ['a GET with a body', `GET /health HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`, 400, 'transport.bad_framing'],
      ['a PUT', `PUT /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`, 405, 'transport.method_not_allowed'],
      ['a path that climbs', `POST /../message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`, 400, 'transport.bad_path'],
    ];
    const count = h.upstream.requests.length;
    for (const [what, head, status, reason] of cases) {
      const { text, closed } = await rawRequest(h.sidecar.url, head, 2000);
      assert.doesNotMatch(text, /100 Continue/, what);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), what);
      assert.equal(rawJson(text).error?.data?.reason, reason, what);
      assert.ok(closed, `${what}: closed, its body never read`);
    }
    assert.equal(h.upstream.requests.length, count, 'never forwarded');
    // 100 fields, the bound: invited, then served.
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n${filler.slice(0, -'f95:\r\nf96:\r\n'.length)}\r\n${body}`, 1000);
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    assert.equal(h.upstream.requests.length, count + 1);
  });

  it('cuts off a client that does not finish its headers in time (slowloris)', async () => {
    const { text, closed } = await rawRequest(h.sidecar.url, 'POST /message HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n', 5000);
    assert.ok(closed, 'connection must be closed by the sidecar');
    assert.match(text, /^HTTP\/1\.1 408/);
    assert.ok((await h.metric('ca_a2a_denials_total', { reason: 'transport.timeout' })) >= 1);
  });

  /** Waits until no request is inside the sidecar: the handler of a cut-off request has finished. */
  async function settled(): Promise<void> {
    for (let i = 0; i < 200 && (await h.metric('ca_a2a_in_flight_requests')) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(await h.metric('ca_a2a_in_flight_requests'), 0);
  }

  // Node's parser gives up on these while the sidecar is still reading the body (an authenticated
  // caller's: no other body is read); the parser's refusal is the request's one refusal, not
  // followed by a second for the cut body.
  for (const [name, reason, payload] of [
    ['a body that stops coming in time', 'transport.timeout', 'Content-Length: 100\r\n\r\n{"jsonrpc"'],
    ['a chunked body with a malformed chunk', 'transport.bad_framing', 'Transfer-Encoding: chunked\r\n\r\n5\r\n{"jso\r\nzz\r\n'],
  ] as const) {
    it(`counts and logs ${name} once, as ${reason}, with the request's fields`, async () => {
      const denials = async () => Promise.all(['transport.timeout', 'transport.bad_framing'].map((code) => h.metric('ca_a2a_denials_total', { reason: code })));
      const before = await denials();
      const status = reason === 'transport.timeout' ? '408' : '400';
      const refused = await h.metric('ca_a2a_requests_total', { outcome: 'refused', status });
      const lines = h.audit.events('transport_rejected').length;
      const { text, closed } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n${payload}`, 5000);
      assert.ok(closed);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `));
      assert.equal(rawJson(text).error?.data?.reason, reason);
      await settled();
      const after = await denials();
      assert.deepEqual(after.map((value, i) => value - (before[i] as number)), reason === 'transport.timeout' ? [1, 0] : [0, 1]);
      const logged = h.audit.events('transport_rejected').slice(lines);
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]?.code, reason);
      assert.match(String(logged[0]?.request_id), /^[0-9a-f-]{36}$/);
      assert.equal(logged[0]?.source_ip, '127.0.0.1');
      assert.equal(logged[0]?.policy_version, h.sidecar.policy().version);
      assert.equal(await h.metric('ca_a2a_requests_total', { outcome: 'refused', status }), refused + 1, 'one request, refused with the parser\'s status');
    });
  }

  // Refused before its body is read: the connection closes, instead of waiting for the rest of a
  // body no one reads and then refusing the same request again when request_timeout_ms runs out.
  for (const [name, payload, reason] of [
    ['a wrong content type', 'POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n{"a"', 'transport.unsupported_media_type'],
    ['a PUT', 'PUT /message HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{"a"', 'transport.method_not_allowed'],
    ['a bad path', 'POST /%2e%2e/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"', 'transport.bad_path'],
  ] as const) {
    it(`refuses ${name} whose body has not all come once, and closes the connection`, async () => {
      const lines = h.audit.events('transport_rejected').length;
      const { closed } = await rawRequest(h.sidecar.url, payload, 5000);
      assert.ok(closed);
      await settled();
      assert.deepEqual(h.audit.events('transport_rejected').slice(lines).map((line) => line.code), [reason]);
    });
  }

  // RFC 9112 §9.6: after a response that closes the connection, no further request on it is
  // processed. The bytes after a refused, suspect request (a GET with a body, a body over the
  // limit) are not to be read as a request: an intermediary may frame them otherwise.
  for (const [name, first, status] of [
    ['a body over the limit', `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}`, 413],
    ['a GET with a body', 'GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}', 400],
  ] as const) {
    it(`processes no request pipelined after ${name}, refused with the connection closed`, async () => {
      const count = h.upstream.requests.length;
      const dropped = await h.metric('ca_a2a_dropped_requests_total');
      const body = JSON.stringify(call());
      const next = `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const { text, closed } = await rawRequest(h.sidecar.url, first + next, 5000);
      assert.ok(closed);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `));
      assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer');
      await settled();
      assert.equal(h.upstream.requests.length, count, 'the pipelined request never reached the agent');
      assert.equal(await h.metric('ca_a2a_dropped_requests_total'), dropped + 1, 'and was counted as dropped');
    });
  }

  // Node's parser stops at the end of a request asking to upgrade (h2c, as curl --http2 asks on
  // http://; websocket): with no 'upgrade' listener the request is served, but what came behind it
  // in the same read is dropped unseen, and the client waited for its answer until the keep-alive
  // timeout (65 s here). The connection closes after the answer: the client sends it again on another.
  for (const [name, first] of [
    ['an h2c upgrade', 'GET /health HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'],
    ['a websocket upgrade with a token', () => `POST /message HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${JSON.stringify(call()).length}\r\n\r\n${JSON.stringify(call())}`],
  ] as const) {
    it(`serves ${name} as HTTP/1.1 and closes the connection after it, leaving no request pipelined behind it unanswered`, async () => {
      const count = h.upstream.requests.length;
      const request = typeof first === 'string' ? first : first();
      const { text, closed } = await rawRequest(h.sidecar.url, `${request}GET /card HTTP/1.1\r\nHost: a\r\n\r\n`, 10_000);
      assert.match(text, /^HTTP\/1\.1 200 /);
      assert.match(text, /\r\nconnection: close\r\n/i);
      assert.ok(closed, 'closed after the answer, not left open for the answer to a request Node dropped');
      assert.equal(h.upstream.requests.length, count + 1);
      assert.equal(h.upstream.requests.at(-1)?.headers.upgrade, undefined, 'the agent gets no Upgrade');
    });
  }

  // The admin listener had the same hang: a probe or scraper asking to upgrade with a request
  // pipelined behind it waited for that answer until the keep-alive timeout.
  it('closes the admin listener\'s connection after a request asking to upgrade, leaving no request pipelined behind it unanswered', async () => {
    for (const upgrade of ['Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Connection: Upgrade\r\nUpgrade: websocket']) {
      const { text, closed } = await rawRequest(h.sidecar.adminUrl, `GET /ready HTTP/1.1\r\nHost: a\r\n${upgrade}\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n`, 10_000);
      assert.match(text, /^HTTP\/1\.1 200 /, upgrade);
      assert.match(text, /\r\nconnection: close\r\n/i, `${upgrade}: the client is told to send the rest on another connection`);
      assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer');
      assert.ok(closed);
    }
  });

  it('cuts off a client that does not finish its body in time', async () => {
    const count = h.upstream.requests.length;
    const { text, closed } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n{"jsonrpc":`, 5000);
    assert.ok(closed, 'connection must be closed by the sidecar');
    assert.match(text, /^HTTP\/1\.1 408/);
    assert.equal(h.upstream.requests.length, count);
  });

  it('refuses other HTTP methods with 405', async () => {
    const res = await h.call(undefined, { token, method: 'PUT' });
    assert.equal(res.status, 405);
  });

  it('normalises paths before deciding: /health/../message is the JSON-RPC endpoint and needs a token', async () => {
    for (const path of ['/health/../message', '//message', '/./message']) {
      const res = await h.call(call(), { path });
      assert.equal(res.status, 401, path);
    }
    const count = h.upstream.requests.length;
    assert.equal((await h.call(call(), { token, path: '/health/../message' })).status, 200);
    assert.equal(h.upstream.requests.at(count)?.url, '/message', 'the upstream sees the normalised path');
  });

  it('refuses encoded separators and dot segments that climb above the root', async () => {
    for (const path of ['/health%2F..%2Fmessage', '/%2e%2e/message', '/..', '/health\\..\\message']) {
      const { text } = await rawRequest(h.sidecar.url, `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`, 1000);
      assert.match(text, /^HTTP\/1\.1 400/, path);
    }
  });

  it('serves public routes without a token, on the exact normalised path only', async () => {
    assert.equal((await h.call(undefined, { method: 'GET', path: '/health' })).status, 200);
    assert.equal((await h.call(undefined, { method: 'GET', path: '/health?probe=1' })).status, 200);
    assert.equal((await h.call(undefined, { method: 'GET', path: '/%68ealth' })).status, 200, 'an encoded letter decodes to the same path');
    for (const path of ['/HEALTH', '/health/', '/healthz', '/message?/health', '/card/../message']) {
      const res = await h.call(undefined, { method: 'GET', path });
      assert.equal(res.status, 401, path);
    }
    const res = await h.call(call(), { path: '/health' });
    assert.equal(res.status, 401, 'POST to a GET public route needs a token');
  });

  it('is not widened by a health-check User-Agent, X-Forwarded-* or X-Original-URL', async () => {
    const count = h.upstream.requests.length;
    const res = await h.call(call(), {
      headers: {
        'user-agent': 'ELB-HealthChecker/2.0',
        'x-forwarded-for': '127.0.0.1',
        'x-forwarded-host': 'internal',
        'x-forwarded-proto': 'https',
        'x-forwarded-prefix': '/health',
        'x-original-url': '/health',
        'x-rewrite-url': '/health',
      },
    });
    assert.equal(res.status, 401);
    assert.equal(h.upstream.requests.length, count);
    await h.call(undefined, { method: 'GET', path: '/health', headers: { 'x-original-url': '/message' } });
    assert.equal(h.upstream.requests.at(-1)?.headers['x-original-url'], undefined, 'never passed on to the agent');
  });

  // Rails (Rack::MethodOverride, on by default), Express's method-override and others run a POST
  // carrying one of these as the method it names: the agent would serve a DELETE or PUT where the
  // sidecar checked a POST, as X-Original-URL would have it serve another path.
  it('passes no method-override header on to the agent, in any spelling', async () => {
    const names = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X_HTTP_Method_Override'];
    const res = await h.call(call(), { token, headers: Object.fromEntries(names.map((name) => [name, 'DELETE'])) });
    assert.equal(res.status, 200);
    const forwarded = h.upstream.requests.at(-1)?.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase()) ?? [];
    for (const name of names) assert.ok(!forwarded.includes(name.toLowerCase()), `${name} passed on`);
  });

  it('answers 404 for an unknown endpoint only after authentication', async () => {
    assert.equal((await h.call(call(), { path: '/admin' })).status, 401);
    const res = await h.call(call(), { token, path: '/admin' });
    assert.equal(res.status, 404);
    assert.equal(res.json.error?.data?.reason, 'transport.not_found');
  });
});

// The parser cut off a body that stopped coming while the caller was still being checked (the
// issuer's keys slow to come): its 408 went out, but the sidecar then found the client gone and
// counted the request as closed by the client, so that refusal had no count and no audit line.
describe('transport layer: a body cut off while its caller is checked', () => {
  it('counts and logs the parser\'s refusal with the request\'s fields', async () => {
    const issuer = await startTestIssuer();
    const release = issuer.holdJwks();
    const h = await startHarness({
      issuer,
      policyFile: writePolicy(`service: transport-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents, jwks_timeout_ms: 60000 }
limits: { headers_timeout_ms: 300, request_timeout_ms: 1000 }
methods:
  get_document: {}
`),
    });
    try {
      const token = await issuer.sign();
      const answer = rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`, 10_000);
      const { text, closed } = await answer;
      assert.ok(closed);
      assert.match(text, /^HTTP\/1\.1 408 /);
      assert.equal(await h.metric('ca_a2a_in_flight_requests'), 1, 'still waiting for the issuer\'s keys');
      release();
      while ((await h.metric('ca_a2a_in_flight_requests')) > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'transport.timeout' }), 1);
      assert.equal(await h.metric('ca_a2a_requests_total', { outcome: 'refused', status: '408' }), 1);
      const logged = h.audit.events('transport_rejected');
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.equal(logged[0]?.code, 'transport.timeout');
      assert.equal(logged[0]?.path, '/message');
      assert.equal(h.upstream.requests.length, 0);
    } finally {
      release();
      await h.close();
      await issuer.close();
    }
  });
});

// A refusal decided from the request's head under Expect: 100-continue (before its body is read)
// skipped the transport layer, and its audit line had no path, nor, behind a trusted proxy, the
// client's address; so had a refused expectation's and a CONNECT's. Every refusal's line carries
// the same fields, whichever way it was decided.
describe('transport layer: the audit line of a refusal decided from the head', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(`service: transport-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
anomaly: { trusted_proxies: [127.0.0.1] }
methods:
  get_document: {}
`),
    });
  });
  after(() => h.close());

  /** The refusal line of `payload`'s request (the one its answer's request id names), without its own ids. */
  async function refusalLine(payload: string): Promise<Record<string, unknown>> {
    const { text, closed } = await rawRequest(h.sidecar.url, payload, 5000);
    assert.ok(closed, 'answered and closed');
    const line = await h.audit.byRequestId(rawRequestId(text));
    assert.ok(line, `an audit line with the answer's request id: ${text}`);
    return sharedFields(line);
  }

  const head = (method: string, expect: string): string =>
    `${method} /message?q=1 HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n${expect}Content-Length: 7\r\nConnection: close\r\n\r\n`;

  for (const [name, method] of [['a wrong type', 'POST'], ['a PUT', 'PUT']] as const) {
    it(`is the same for ${name} with Expect: 100-continue as without`, async () => {
      const normal = await refusalLine(`${head(method, '')}{"a":1}`);
      assert.equal(normal.path, '/message');
      assert.equal(normal.client_ip, '203.0.113.9', 'the right-most address no trusted proxy added');
      assert.equal(normal.source_ip, '127.0.0.1');
      assert.equal(normal.http_method, method);
      assert.deepEqual(await refusalLine(head(method, 'Expect: 100-continue\r\n')), normal);
    });
  }

  it('names the path and the client of a refused expectation, and the client of a CONNECT', async () => {
    const expectation = await refusalLine(head('POST', 'Expect: tea\r\n'));
    assert.equal(expectation.code, 'transport.expectation_failed');
    assert.equal(expectation.path, '/message');
    assert.equal(expectation.client_ip, '203.0.113.9');
    const connect = await refusalLine('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n');
    assert.equal(connect.code, 'transport.method_not_allowed');
    assert.equal(connect.client_ip, '203.0.113.9');
    assert.equal(connect.http_method, 'CONNECT');
  });
});
