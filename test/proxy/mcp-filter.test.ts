import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RBAC_FILE, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

/**
 * tools/list filtering (proxy/mcp-filter.ts) against an upstream that answers something other
 * than a well-formed list: the caller never sees a tool its roles may not call, and the sidecar
 * answers (and keeps serving) whatever the upstream sent.
 */
const POLICY = `service: mcp-filter-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
methods:
  tools/list: { access: tool_holders }
  tools/call: { access: per_tool }
tools:
  s3_get_object: {}
  s3_put_object: {}
`;

// The validator may call s3_get_object; s3_put_object is denied to it (policies/rbac.yaml).
const LISTED = [{ name: 's3_get_object' }, { name: 's3_put_object' }];

describe('tools/list filtering of unexpected upstream answers', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(POLICY) });
    token = await h.issuer.sign({ realm_access: { roles: ['validator'] } });
  });
  after(() => h.close());
  const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' };

  it('answers a tools/list result that is null, an array or a string without crashing, and shows no denied tool', async () => {
    for (const result of [null, LISTED, 'text']) {
      h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result } }));
      const res = await h.call(list, { token });
      assert.equal(res.status, 200, JSON.stringify(result));
      assert.ok(!JSON.stringify(res.json).includes('s3_put_object'), `${JSON.stringify(result)} → ${JSON.stringify(res.json)}`);
      assert.deepEqual(res.json.result, { tools: [] });
    }
    h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: { tools: LISTED } } }));
    const res = await h.call(list, { token });
    assert.deepEqual(res.json.result, { tools: [{ name: 's3_get_object' }] }, 'the sidecar still serves');
    h.upstream.respond(undefined);
  });

});
