import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isPolicyLoadError } from '../../../proxy/policy/errors.js';
import { loadPolicy } from '../../../proxy/policy/load.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../../helpers/test-issuer.js';

describe('authz layer (shipped policies)', () => {
  let issuer: TestIssuer;
  let archivist: Harness;
  let orchestrator: Harness;
  before(async () => {
    issuer = await startTestIssuer();
    archivist = await startHarness({ service: 'archivist', issuer });
    orchestrator = await startHarness({ service: 'orchestrator', issuer });
  });
  after(async () => {
    await archivist.close();
    await orchestrator.close();
    await issuer.close();
  });

  const as = (...roles: string[]) => issuer.sign({ realm_access: { roles } });
  const doc = { document_id: DOC_ID };

  it('lets the viewer list and get documents', async () => {
    const token = await as('viewer');
    assert.equal((await archivist.call(rpc('list_documents', {}), { token })).status, 200);
    assert.equal((await archivist.call(rpc('get_document', doc), { token })).status, 200);
  });

  it('refuses the viewer delete_document with 403, -32011, an audit line with granted=false and a metric', async () => {
    const count = archivist.upstream.requests.length;
    const res = await archivist.call(rpc('delete_document', doc), { token: await as('viewer') });
    assert.equal(res.status, 403);
    assert.equal(res.json.error?.code, -32011);
    assert.equal(res.json.error?.data?.reason, 'authz.method_denied');
    assert.equal(archivist.upstream.requests.length, count);
    const line = archivist.audit.events('authorization').find((entry) => entry.granted === false && entry.method === 'delete_document');
    assert.ok(line, 'audit line');
    assert.equal(line.subject, 'service-account-viewer');
    assert.ok((await archivist.metric('ca_a2a_authz_decisions_total', { method: 'delete_document', role: 'viewer', decision: 'deny' })) >= 1);
  });

  it('logs granted authorizations with the policy version', async () => {
    await archivist.call(rpc('get_document', doc), { token: await as('viewer') });
    const line = archivist.audit.events('authorization').findLast((entry) => entry.granted === true);
    assert.equal(line?.policy_version, archivist.sidecar.policy().version);
  });

  it('lets the orchestrator archive but explicitly denies it delete_document, whatever other role it holds', async () => {
    assert.equal((await archivist.call(rpc('archive_document', doc), { token: await as('orchestrator') })).status, 200);
    const res = await archivist.call(rpc('delete_document', doc), { token: await as('orchestrator', 'admin') });
    assert.equal(res.status, 403);
    assert.equal(res.json.error?.data?.reason, 'authz.explicit_deny');
  });

  it('gives admin every method the service serves', async () => {
    const token = await as('admin');
    for (const method of ['archive_document', 'get_document', 'delete_document']) {
      assert.equal((await archivist.call(rpc(method, doc), { token })).status, 200, method);
    }
  });

  it('refuses a method the service does not name, even to admin', async () => {
    const token = await as('admin');
    for (const method of ['process_document', 'Get_Document', 'get_document ', 'admin/shutdown']) {
      const res = await archivist.call(rpc(method, doc), { token });
      assert.equal(res.status, 403, method);
      assert.equal(res.json.error?.data?.reason, 'authz.method_unknown');
    }
  });

  it('refuses a batch that mixes allowed and denied calls, naming the element', async () => {
    const count = archivist.upstream.requests.length;
    const res = await archivist.call([rpc('get_document', doc, 1), rpc('delete_document', doc, 2)], { token: await as('viewer') });
    assert.equal(res.status, 403);
    assert.equal(res.json.error?.data?.element, 1);
    assert.equal(res.json.error?.data?.method, 'delete_document');
    assert.equal(archivist.upstream.requests.length, count);
  });

  it('refuses roles the policy does not know', async () => {
    const res = await archivist.call(rpc('get_document', doc), { token: await as('superuser', 'root') });
    assert.equal(res.status, 403);
    assert.equal(res.json.error?.data?.reason, 'authz.no_roles');
  });

  it('gives lambda upload and process on the orchestrator and nothing else', async () => {
    const token = await as('lambda');
    assert.equal((await orchestrator.call(rpc('process_document', doc), { token })).status, 200);
    assert.equal((await orchestrator.call(rpc('check_status', doc), { token })).status, 403);
  });
});

describe('authz layer: tools/call reads its tool only as per_tool', () => {
  // With the default access (rbac) a role allowing tools/call (admin's '*') called any tool,
  // named under tools or not, and /call_tool with it: the tool was never looked at.
  const mcpPolicy = (access: string): string => `service: tools-access
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
endpoints: [{ path: /mcp, kind: jsonrpc }, { path: /call_tool, kind: call_tool }]
methods:
  tools/call: ${access}
tools:
  s3_get_object: {}
`;

  it('refuses to load a policy whose idle_timeout_ms is not above its upstream_timeout_ms, naming both', () => {
    const limited = (limits: string): string => mcpPolicy('{ access: per_tool }').replace('methods:', `limits: { ${limits} }\nmethods:`);
    assert.throws(() => loadPolicy(writePolicy(limited('upstream_timeout_ms: 60000, idle_timeout_ms: 60000'))), (error: unknown) => {
      assert.ok(isPolicyLoadError(error), String(error));
      assert.match(error.problems.map((p) => `${p.path} ${p.message}`).join('\n'), /\/limits\/idle_timeout_ms idle_timeout_ms \(60000\) must be above upstream_timeout_ms \(60000\)/);
      return true;
    });
    // The default (300 s) against an upstream timeout above it.
    assert.throws(() => loadPolicy(writePolicy(limited('upstream_timeout_ms: 400000'))), /must be above upstream_timeout_ms/);
    assert.doesNotThrow(() => loadPolicy(writePolicy(limited('upstream_timeout_ms: 60000, idle_timeout_ms: 60001'))));
  });

  it('refuses to load a policy whose tools/call is not per_tool, naming where', () => {
    for (const access of ['{}', '{ access: rbac }', '{ access: tool_holders }']) {
      assert.throws(() => loadPolicy(writePolicy(mcpPolicy(access))), (error: unknown) => {
        assert.ok(isPolicyLoadError(error), String(error));
        const problem = error.problems.find((p) => p.path === '/methods/tools~1call/access' || p.path === '/methods/tools/call/access');
        assert.ok(problem, JSON.stringify(error.problems));
        assert.match(problem.message, /tools\/call must be per_tool/);
        return true;
      }, access);
    }
    assert.doesNotThrow(() => loadPolicy(writePolicy(mcpPolicy('{ access: per_tool }'))));
  });
});
