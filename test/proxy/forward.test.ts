import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { request, type Dispatcher } from 'undici';
import { rawJson, rawRequest } from '../helpers/raw-http.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { startTestIssuer } from '../helpers/test-issuer.js';

function policy(upstream: string): string {
  return `service: forward-test
rbac: ${RBAC_FILE}
upstream: ${upstream}
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
limits: { upstream_timeout_ms: 300, upstream_connect_timeout_ms: 300 }
methods:
  get_document: {}
`;
}

describe('forwarding to the upstream', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(policy('http://127.0.0.1:1')) });
    token = await h.issuer.sign();
  });
  after(() => h.close());
  const call = () => rpc('get_document', { document_id: DOC_ID }, 9);

  it('passes the upstream answer, status and headers back, minus hop-by-hop headers', async () => {
    h.upstream.respond(() => ({ status: 200, body: { jsonrpc: '2.0', id: 9, result: { title: 'x' } } }));
    const res = await h.call(call(), { token });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.result, { title: 'x' });
    assert.match(String(res.headers['x-ca-a2a-request-id']), /^[0-9a-f-]{36}$/);
    // undici manages Connection itself, so send this one raw.
    const body = JSON.stringify(call());
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nTE: trailers\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 500);
    assert.match(text, /^HTTP\/1\.1 200/);
    const seen = h.upstream.requests.at(-1);
    assert.equal(seen?.headers['x-hop'], undefined, 'a header named in Connection is hop-by-hop');
    assert.equal(seen?.headers.te, undefined);
    h.upstream.respond(undefined);
  });

  // Found by test/proxy/fuzz.test.ts: the sidecar checked Content-Type: application/json, then
  // dropped it as hop-by-hop because the client named it in Connection, so the agent got a POST
  // with no Content-Type at all, a request the transport layer says it never forwards (an agent
  // decoding by type reads the body otherwise, or not at all).
  it('forwards the Content-Type it checked even when the client names it in Connection', async () => {
    const body = JSON.stringify(call());
    const before = h.upstream.requests.length;
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nConnection: close, Content-Type\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 500);
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.equal(h.upstream.requests.length, before + 1);
    assert.equal(h.upstream.requests.at(-1)?.headers['content-type'], 'application/json');
  });

  it("drops the agent's own x-ca-a2a-* answer headers, and sets its request id", async () => {
    h.upstream.respond(() => ({ status: 200, headers: { 'x-ca-a2a-subject': 'admin', 'X-CA-A2A-Request-Id': 'forged', 'x-other': 'kept' }, body: { jsonrpc: '2.0', id: 9, result: {} } }));
    const res = await h.call(call(), { token });
    h.upstream.respond(undefined);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-ca-a2a-subject'], undefined);
    assert.match(String(res.headers['x-ca-a2a-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(res.headers['x-other'], 'kept');
  });

  it('answers a client that sends Expect: 100-continue, and forwards its request without the Expect header', async () => {
    // curl sends it with larger bodies; the sidecar has the whole body before it forwards, so the
    // expectation is met here and is not the upstream's to meet (undici refuses to send one).
    const body = JSON.stringify(call());
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 500);
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    const seen = h.upstream.requests.at(-1);
    assert.equal(seen?.body, body);
    assert.equal(seen?.headers.expect, undefined);
  });

  it('refuses with 413, without inviting it by 100 Continue, a body declared over the limit with Expect: 100-continue', async () => {
    const before = h.upstream.requests.length;
    const { text } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n`, 1000);
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.doesNotMatch(text, /100 Continue/);
    assert.equal(rawJson(text).error?.data?.reason, 'transport.body_too_large');
    assert.equal(h.upstream.requests.length, before);
  });

  it('refuses any other expectation with 417 and a JSON-RPC error, audited and counted, not forwarded', async () => {
    const before = h.upstream.requests.length;
    const body = JSON.stringify(call());
    const { text, closed } = await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nExpect: 200-ok\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 1000);
    assert.match(text, /^HTTP\/1\.1 417 /);
    assert.equal(rawJson(text).error?.code, -32600);
    assert.equal(rawJson(text).error?.data?.reason, 'transport.expectation_failed');
    assert.ok(closed, 'the connection is closed');
    assert.equal(h.upstream.requests.length, before, 'must not be forwarded');
    const lines = h.audit.events('transport_rejected').filter((line) => line.code === 'transport.expectation_failed');
    assert.equal(lines.length, 1);
    assert.match(String(lines[0]?.request_id), /^[0-9a-f-]{36}$/);
    assert.equal(lines[0]?.source_ip, '127.0.0.1');
    assert.equal(lines[0]?.policy_version, h.sidecar.policy().version);
    assert.equal(await h.metric('ca_a2a_denials_total', { reason: 'transport.expectation_failed', status: '417' }), 1);
    assert.equal(await h.metric('ca_a2a_requests_total', { outcome: 'refused', status: '417' }), 1, 'a request handled like any other');
  });

  it('joins repeated request headers into one field, cookies with a semicolon', async () => {
    const body = JSON.stringify(call());
    await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nCookie: a=1\r\nX-Tag: one\r\nCookie: b=2\r\nX-Tag: two\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 500);
    const seen = h.upstream.requests.at(-1);
    assert.equal(seen?.headers.cookie, 'a=1; b=2');
    assert.equal(seen?.headers['x-tag'], 'one, two');
  });

  // Read as a repeat of the object's own 'constructor': forwarded as 'function Object() { [native code] }, v1'.
  // An agent keeps only its first so many fields (Node's maxHeadersCount): the identity the sidecar
  // verified came after every one of the client's, so a client padding its request (or naming
  // fields '0', '1'…, which a JS object puts first) could have it dropped.
  it("sends the sidecar's identity fields ahead of all the client's", async () => {
    const padding: Record<string, string> = { '7': 'x', 'x-ca-a2a-subject': 'forged' };
    for (let i = 0; i < 80; i++) padding[`x-pad-${i}`] = String(i);
    const res = await h.call(call(), { token, headers: padding });
    assert.equal(res.status, 200);
    const raw = h.upstream.requests.at(-1)?.rawHeaders ?? [];
    const names = raw.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    assert.deepEqual(names.slice(0, 6), ['host', 'connection', 'x-ca-a2a-subject', 'x-ca-a2a-client-id', 'x-ca-a2a-roles', 'x-ca-a2a-request-id']);
    assert.equal(raw[raw.findIndex((name) => name.toLowerCase() === 'x-ca-a2a-subject') + 1], 'service-account-viewer');
    assert.equal(names.filter((name) => name === 'x-ca-a2a-subject').length, 1);
    assert.ok(names.includes('7') && names.includes('x-pad-79'), 'the client\'s fields still go on');
  });

  it('forwards a header named like an Object.prototype member as it came', async () => {
    const body = JSON.stringify(call());
    await rawRequest(h.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nConstructor: v1\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 500);
    assert.equal(h.upstream.requests.at(-1)?.headers['constructor'], 'v1');
  });

  // undici closes its connection after every HEAD: each HEAD on a public route, no token needed,
  // opened a new connection to the agent (500 left 500 sockets in TIME_WAIT on its side).
  it('answers a HEAD on a public route with the GET\'s head and no body, on one kept upstream connection', async () => {
    const side = await startHarness({ policyFile: writePolicy(`${policy('http://127.0.0.1:1')}public_routes: ['GET /card', 'HEAD /card']\n`) });
    try {
      side.upstream.respond(() => ({ body: { name: 'card' }, headers: { 'x-card': 'yes' } }));
      const get = await request(`${side.sidecar.url}/card`);
      assert.equal(await get.body.text(), '{"name":"card"}');
      const before = side.upstream.connections();
      for (let i = 0; i < 50; i++) {
        const head = await request(`${side.sidecar.url}/card`, { method: 'HEAD' });
        assert.equal(head.statusCode, 200);
        assert.equal(head.headers['content-length'], get.headers['content-length']);
        assert.equal(head.headers['content-type'], 'application/json');
        assert.equal(head.headers['x-card'], 'yes');
        assert.equal(await head.body.text(), '');
      }
      assert.ok(side.upstream.connections() - before <= 1, `${side.upstream.connections() - before} upstream connections for 50 HEADs`);
    } finally {
      await side.close();
    }
  });

  it('forwards the exact body bytes', async () => {
    const body = `{"jsonrpc":"2.0","id":9,  "method":"get_document","params":{"document_id":"${DOC_ID}"}}`;
    await h.call(body, { token });
    assert.equal(h.upstream.requests.at(-1)?.body, body);
  });

  it('answers 504 with a JSON-RPC error when the upstream is too slow, never hangs', async () => {
    h.upstream.respond(() => ({ body: {}, delayMs: 2000 }));
    const res = await h.call(call(), { token });
    assert.equal(res.status, 504);
    assert.equal(res.json.error?.data?.reason, 'upstream.timeout');
    assert.equal(res.json.id, 9);
    assert.equal(res.json.error?.message, 'upstream timed out', '5xx carries no detail');
    assert.equal(h.audit.events('upstream_failure').at(-1)?.reason, 'UND_ERR_HEADERS_TIMEOUT', 'the log has it');
    h.upstream.respond(undefined);
  });

  it('answers 502 when the upstream refuses connections', async () => {
    const dead = await startHarness({ policyFile: writePolicy(policy('http://127.0.0.1:1')), sidecar: { upstream: 'http://127.0.0.1:1' } });
    try {
      const res = await dead.call(call(), { token: await dead.issuer.sign() });
      assert.equal(res.status, 502);
      assert.equal(res.json.error?.code, -32050);
      assert.equal(res.json.error?.message, 'upstream unavailable', '5xx carries no detail');
      assert.ok(dead.audit.events('upstream_failure').length === 1);
      assert.equal(dead.audit.events('upstream_failure')[0]?.reason, 'ECONNREFUSED', 'the detail is in the log');
    } finally {
      await dead.close();
    }
  });

  it('reports the requests inside it on the in-flight gauge, and each verified token on the authn counter', async () => {
    const verifiedBefore = await h.metric('ca_a2a_authn_success_total');
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 9, result: 'late' }, after: released }));
    const arrived = h.upstream.requests.length;
    const pending = [h.call(call(), { token }), h.call(call(), { token })];
    // Both held at the upstream until released: the gauge is read while they certainly are inside.
    while (h.upstream.requests.length < arrived + 2) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await h.metric('ca_a2a_in_flight_requests'), 2, 'both requests are held at the upstream');
    release();
    for (const res of await Promise.all(pending)) assert.equal(res.status, 200);
    h.upstream.respond(undefined);
    assert.equal(await h.metric('ca_a2a_in_flight_requests'), 0);
    assert.equal(await h.metric('ca_a2a_authn_success_total'), verifiedBefore + 2);
  });

  it('drains in-flight requests on close', async () => {
    const slow = await startHarness({ policyFile: writePolicy(policy('http://127.0.0.1:1').replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 5000')) });
    slow.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 9, result: 'late' }, delayMs: 300 }));
    const pending = slow.call(call(), { token: await slow.issuer.sign() });
    // Close once the request is held at the upstream, not after a guess at how long that takes.
    while (slow.upstream.requests.length === 0) await new Promise((resolve) => setImmediate(resolve));
    const closing = slow.close();
    const res = await pending;
    await closing;
    assert.equal(res.status, 200);
    assert.equal(res.json.result, 'late');
    assert.deepEqual(slow.audit.events('sidecar_draining').map((event) => event['in_flight']), [1]);
    assert.equal(slow.audit.events('sidecar_drain_timeout').length, 0);
    assert.equal(slow.audit.events('sidecar_stopped').length, 1);
  });

  describe('connections while draining', () => {
    let slow: Harness;
    let token: string;
    before(async () => {
      slow = await startHarness({ policyFile: writePolicy(`${policy('http://127.0.0.1:1').replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 5000')}integrity: { dpop: off }\n`) });
      token = await slow.issuer.sign();
      // The JSON-RPC id says how long the agent takes, in ms.
      slow.upstream.respond((request) => {
        const id = (JSON.parse(request.body) as { id: number }).id;
        return { body: { jsonrpc: '2.0', id, result: 'done' }, delayMs: id };
      });
    });
    let closing: Promise<void> | undefined;
    after(() => closing ?? slow.close());

    /** A raw keep-alive connection to the sidecar: what it has read so far, and whether the sidecar closed it. */
    async function connection(): Promise<{ send(id: number, part?: 'head' | 'rest'): void; text(): string; closed: Promise<void> }> {
      const { port } = new URL(slow.sidecar.url);
      const socket = connect(Number(port), '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return {
        send(id, part) {
          const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }, id));
          const request = `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
          const cut = request.indexOf('Authorization');
          socket.write(part === 'head' ? request.slice(0, cut) : part === 'rest' ? request.slice(cut) : request);
        },
        text: () => text,
        closed,
      };
    }

    it('answers a request that comes on an open connection with Connection: close, closes idle connections at once, and ends when the last answer is sent', async () => {
      // A request half sent when the drain starts (a connection in use is not idle), the rest after.
      const late = await connection();
      late.send(300, 'head');
      // Another connection answered early in the drain, then idle, while a long request runs.
      const early = await connection();
      early.send(100);
      const long = await connection();
      long.send(1500);
      while (slow.upstream.requests.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
      closing = slow.close();
      late.send(300, 'rest');
      await early.closed;
      assert.match(early.text(), /^HTTP\/1\.1 200 /);
      assert.doesNotMatch(long.text(), /HTTP/, 'the idle connection was closed while a request still ran');
      await late.closed;
      assert.match(late.text(), /^HTTP\/1\.1 200 [^]*\r\nConnection: close\r\n/i);
      await closing;
      assert.match(long.text(), /^HTTP\/1\.1 200 /);
      assert.equal(slow.audit.events('sidecar_drain_timeout').length, 0);
    });
  });

  it('while draining, answers the first of two pipelined requests with Connection: close and does not forward the second', async () => {
    const slow = await startHarness({ policyFile: writePolicy(policy('http://127.0.0.1:1')) });
    const token = await slow.issuer.sign();
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    slow.upstream.respond((request) => ({ body: { jsonrpc: '2.0', id: (JSON.parse(request.body) as { id: number }).id, result: 'done' }, after: request.headers['x-hold'] ? released : undefined }));
    // Keeps the drain going while the pipelined pair comes.
    const held = slow.call(call(), { token, headers: { 'x-hold': '1' } });
    while (slow.upstream.requests.length === 0) await new Promise((resolve) => setImmediate(resolve));
    const socket = connect(Number(new URL(slow.sidecar.url).port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const closing = slow.close();
    const one = (id: number): string => {
      const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }, id));
      return `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    socket.write(one(1) + one(2));
    await closed;
    release();
    await held;
    await closing;
    assert.match(text, /^HTTP\/1\.1 200 [^]*\r\nConnection: close\r\n/i);
    assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'one answer');
    assert.deepEqual(slow.upstream.requests.map((request) => (JSON.parse(request.body) as { id: number }).id), [9, 1], 'the second never reached the agent');
  });

  it('cuts what is still in flight at the drain deadline, and logs how many it cut', async () => {
    const slow = await startHarness({ policyFile: writePolicy(policy('http://127.0.0.1:1').replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 5000')), sidecar: { drainTimeoutMs: 100 } });
    slow.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 9, result: 'late' }, delayMs: 3000 }));
    const pending = slow.call(call(), { token: await slow.issuer.sign() }).then(
      () => 'answered',
      () => 'cut',
    );
    while (slow.upstream.requests.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await slow.close();
    assert.equal(await pending, 'cut');
    assert.deepEqual(slow.audit.events('sidecar_drain_timeout').map((event) => event['in_flight']), [1]);
    assert.equal(slow.audit.events('sidecar_stopped').length, 1);
  });

  describe('streamed answers', { timeout: 30_000 }, () => {
    // An upstream whose answer the test writes by hand; `closed` resolves when the sidecar drops its connection.
    async function streamingUpstream(answer: (res: ServerResponse) => void): Promise<{ url: string; closed: Promise<void>; close(): Promise<void> }> {
      let connectionClosed: () => void = () => {};
      const closed = new Promise<void>((resolve) => {
        connectionClosed = resolve;
      });
      const server = createServer((req: IncomingMessage, res: ServerResponse) => {
        req.resume();
        req.on('end', () => answer(res));
        res.on('close', connectionClosed);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        closed,
        close: () => new Promise((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
      };
    }

    /** An upstream whose every answer is an event stream, a tick every 20 ms until its connection closes. */
    function tickingUpstream(): ReturnType<typeof streamingUpstream> {
      return streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const ticker = setInterval(() => res.write('data: tick\n\n'), 20);
        res.on('close', () => clearInterval(ticker));
      });
    }

    function within(promise: Promise<void>, ms: number, what: string): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
      });
      return Promise.race([promise, late]).finally(() => clearTimeout(timer));
    }

    /**
     * A sidecar with one upstream connection (and `limits`) in front of an upstream whose every
     * answer streams a tick each 50 ms until its connection closes, calling `onAnswer` first;
     * `methods` are more lines of the policy's methods section.
     */
    async function oneConnection(limits: string, onAnswer: () => void = () => undefined, methods = ''): Promise<{ upstream: Awaited<ReturnType<typeof streamingUpstream>>; side: Harness }> {
      const upstream = await streamingUpstream((res) => {
        onAnswer();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const ticker = setInterval(() => res.write('data: tick\n\n'), 50);
        res.on('close', () => clearInterval(ticker));
      });
      const side = await startHarness({
        policyFile: writePolicy(policy(upstream.url).replace('upstream_timeout_ms: 300', `${limits}, upstream_max_connections: 1`) + methods),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
      });
      return { upstream, side };
    }

    /** The methods lines of a policy that also serves a tools/list, filtered per caller. */
    const TOOLS_LIST = '  tools/list: { access: tool_holders }\ntools:\n  s3_get_object: {}\n';

    async function through(upstream: { url: string }): Promise<Harness> {
      return startHarness({ policyFile: writePolicy(policy(upstream.url)), sidecar: { upstream: upstream.url } });
    }

    /** One authenticated call through the sidecar (a get_document, or `method` by roles that may list tools), the answer left to the test to read. */
    async function postCall(side: Harness, method: 'get_document' | 'tools/list' = 'get_document'): Promise<Dispatcher.ResponseData> {
      const token = method === 'tools/list' ? await side.issuer.sign({ realm_access: { roles: ['viewer', 'validator'] } }) : await side.issuer.sign();
      return request(`${side.sidecar.url}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(method === 'tools/list' ? rpc(method, {}, 9) : call()),
      });
    }

    it('passes a large answer through byte for byte, with a client slower than the upstream timeout', async () => {
      const payload = randomBytes(8 * 1024 * 1024);
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': payload.length });
        for (let at = 0; at < payload.length; at += 64 * 1024) res.write(payload.subarray(at, at + 64 * 1024));
        res.end();
      });
      const side = await through(upstream);
      try {
        const signed = await side.issuer.sign();
        const response = await request(`${side.sidecar.url}/message`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${signed}` },
          body: JSON.stringify(call()),
        });
        assert.equal(response.statusCode, 200);
        // Not reading for longer than the 300 ms upstream timeout: waiting on the client is not the upstream's fault.
        await new Promise((resolve) => setTimeout(resolve, 700));
        const received = Buffer.from(await response.body.arrayBuffer());
        assert.equal(received.length, payload.length);
        assert.equal(createHash('sha256').update(received).digest('hex'), createHash('sha256').update(payload).digest('hex'));
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    it('drops the response headers the agent\'s Connection header names, as hop-by-hop', async () => {
      const answer = '{"jsonrpc":"2.0","id":9,"result":{}}';
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length, connection: 'keep-alive, X-Internal-Route', 'x-internal-route': 'pod-7', 'x-kept': 'yes' });
        res.end(answer);
      });
      const side = await through(upstream);
      try {
        const response = await postCall(side);
        assert.equal(await response.body.text(), answer);
        assert.equal(response.headers['x-internal-route'], undefined);
        assert.equal(response.headers['x-kept'], 'yes');
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    it('passes a small answer of known length that comes in two pieces whole, and serves the next request on the connection', async () => {
      const answer = '{"jsonrpc":"2.0","id":9,"result":"in two pieces"}';
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
        res.write(answer.slice(0, 20));
        setTimeout(() => res.end(answer.slice(20)), 50);
      });
      const side = await through(upstream);
      try {
        const body = JSON.stringify(call());
        const token = await side.issuer.sign();
        const one = `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
        const { text } = await rawRequest(side.sidecar.url, one + one, 1000);
        const answers = text.split(/HTTP\/1\.1 /).filter(Boolean);
        assert.equal(answers.length, 2, text);
        for (const received of answers) {
          assert.match(received, /^200 /);
          assert.ok(received.endsWith(`\r\n\r\n${answer}`), received);
        }
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    it('passes the final answer after an informational (1xx) one', async () => {
      const upstream = await streamingUpstream((res) => {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":9,"result":"after hints"}');
      });
      const side = await through(upstream);
      try {
        const res = await side.call(call(), { token: await side.issuer.sign() });
        assert.equal(res.status, 200);
        assert.equal(res.json.result, 'after hints');
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    // Nothing of the answer had reached the client: the status line was held for the first body
    // byte. The client got an empty reply, counted and logged as a 200 cut off.
    it('answers 504 with a JSON-RPC error when the agent sends its status line and then nothing', async () => {
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
      });
      const side = await through(upstream);
      try {
        const res = await side.call(call(), { token: await side.issuer.sign() });
        assert.equal(res.status, 504, JSON.stringify(res.json));
        assert.equal(res.json.error?.data?.reason, 'upstream.timeout');
        assert.equal(res.json.id, 9);
        assert.equal(side.audit.events('upstream_failure').at(-1)?.reason, 'UND_ERR_BODY_TIMEOUT');
        assert.deepEqual(side.audit.events('upstream_cut_off'), []);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'upstream_error', status: '504' }), 1);
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    // RFC 9110 §8.6: a 304 may carry the Content-Length of the representation it does not send.
    // undici reads that as a body cut short, after the status line was taken: the client got nothing.
    it('passes a 304 whose Content-Length is that of the representation, with no body', async () => {
      const upstream = await streamingUpstream((res) => {
        res.writeHead(304, { etag: '"v1"', 'content-length': 35 });
        res.end();
      });
      const side = await through(upstream);
      try {
        const body = JSON.stringify(call());
        const token = await side.issuer.sign();
        const { text } = await rawRequest(side.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 1000);
        assert.match(text, /^HTTP\/1\.1 304 /);
        assert.match(text, /\r\netag: "v1"\r\n/i);
        assert.ok(text.endsWith('\r\n\r\n'), 'no body');
        assert.deepEqual(side.audit.events('upstream_cut_off'), []);
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    it('cuts an answer that stops halfway: the client sees the connection end, never a hang', async () => {
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100 });
        res.write('{"jsonrpc":"2.0",');
      });
      const side = await through(upstream);
      try {
        const body = JSON.stringify(call());
        const token = await side.issuer.sign();
        const { text, closed } = await rawRequest(side.sidecar.url, `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 3000);
        assert.match(text, /^HTTP\/1\.1 200/);
        assert.ok(text.endsWith('{"jsonrpc":"2.0",'), 'what arrived is passed on');
        assert.ok(closed, 'the sidecar closes the connection after the upstream timeout');
        await within(upstream.closed, 2000, 'the upstream connection closing');
        // Counted and logged as the agent's failure, not as a request served.
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'upstream_error', status: '200' }), 1);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'forwarded', status: '200' }), 0);
        const lines = side.audit.events('upstream_cut_off');
        assert.equal(lines.length, 1);
        assert.equal(lines[0]?.err, 'UND_ERR_BODY_TIMEOUT');
        assert.match(String(lines[0]?.request_id), /^[0-9a-f-]{36}$/);
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    it('times a tools/list answer (read whole, to be filtered) to its headers, as every other answer', async () => {
      // The headers come, the body never does: the wait for the body is not the upstream's latency.
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"jsonrpc":"2.0",');
      });
      const side = await startHarness({
        policyFile: writePolicy(`${policy(upstream.url)}  tools/list: { access: tool_holders }\ntools:\n  s3_list_objects: {}\n`),
        sidecar: { upstream: upstream.url },
      });
      try {
        const res = await side.call({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token: await side.issuer.sign({ realm_access: { roles: ['admin'] } }) });
        assert.equal(res.status, 504, JSON.stringify(res.json));
        assert.equal(await side.metric('ca_a2a_upstream_duration_seconds_count'), 1, 'the headers arrived');
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    // A small answer of known length is not watched for the client leaving; its next piece found
    // the response destroyed, waited for a 'drain' that never comes, and held the exchange, the
    // request's in-flight count and the upstream connection (paused) forever.
    it('ends the exchange when the client leaves during a small answer that comes in pieces', async () => {
      let next: () => void = () => undefined;
      const more = new Promise<void>((resolve) => (next = resolve));
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 3000 });
        res.write('a'.repeat(1000));
        void more.then(() => res.write('b'.repeat(1000))); // the last 1000 never come
      });
      const side = await startHarness({
        policyFile: writePolicy(policy(upstream.url).replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 60000')),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
      });
      try {
        const body = JSON.stringify(call());
        const token = await side.issuer.sign();
        const socket = connect(Number(new URL(side.sidecar.url).port), '127.0.0.1');
        const left = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        socket.once('data', () => socket.destroy());
        socket.write(`POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        await left;
        // The sidecar sees the connection end on its next turn; the next piece comes after that.
        await new Promise((resolve) => setTimeout(resolve, 100));
        next();
        await within(upstream.closed, 5000, 'the upstream connection closing');
        let inFlight = 1;
        for (let i = 0; i < 200 && inFlight > 0; i++) {
          inFlight = await side.metric('ca_a2a_in_flight_requests');
          if (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
        }
        assert.equal(inFlight, 0);
        assert.deepEqual(side.audit.events('upstream_cut_off'), [], 'the client leaving is not the agent failing');
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    // A tools/list (read whole to be filtered) waited in undici's queue until a connection came free,
    // unanswered past its deadline: undici drops a request whose signal aborted only then.
    for (const queuedCall of ['get_document', 'tools/list'] as const) it(`answers 504 to a request (${queuedCall}) that finds every upstream connection busy for longer than the upstream timeout, and never sends it`, async () => {
      let answered = 0;
      // The first answer streams on, a part well within each timeout: it keeps the one connection.
      const { upstream, side } = await oneConnection('upstream_timeout_ms: 500', () => answered++, TOOLS_LIST);
      try {
        const stream = await postCall(side);
        assert.equal(stream.statusCode, 200);
        const queued = postCall(side, queuedCall).then(async (res) => ({ status: res.statusCode, json: (await res.body.json()) as { error?: { code?: number; data?: { reason?: string } } } }));
        const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 20 s')), 20_000));
        const res = await Promise.race([queued, hung]);
        assert.equal(res.status, 504);
        assert.equal(res.json.error?.code, -32051);
        assert.equal(res.json.error?.data?.reason, 'upstream.timeout');
        stream.body.destroy();
        await within(upstream.closed, 5000, 'the streamed answer ending');
        // The connection is free again: the request that timed out in the queue was not sent after all.
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal(answered, 1);
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    // A tools/list is read whole to be filtered, by another path than every other call: its calls
    // waiting for a connection were not counted, so any number of them queued past the bound.
    for (const waiting of ['get_document', 'tools/list'] as const) it(`refuses at once with 503 a request that would wait for a connection behind four times as many (${waiting}) as there are`, async () => {
      const { upstream, side } = await oneConnection('upstream_timeout_ms: 20000', () => undefined, TOOLS_LIST);
      const pending: Promise<unknown>[] = [];
      try {
        const stream = await postCall(side);
        assert.equal(stream.statusCode, 200);
        // Four wait for the one connection (and would, for the 20 s of the upstream timeout).
        const token = await side.issuer.sign({ realm_access: { roles: ['viewer', 'validator'] } });
        for (let i = 0; i < 4; i++) pending.push(side.call(waiting === 'tools/list' ? rpc(waiting, {}, i) : call(), { token }).catch(() => undefined));
        for (let i = 0; i < 200 && (await side.metric('ca_a2a_in_flight_requests')) < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(await side.metric('ca_a2a_in_flight_requests'), 5);
        const refused = await postCall(side);
        const json = (await refused.body.json()) as { error?: { code?: number; data?: { reason?: string } } };
        assert.equal(refused.statusCode, 503, JSON.stringify(json));
        assert.equal(json.error?.code, -32052);
        assert.equal(json.error?.data?.reason, 'upstream.saturated');
        const line = side.audit.events('upstream_failure').at(-1);
        assert.equal(line?.code, 'upstream.saturated');
        assert.match(String(line?.reason), /every upstream connection busy and 4 requests waiting/);
        assert.equal(await side.metric('ca_a2a_denials_total', { reason: 'upstream.saturated' }), 1);
        stream.body.destroy();
      } finally {
        await side.close();
        await upstream.close();
        await Promise.all(pending);
      }
    });

    it('closes the connection of a client that stops reading its answer once it has been idle for idle_timeout_ms, freeing the upstream connection', async () => {
      const chunk = Buffer.alloc(64 * 1024, 'a');
      const upstream = await streamingUpstream((res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        // As much as the sidecar takes: it stops taking once its client stops reading.
        const pump = (): void => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        pump();
      });
      const side = await startHarness({
        policyFile: writePolicy(policy(upstream.url).replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 300, idle_timeout_ms: 1000')),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
      });
      const socket = connect(Number(new URL(side.sidecar.url).port), '127.0.0.1');
      try {
        const body = JSON.stringify(call());
        socket.pause();
        socket.write(`POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${await side.issuer.sign()}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        // Without the idle timeout the answer waits on this client for ever, holding its upstream connection.
        await within(upstream.closed, 10_000, 'the upstream connection closing');
      } finally {
        socket.destroy();
        await side.close();
        await upstream.close();
      }
    });

    /** Sends one call on a raw connection and returns it, for a test to close before the answer. */
    async function rawCall(side: Harness): Promise<{ gone: Promise<void>; leave(): void }> {
      const body = JSON.stringify(call());
      const socket = connect(Number(new URL(side.sidecar.url).port), '127.0.0.1');
      const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.write(`POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${await side.issuer.sign()}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      return { gone, leave: () => socket.destroy() };
    }

    /** Polls until the sidecar has no request inside it. */
    async function settled(side: Harness): Promise<void> {
      for (let i = 0; i < 200 && (await side.metric('ca_a2a_in_flight_requests')) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(await side.metric('ca_a2a_in_flight_requests'), 0);
    }

    // The agent working on a call whose caller has gone (a caller's own timeout, a cancelled
    // job) would otherwise keep its connection, and the agent its work, until upstream_timeout_ms.
    it('ends the call to the agent when the client leaves before the agent has answered, counted as client_closed', async () => {
      let received: () => void = () => undefined;
      const arrived = new Promise<void>((resolve) => (received = resolve));
      const upstream = await streamingUpstream(() => received()); // never answers
      const side = await startHarness({
        policyFile: writePolicy(policy(upstream.url).replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 600000, idle_timeout_ms: 600001')),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
      });
      try {
        const client = await rawCall(side);
        await within(arrived, 5000, 'the call reaching the agent');
        client.leave();
        await client.gone;
        await within(upstream.closed, 5000, 'the call to the agent ending');
        await settled(side);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'client_closed', status: '499' }), 1);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'upstream_error' }), 0, 'the client leaving is not the agent failing');
        assert.deepEqual(side.audit.events('upstream_failure'), []);
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    it('never sends a call whose client left while it waited for a free upstream connection', async () => {
      let answered = 0;
      const { upstream, side } = await oneConnection('upstream_timeout_ms: 600000, idle_timeout_ms: 600001', () => answered++);
      try {
        const stream = await postCall(side);
        assert.equal(stream.statusCode, 200);
        const queued = await rawCall(side);
        for (let i = 0; i < 200 && (await side.metric('ca_a2a_in_flight_requests')) < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        queued.leave();
        await queued.gone;
        for (let i = 0; i < 200 && (await side.metric('ca_a2a_in_flight_requests')) > 1; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(await side.metric('ca_a2a_in_flight_requests'), 1, 'the queued call is over');
        stream.body.destroy();
        await within(upstream.closed, 5000, 'the streamed answer ending');
        await settled(side);
        // The connection came free: the abandoned call was not sent on it.
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal(answered, 1);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'client_closed', status: '499' }), 1);
      } finally {
        await side.close();
        await upstream.close();
      }
    });

    // A client gone while its call was still being checked (the issuer's keys on their way, a
    // store slow to answer): its call was sent once the checks passed, and the answer, written to
    // no one, was counted as forwarded with the agent's status.
    it('never sends a call whose client left before the checks ended, counted as client_closed', async () => {
      const issuer = await startTestIssuer();
      let keysAsked: () => void = () => undefined;
      const asked = new Promise<void>((resolve) => (keysAsked = resolve));
      let release: () => void = () => undefined;
      const released = new Promise<void>((resolve) => (release = resolve));
      // In front of the issuer: the sidecar's first fetch of its keys waits for the test.
      const gate = createServer((req: IncomingMessage, res: ServerResponse) => {
        if (req.url?.endsWith('/.well-known/openid-configuration')) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: gated, jwks_uri: `${gated}/certs` }));
          return;
        }
        keysAsked();
        void released.then(async () => {
          const keys = await request(`${issuer.issuer}/protocol/openid-connect/certs`);
          res.writeHead(200, { 'content-type': 'application/json' }).end(await keys.body.text());
        });
      });
      await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
      const gated = `http://127.0.0.1:${(gate.address() as AddressInfo).port}/realms/test`;
      let calls = 0;
      const upstream = await streamingUpstream((res) => {
        calls++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
      const side = await startHarness({
        policyFile: writePolicy(policy(upstream.url)),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
        issuer: { ...issuer, issuer: gated, sign: (claims, options) => issuer.sign({ iss: gated, ...claims }, options) },
      });
      try {
        await within(asked, 5000, 'the sidecar asking for the keys');
        const client = await rawCall(side);
        for (let i = 0; i < 200 && (await side.metric('ca_a2a_in_flight_requests')) < 1; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        client.leave();
        await client.gone;
        for (let i = 0; i < 200 && (await side.metric('ca_a2a_open_connections', { listener: 'inbound' })) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(await side.metric('ca_a2a_open_connections', { listener: 'inbound' }), 0, 'the sidecar saw the client go');
        release();
        await settled(side);
        assert.equal(calls, 0, 'never sent to the agent');
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'client_closed', status: '499' }), 1);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'forwarded' }), 0);
      } finally {
        await side.close();
        await upstream.close();
        gate.closeAllConnections();
        gate.close();
        await issuer.close();
      }
    });

    // A client that sends its whole request and then half-closes (shutdown(SHUT_WR), as some
    // clients and health checkers do) has left: Node ends the connection at its FIN, so no answer
    // can reach it. Its call is never sent when the FIN came first; 6 of 20 were, while the
    // socket Node was closing was not yet destroyed, and their answers went nowhere.
    it('never sends, nor answers, a call whose client half-closed while it was checked, counted as client_closed', async () => {
      const issuer = await startTestIssuer();
      const release = issuer.holdJwks();
      let calls = 0;
      const upstream = await streamingUpstream((res) => {
        calls++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
      const side = await startHarness({
        issuer,
        policyFile: writePolicy(policy(upstream.url).replace('audience: ca-a2a-agents', 'audience: ca-a2a-agents, jwks_timeout_ms: 60000')),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
      });
      try {
        const body = JSON.stringify(call());
        const socket = connect(Number(new URL(side.sidecar.url).port), '127.0.0.1');
        let answer = '';
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
        const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        socket.end(`POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${await issuer.sign()}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        await within(gone, 5000, 'the sidecar ending the connection at the FIN');
        assert.equal(await side.metric('ca_a2a_in_flight_requests'), 1, 'still waiting for the issuer\'s keys');
        release();
        await settled(side);
        assert.equal(answer, '', 'no answer');
        assert.equal(calls, 0, 'never sent to the agent');
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'client_closed', status: '499' }), 1);
        assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'forwarded' }), 0);
      } finally {
        release();
        await side.close();
        await upstream.close();
        await issuer.close();
      }
    });

    // The FIN ends what is under way at once, and nothing is sent after it. The call was ended
    // only when the connection closed, and Node's end of it waits behind the answer bytes queued
    // for a client that reads nothing: the call to the agent went on, holding its upstream
    // connection, until idle_timeout_ms, and a call pipelined behind it was sent once checked.
    it('ends the call to the agent when its client half-closes while its answer waits for it, and sends none pipelined behind it', async () => {
      const issuer = await startTestIssuer();
      const release = issuer.holdJwks();
      let written = 0;
      let posts = 0;
      const upstream = await streamingUpstream((res) => {
        if (res.req.method === 'POST') {
          posts++;
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = `data: ${'x'.repeat(64 * 1024)}\n\n`;
        const pump = (): void => {
          for (let more = true; more && !res.destroyed; written += chunk.length) more = res.write(chunk);
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      });
      const side = await startHarness({
        issuer,
        policyFile: writePolicy(`${policy(upstream.url).replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 600000, idle_timeout_ms: 600001').replace('audience: ca-a2a-agents', 'audience: ca-a2a-agents, jwks_timeout_ms: 60000')}public_routes: ['GET /events']\n`),
        sidecar: { upstream: upstream.url, drainTimeoutMs: 100 },
      });
      const socket = connect(Number(new URL(side.sidecar.url).port), '127.0.0.1');
      socket.on('error', () => undefined);
      try {
        const body = JSON.stringify(call());
        socket.pause();
        // The stream, and a call checked while the issuer's keys are held.
        socket.write(`GET /events HTTP/1.1\r\nHost: a\r\n\r\nPOST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${await issuer.sign()}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        // Every buffer between the agent and this client that reads nothing is full when the agent
        // can write no more: the sidecar holds answer bytes it cannot send.
        let seen = -1;
        for (let still = 0; still < 5; ) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          still = written > 0 && written === seen ? still + 1 : 0;
          seen = written;
        }
        socket.end();
        await within(upstream.closed, 10_000, 'the call to the agent ending at the client\'s FIN');
        release();
        await settled(side);
        assert.equal(posts, 0, 'the call pipelined behind it never sent');
        // Gone before its body was read: no JSON-RPC method known.
        assert.equal(await side.metric('ca_a2a_requests_total', { method: 'none', outcome: 'client_closed', status: '499' }), 1);
      } finally {
        release();
        socket.destroy();
        await side.close();
        await upstream.close();
        await issuer.close();
      }
    });

    // Node tells only the answer under way that its client has gone, not one queued behind it for a
    // pipelined request: that call went on for no one until the agent answered, and an answer past
    // 16 KiB then waited for a drain that never came, holding its upstream connection for ever.
    // The second call's answer is either streamed to the client or, for a tools/list, read whole to be filtered.
    for (const second of ['get_document', 'tools/list']) it(`ends a pipelined ${second} queued behind another call when the client leaves, counted as client_closed`, async () => {
      let arrived = 0;
      let bothArrived: () => void = () => undefined;
      const both = new Promise<void>((resolve) => (bothArrived = resolve));
      let ended = 0;
      let bothEnded: () => void = () => undefined;
      const freed = new Promise<void>((resolve) => (bothEnded = resolve));
      // Never answers: each call ends only when the sidecar ends it.
      const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
        req.resume();
        req.on('end', () => {
          if (++arrived === 2) bothArrived();
        });
        res.on('close', () => {
          if (++ended === 2) bothEnded();
        });
      });
      await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
      const side = await startHarness({
        policyFile: writePolicy(`${policy(url).replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 600000, idle_timeout_ms: 600001')}  tools/list: { access: tool_holders }
tools:
  s3_get_object: {}
`),
        sidecar: { upstream: url, drainTimeoutMs: 100 },
      });
      try {
        const token = await side.issuer.sign({ realm_access: { roles: ['viewer', 'validator'] } });
        const post = (body: string): string => `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
        const socket = connect(Number(new URL(side.sidecar.url).port), '127.0.0.1');
        socket.on('error', () => undefined);
        socket.write(post(JSON.stringify(call())) + post(JSON.stringify(rpc(second, {}, 10))));
        await within(both, 5000, 'both calls reaching the agent');
        socket.destroy();
        await within(freed, 5000, 'both calls to the agent ending');
        await settled(side);
        let closed = 0;
        for (const method of new Set(['get_document', second])) closed += await side.metric('ca_a2a_requests_total', { method, outcome: 'client_closed', status: '499' });
        assert.equal(closed, 2);
      } finally {
        // The agent's end first: with a call still held, the sidecar's pool would wait for it.
        upstream.closeAllConnections();
        upstream.close();
        await side.close();
      }
    });

    // A HEAD goes to the agent as a GET whose body is read for no one: a stream would hold its
    // upstream connection, and its place in flight, for ever.
    it('answers a HEAD on a public route whose GET streams, and ends the stream read for no one', async () => {
      const upstream = await tickingUpstream();
      const side = await startHarness({ policyFile: writePolicy(`${policy(upstream.url)}public_routes: ['GET /events']\n`), sidecar: { upstream: upstream.url } });
      try {
        const head = await request(`${side.sidecar.url}/events`, { method: 'HEAD' });
        assert.equal(head.statusCode, 200);
        assert.equal(head.headers['content-type'], 'text/event-stream');
        assert.equal(await head.body.text(), '');
        await within(upstream.closed, 5000, 'the stream read for no one ending');
      } finally {
        await upstream.close();
        await side.close();
      }
    });

    it('stops a streamed answer when the client goes away', async () => {
      const upstream = await tickingUpstream();
      const side = await through(upstream);
      try {
        const response = await postCall(side);
        assert.equal(response.statusCode, 200);
        for await (const chunk of response.body) {
          assert.match(String(chunk), /data: tick/);
          break; // leaving the loop destroys the body and the client's connection
        }
        await within(upstream.closed, 2000, 'the upstream stream stopping');
        assert.deepEqual(side.audit.events('upstream_cut_off'), [], 'the client leaving is not the agent failing');
      } finally {
        await upstream.close();
        await side.close();
      }
    });
  });

  describe('answers an agent writes by hand', () => {
    /** A sidecar in front of a raw TCP upstream that writes `answer(n)` for the n-th request it reads on a connection (0 first). */
    async function rawUpstream(answer: (n: number) => string, policyText = ''): Promise<{ side: Harness; close(): Promise<void> }> {
      const server = createNetServer((socket) => {
        let pending = '';
        let served = 0;
        socket.on('data', (data) => {
          pending += data.toString('latin1');
          for (;;) {
            const end = pending.indexOf('\r\n\r\n');
            if (end < 0) return;
            const length = Number(/^content-length: *(\d+)/im.exec(pending.slice(0, end))?.[1] ?? 0);
            if (pending.length < end + 4 + length) return;
            pending = pending.slice(end + 4 + length);
            socket.write(Buffer.from(answer(served++), 'latin1'));
          }
        });
        socket.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const side = await startHarness({ policyFile: writePolicy(policy(url) + policyText), sidecar: { upstream: url } });
      return {
        side,
        close: async () => {
          await side.close();
          await new Promise((resolve) => server.close(resolve));
        },
      };
    }

    /** Two calls pipelined on one client connection, and what came back on it. */
    async function twoCalls(side: Harness): Promise<{ text: string; closed: boolean }> {
      const body = JSON.stringify(call());
      const one = `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${await side.issuer.sign()}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      return rawRequest(side.sidecar.url, one + one, 1000);
    }

    // Each would let the client's connection, kept and reused, read the answer otherwise than the
    // sidecar did (response smuggling), or carry a header split in two: none is passed on.
    it('answers 502, on a client connection it keeps, an answer framed two ways, a header with a CR or a control character, a status not of three digits, a transfer coding besides chunked', async () => {
      const gzipped = gzipSync('{"jsonrpc":"2.0","id":9,"result":{}}');
      const heads = {
        'two lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}',
        'length and chunked': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
        'a bare CR': 'HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\n{}',
        'a folded line': 'HTTP/1.1 200 OK\r\nX-A: a\r\n Set-Cookie: s=1\r\nContent-Length: 2\r\n\r\n{}',
        'a control character': 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\n{}',
        'status 099': 'HTTP/1.1 099 Early\r\nContent-Length: 2\r\n\r\n{}',
        'status 1000': 'HTTP/1.1 1000 Big\r\nContent-Length: 2\r\n\r\n{}',
        'no status line': '{"jsonrpc":"2.0","id":9,"result":{}}',
        // Unchunked by undici, then passed on as if it were the body, still gzip-coded.
        'a transfer coding besides chunked': `HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${gzipped.length.toString(16)}\r\n${gzipped.toString('latin1')}\r\n0\r\n\r\n`,
      };
      for (const [what, head] of Object.entries(heads)) {
        const { side, close } = await rawUpstream(() => head);
        try {
          const { text, closed } = await twoCalls(side);
          const answers = text.split(/(?=HTTP\/1\.1 )/);
          assert.equal(answers.length, 2, `${what}: ${text}`);
          for (const answer of answers) assert.equal(rawJson(answer).error?.data?.reason, 'upstream.unavailable', what);
          assert.ok(!closed, `${what}: the client's connection is kept`);
          assert.doesNotMatch(text, /set-cookie/i, what);
        } finally {
          await close();
        }
      }
    });

    it('never passes bytes the agent sent after its answer on as the answer to the next call', async () => {
      const forged = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"FORGED"';
      const { side, close } = await rawUpstream((n) => `HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"${n}"${n === 0 ? forged : ''}`);
      try {
        const { text } = await twoCalls(side);
        assert.doesNotMatch(text, /FORGED/);
        const answers = text.split(/(?=HTTP\/1\.1 )/);
        assert.equal(answers.length, 2, text);
        // The connection that carried them is dropped: each call is the first on its own.
        for (const answer of answers) assert.ok(answer.endsWith('\r\n\r\n"0"'), answer);
      } finally {
        await close();
      }
    });

    /** Two answers, each a 204 with the agent's X-Kept header, no Content-Length and no body, on a client connection kept. */
    function assertBare204s({ text, closed }: { text: string; closed: boolean }): void {
      const answers = text.split(/(?=HTTP\/1\.1 )/);
      assert.equal(answers.length, 2, text);
      for (const answer of answers) {
        assert.match(answer, /^HTTP\/1\.1 204 /);
        assert.match(answer, /\r\nx-kept: yes\r\n/);
        assert.doesNotMatch(answer, /content-length/i);
        assert.ok(answer.endsWith('\r\n\r\n'), 'no body');
      }
      assert.ok(!closed);
    }

    // RFC 9110 §8.6: no Content-Length in a 204. A client or intermediary that reads one as the
    // body's length takes the start of the next answer on its connection for this one's body.
    it('passes a 204 on without the Content-Length the agent gave it', async () => {
      const { side, close } = await rawUpstream(() => 'HTTP/1.1 204 No Content\r\nContent-Length: 35\r\nX-Kept: yes\r\n\r\n');
      try {
        assertBare204s(await twoCalls(side));
      } finally {
        await close();
      }
    });

    // The same for a tools/list, whose answer is read whole to be filtered and written anew: it
    // went out with `content-length: 0`.
    it('passes a 204 to a filtered tools/list on without a Content-Length', async () => {
      const { side, close } = await rawUpstream(() => 'HTTP/1.1 204 No Content\r\nX-Kept: yes\r\n\r\n', '  tools/list: { access: tool_holders }\ntools:\n  s3_get_object: {}\n');
      try {
        const body = JSON.stringify(rpc('tools/list', {}, 10));
        const token = await side.issuer.sign({ realm_access: { roles: ['viewer', 'validator'] } });
        const one = `POST /message HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
        assertBare204s(await rawRequest(side.sidecar.url, one + one, 1000));
      } finally {
        await close();
      }
    });

    // RFC 9110 §15: a status outside 100-599 is none, and a client "SHOULD process the response as
    // if it had a 5xx". Passed on, a client library may read 600 as a success (requests does), and
    // the sidecar counted it as an answer forwarded.
    it('answers 502 to a status outside 100-599, and logs it as the agent failing', async () => {
      for (const status of [600, 999]) {
        const { side, close } = await rawUpstream(() => `HTTP/1.1 ${status} Odd\r\nContent-Length: 2\r\n\r\n{}`);
        try {
          const res = await side.call(call(), { token: await side.issuer.sign() });
          assert.equal(res.status, 502, String(status));
          assert.equal(res.json.error?.data?.reason, 'upstream.unavailable');
          assert.equal(side.audit.events('upstream_failure').at(-1)?.reason, `status ${status}`);
          assert.equal(await side.metric('ca_a2a_requests_total', { outcome: 'upstream_error', status: '502' }), 1);
        } finally {
          await close();
        }
      }
    });
  });
});
