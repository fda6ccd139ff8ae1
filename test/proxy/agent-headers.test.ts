import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

const FORGED = { x_ca_a2a_subject: 'admin', X_CA_A2A_ROLES: 'admin', 'x-ca-a2a_client-id': 'evil', 'X_CA_A2A-Request_Id': 'forged', x_app_trace: 'kept' };

/** The request's fields as a CGI-style server (WSGI, PHP, Rack) reads them: HTTP_ + upper case, '-' as '_', the first of a name kept. */
function cgiEnviron(rawHeaders: readonly string[]): Map<string, string[]> {
  const environ = new Map<string, string[]>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const key = `HTTP_${(rawHeaders[i] as string).toUpperCase().replaceAll('-', '_')}`;
    environ.set(key, [...(environ.get(key) ?? []), rawHeaders[i + 1] as string]);
  }
  return environ;
}

describe('headers between client and agent', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(`service: agent-headers-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
public_routes: [GET /health]
methods:
  get_document: {}
`),
    });
  });
  after(() => h.close());

  // The x-ca-a2a-* names are the sidecar's both ways, whatever their spelling: an agent (or a client
  // library) reading headers CGI-style takes x_ca_a2a_subject for x-ca-a2a-subject.
  describe('the x-ca-a2a-* names, in either spelling', () => {
    it('never reach a CGI-style agent from a client: it reads the verified identity, each name once', async () => {
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign(), headers: FORGED });
      assert.equal(res.status, 200);
      const environ = cgiEnviron(h.upstream.requests.at(-1)?.rawHeaders ?? []);
      assert.deepEqual(environ.get('HTTP_X_CA_A2A_SUBJECT'), ['service-account-viewer']);
      assert.deepEqual(environ.get('HTTP_X_CA_A2A_ROLES'), ['viewer']);
      assert.deepEqual(environ.get('HTTP_X_CA_A2A_CLIENT_ID'), ['viewer']);
      assert.equal(environ.get('HTTP_X_CA_A2A_REQUEST_ID')?.length, 1);
      assert.notEqual(environ.get('HTTP_X_CA_A2A_REQUEST_ID')?.[0], 'forged');
      assert.deepEqual(environ.get('HTTP_X_APP_TRACE'), ['kept'], 'other names with underscores pass');
    });

    it('never reach the agent on a public route, where the sidecar names no caller', async () => {
      const res = await h.call(undefined, { method: 'GET', path: '/health', headers: FORGED });
      assert.equal(res.status, 200);
      const environ = cgiEnviron(h.upstream.requests.at(-1)?.rawHeaders ?? []);
      for (const key of ['HTTP_X_CA_A2A_SUBJECT', 'HTTP_X_CA_A2A_ROLES', 'HTTP_X_CA_A2A_CLIENT_ID']) assert.equal(environ.get(key), undefined, key);
      assert.notEqual(environ.get('HTTP_X_CA_A2A_REQUEST_ID')?.[0], 'forged');
      assert.equal(environ.get('HTTP_X_CA_A2A_REQUEST_ID')?.length, 1);
    });

    // They passed: only the dashed spelling was the sidecar's in an answer, so an agent could tell a
    // client reading headers CGI-style who it (or its caller) was, or another request id.
    for (const [what, path, options] of [['a call', '/message', {}], ['a public GET', '/health', { method: 'GET' }], ['a HEAD', '/health', { method: 'HEAD' }]] as const) {
      it(`are dropped from the agent's answer to ${what}, and the request id is the sidecar's`, async () => {
        h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: {} }, headers: { x_ca_a2a_subject: 'admin', X_CA_A2A_Roles: 'admin', 'x-ca-a2a_request_id': 'forged', x_other: 'kept' } }));
        try {
          const token = path === '/message' ? await h.issuer.sign() : undefined;
          const res = await h.call(path === '/message' ? rpc('get_document', { document_id: DOC_ID }) : undefined, { ...options, path, token });
          assert.equal(res.status, 200);
          const owned = Object.keys(res.headers).filter((name) => name.replaceAll('_', '-').startsWith('x-ca-a2a-'));
          assert.deepEqual(owned, ['x-ca-a2a-request-id']);
          assert.match(String(res.headers['x-ca-a2a-request-id']), /^[0-9a-f-]{36}$/);
          assert.equal(res.headers.x_other, 'kept', 'other names with underscores pass');
        } finally {
          h.upstream.respond(undefined);
        }
      });
    }

    it("passes the agent's Set-Cookie on: a cookie grants nothing at the sidecar", async () => {
      h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: {} }, headers: { 'set-cookie': 'sticky=1; Path=/; HttpOnly' } }));
      try {
        const res = await h.call(undefined, { method: 'GET', path: '/health' });
        assert.equal(res.headers['set-cookie'], 'sticky=1; Path=/; HttpOnly');
        // Sent back, it is no credential: the call needs its token like any other.
        const refused = await h.call(rpc('get_document', { document_id: DOC_ID }), { headers: { cookie: 'sticky=1' } });
        assert.equal(refused.status, 401);
      } finally {
        h.upstream.respond(undefined);
      }
    });
  });

  // The sidecar passed the client's X-Forwarded-For on as it came: an agent's framework that believes
  // its loopback proxy (Rails by default, Express with 'trust proxy' loopback) took whatever the
  // client wrote there for the client's address. Envoy and Go's ReverseProxy append the peer.
  describe('X-Forwarded-For to the agent', () => {
    const forwardedFor = (): string[] => {
      const raw = h.upstream.requests.at(-1)?.rawHeaders ?? [];
      const values: string[] = [];
      for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase().replaceAll('_', '-') === 'x-forwarded-for') values.push(raw[i + 1] as string);
      return values;
    };

    it('ends with the peer the sidecar saw, after what the client wrote, in one field', async () => {
      await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign(), headers: { 'x-forwarded-for': ['6.6.6.6', '7.7.7.7'] } });
      assert.deepEqual(forwardedFor(), ['6.6.6.6, 7.7.7.7, 127.0.0.1']);
      await h.call(undefined, { method: 'GET', path: '/health' });
      assert.deepEqual(forwardedFor(), ['127.0.0.1'], 'one the client did not send is the peer alone');
    });

    it('drops an underscore spelling, which CGI-style agents read as a second X-Forwarded-For', async () => {
      await h.call(undefined, { method: 'GET', path: '/health', headers: { x_forwarded_for: '6.6.6.6', 'X-Forwarded_For': '8.8.8.8' } });
      assert.deepEqual(forwardedFor(), ['127.0.0.1']);
    });
  });
});
