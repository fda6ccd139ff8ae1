import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest } from '../helpers/raw-http.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

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
    } finally {
      await dead.close();
    }
  });

  it('drains in-flight requests on close', async () => {
    const slow = await startHarness({ policyFile: writePolicy(policy('http://127.0.0.1:1').replace('upstream_timeout_ms: 300', 'upstream_timeout_ms: 5000')) });
    slow.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 9, result: 'late' }, delayMs: 300 }));
    const pending = slow.call(call(), { token: await slow.issuer.sign() });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = slow.close();
    const res = await pending;
    await closing;
    assert.equal(res.status, 200);
    assert.equal(res.json.result, 'late');
  });
});
