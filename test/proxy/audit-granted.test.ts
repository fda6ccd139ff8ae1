import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

const policy = (granted: boolean) => writePolicy(`service: audit-granted
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
audit: { granted: ${granted} }
methods:
  get_document: {}
  delete_document: {}
`);

describe('audit.granted in the service policy', () => {
  let quiet: Harness;
  let full: Harness;

  before(async () => {
    quiet = await startHarness({ policyFile: policy(false) });
    full = await startHarness({ policyFile: policy(true) });
  });
  after(async () => {
    await Promise.all([quiet?.close(), full?.close()]);
  });

  it('false: an allowed request is forwarded and counted, with no audit line; a refusal still has its line', async () => {
    const token = await quiet.issuer.sign();
    assert.equal((await quiet.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    assert.equal((await quiet.call(rpc('delete_document', { document_id: DOC_ID }), { token })).status, 403);
    assert.equal(quiet.upstream.requests.length, 1, 'the allowed request reached the upstream, the refused one did not');
    const lines = quiet.audit.events('authorization');
    assert.deepEqual(lines.map((line) => [line.granted, line.method]), [[false, 'delete_document']]);
    assert.equal(await quiet.metric('ca_a2a_authz_decisions_total', { method: 'get_document', role: 'viewer', decision: 'allow' }), 1);
    assert.equal(await quiet.metric('ca_a2a_requests_total', { method: 'get_document', outcome: 'forwarded', status: '200' }), 1);
  });

  it('true (the default): every allowed request has its line', async () => {
    const token = await full.issuer.sign();
    assert.equal((await full.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    const lines = full.audit.events('authorization');
    assert.deepEqual(lines.map((line) => [line.granted, line.method]), [[true, 'get_document']]);
  });
});
