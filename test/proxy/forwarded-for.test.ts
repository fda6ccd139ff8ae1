import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

// The sidecar passed the client's X-Forwarded-For on as it came: an agent's framework that believes
// its loopback proxy (Rails by default, Express with 'trust proxy' loopback) took whatever the
// client wrote there for the client's address. Envoy and Go's ReverseProxy append the peer.
describe('X-Forwarded-For to the agent', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(`service: forwarded-for-test
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
