import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RequestContext } from '../../proxy/context.js';
import { shadowLayer } from '../../proxy/layers/shadow.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { startSidecar } from '../../proxy/sidecar.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { DOC_ID, RBAC_FILE, SCHEMAS_DIR, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const service = (name: string, rbac: string, extra = ''): string => `service: ${name}
rbac: ${rbac}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
${extra}methods:
  get_document: { params: { $ref: ${SCHEMAS_DIR}document-ref.json } }
  delete_document: { params: { $ref: ${SCHEMAS_DIR}document-ref.json } }
`;

/** The candidate: the shipped rbac with the viewer's get_document moved to delete_document. */
function candidateRbac(): string {
  const dir = tempDirSync('shadow');
  const file = join(dir, 'rbac.yaml');
  const text = readFileSync(RBAC_FILE, 'utf8').replace('allow: [list_documents, get_document, check_status]', 'allow: [list_documents, delete_document, check_status]');
  assert.match(text, /allow: \[list_documents, delete_document, check_status\]/);
  writeFileSync(file, text);
  return file;
}

const doc = { document_id: DOC_ID };

describe('shadow policy (--shadow-policy)', () => {
  let issuer: TestIssuer;
  let h: Harness;
  let shadowFile: string;
  before(async () => {
    issuer = await startTestIssuer();
    shadowFile = writePolicy(service('shadowed', candidateRbac()));
    h = await startHarness({ issuer, policyFile: writePolicy(service('shadowed', RBAC_FILE)), sidecar: { shadowPolicyFile: shadowFile } });
  });
  after(async () => {
    await h.close();
    await issuer.close();
  });
  const as = (...roles: string[]) => issuer.sign({ realm_access: { roles }, sub: `user-${roles.join('-')}` });
  const disagreements = (enforced: string, shadow: string) => h.metric('ca_a2a_shadow_disagreements_total', { service: 'shadowed', enforced, shadow });

  it('forwards what the enforced policy allows and the candidate would deny, and counts and logs it', async () => {
    const forwarded = h.upstream.requests.length;
    const res = await h.call(rpc('get_document', doc), { token: await as('viewer') });
    assert.equal(res.status, 200);
    assert.equal(h.upstream.requests.length, forwarded + 1);
    assert.equal(await disagreements('allow', 'deny'), 1);
    const line = h.audit.events('shadow_disagreement').at(-1);
    assert.equal(line?.enforced, 'allow');
    assert.equal(line?.shadow, 'deny');
    assert.equal(line?.shadow_code, 'authz.method_denied');
    assert.equal(line?.method, 'get_document');
    assert.equal(line?.policy_version, h.sidecar.policy().version);
    assert.notEqual(line?.shadow_version, line?.policy_version);
  });

  it('refuses what the enforced policy denies and the candidate would allow, and counts it the other way', async () => {
    const forwarded = h.upstream.requests.length;
    const res = await h.call(rpc('delete_document', doc), { token: await as('viewer') });
    assert.equal(res.status, 403);
    assert.equal(res.json.error?.data?.reason, 'authz.method_denied');
    assert.equal(h.upstream.requests.length, forwarded);
    assert.equal(await disagreements('deny', 'allow'), 1);
    assert.equal(h.audit.events('shadow_disagreement').at(-1)?.enforced_code, 'authz.method_denied');
  });

  it('counts nothing when both policies agree', async () => {
    const before = h.audit.events('shadow_disagreement').length;
    assert.equal((await h.call(rpc('get_document', doc), { token: await as('admin') })).status, 200);
    assert.equal((await h.call(rpc('delete_document', doc), { token: await as('lambda') })).status, 403);
    assert.equal(h.audit.events('shadow_disagreement').length, before);
    assert.equal(await disagreements('allow', 'deny'), 1);
    assert.equal(await disagreements('deny', 'allow'), 1);
  });

  it('puts the policy version on every audit line of a request', async () => {
    await h.call(rpc('get_document', doc), { token: await as('viewer') });
    await h.call(rpc('get_document', { document_id: 'nope' }), { token: await as('admin') });
    const requestLines = h.audit.lines.filter((line) => line.request_id !== undefined);
    assert.ok(requestLines.length >= 4);
    for (const line of requestLines) assert.equal(line.policy_version, h.sidecar.policy().version, JSON.stringify(line));
  });

  it('counts a broken candidate as a failed reload and keeps the previous one', async () => {
    const candidate = h.audit.events('shadow_disagreement').at(-1)?.shadow_version;
    const reloads = (result: string) => h.metric('ca_a2a_policy_reloads_total', { service: 'shadowed', result });
    const [successes, failures] = [await reloads('success'), await reloads('failure')];
    writeFileSync(shadowFile, 'service: shadowed\nrbac: [not, a, path]\n');
    await h.sidecar.reload();
    assert.equal(await reloads('failure'), failures + 1);
    assert.equal(await reloads('success'), successes);
    assert.ok(h.audit.events('shadow_policy_reload_failed').length >= 1);
    await h.call(rpc('get_document', doc), { token: await as('viewer') });
    assert.equal(h.audit.events('shadow_disagreement').at(-1)?.shadow_version, candidate, 'the previous candidate still decides');
  });

  it('refuses to start with a candidate for another service', async () => {
    // startSidecar directly: nothing else is started that the refusal would leave open.
    await assert.rejects(startSidecar({
      policyFile: writePolicy(service('shadowed', RBAC_FILE)), issuer: issuer.issuer, watchPolicy: false, logDestination: new AuditCapture(),
      shadowPolicyFile: writePolicy(service('other', RBAC_FILE)),
    }), /not 'shadowed'/);
  });
});

describe('shadow layer', () => {
  const policy = loadPolicy(writePolicy(service('unit', RBAC_FILE)));
  const ctx = (roles: string[], method: string) => ({ principal: { roles }, calls: [{ index: 0, id: 1, method, params: doc, tool: undefined, toolArguments: undefined }] }) as unknown as RequestContext;

  it('never returns a verdict, even when reporting throws', () => {
    const layer = shadowLayer(policy, policy, () => {
      throw new Error('observer failed');
    });
    assert.equal(layer.check(ctx(['viewer'], 'delete_document')), undefined);
  });

  it('reports each request where the decisions differ, with both outcomes', () => {
    const denyAll = { ...policy, roles: new Map() } as typeof policy;
    const seen: string[] = [];
    const layer = shadowLayer(policy, denyAll, (_ctx, enforced, shadow) => seen.push(`${enforced.decision}/${shadow.decision}/${shadow.code ?? ''}`));
    layer.check(ctx(['viewer'], 'get_document'));
    layer.check(ctx(['viewer'], 'delete_document'));
    assert.deepEqual(seen, ['allow/deny/authz.no_roles']);
  });

  it('reports the enforced refusal of a dry-run policy as would_deny (it is forwarded), and agrees with a candidate that denies', () => {
    const dryRun = { ...policy, mode: 'dry-run' } as typeof policy;
    const denyAll = { ...policy, roles: new Map() } as typeof policy;
    const reported = (enforced: typeof policy, candidate: typeof policy): string[] => {
      const seen: string[] = [];
      shadowLayer(enforced, candidate, (_ctx, e, c) => seen.push(`${e.decision}/${c.decision}`)).check(ctx(['viewer'], 'delete_document'));
      return seen;
    };
    assert.deepEqual(reported(dryRun, policy), []);
    assert.deepEqual(reported(dryRun, denyAll), []);
    assert.deepEqual(reported(policy, dryRun), []);
    assert.deepEqual(reported(dryRun, loadPolicy(writePolicy(service('unit', candidateRbac())))), ['would_deny/allow']);
  });
});

describe('dry-run mode', () => {
  let issuer: TestIssuer;
  let h: Harness;
  before(async () => {
    issuer = await startTestIssuer();
    h = await startHarness({ issuer, policyFile: writePolicy(service('dry', RBAC_FILE, 'mode: dry-run\nlimits: { max_body_bytes: 512 }\n')) });
  });
  after(async () => {
    await h.close();
    await issuer.close();
  });
  const as = (...roles: string[]) => issuer.sign({ realm_access: { roles } });

  it('forwards a call enforce would refuse, counting would_deny and logging it as not enforced', async () => {
    const forwarded = h.upstream.requests.length;
    const res = await h.call(rpc('delete_document', doc), { token: await as('viewer') });
    assert.equal(res.status, 200);
    assert.equal(h.upstream.requests.length, forwarded + 1);
    assert.equal(await h.metric('ca_a2a_authz_decisions_total', { service: 'dry', method: 'delete_document', role: 'viewer', decision: 'would_deny' }), 1);
    assert.equal(await h.metric('ca_a2a_authz_decisions_total', { service: 'dry', method: 'delete_document', role: 'viewer', decision: 'allow' }), 0, 'a would-deny is not also an allow');
    const line = h.audit.lines.find((entry) => entry.enforced === false && entry.code === 'authz.method_denied');
    assert.ok(line, 'would-deny audit line');
    assert.equal(line.policy_version, h.sidecar.policy().version);
  });

  it('counts one decision for a request enforce would refuse twice (method denied, params invalid)', async () => {
    const res = await h.call(rpc('delete_document', { document_id: 'not-a-uuid' }), { token: await as('viewer', 'lambda') });
    assert.equal(res.status, 200);
    for (const role of ['viewer', 'lambda']) {
      assert.equal(await h.metric('ca_a2a_authz_decisions_total', { service: 'dry', method: 'delete_document', role, decision: 'would_deny' }), role === 'viewer' ? 2 : 1, role);
    }
    assert.equal(h.audit.lines.filter((entry) => entry.enforced === false && entry.method === 'delete_document' && entry.code === 'params.invalid').length, 1, 'each would-be refusal is still logged');
  });

  it('forwards invalid params as would_deny params.invalid', async () => {
    const res = await h.call(rpc('get_document', { document_id: 'not-a-uuid' }), { token: await as('viewer') });
    assert.equal(res.status, 200);
    assert.ok(h.audit.lines.some((entry) => entry.enforced === false && entry.code === 'params.invalid'));
  });

  it('never dry-runs authentication or transport limits', async () => {
    const forwarded = h.upstream.requests.length;
    assert.equal((await h.call(rpc('get_document', doc))).status, 401);
    assert.equal((await h.call(rpc('get_document', doc), { token: 'not.a.jwt' })).status, 401);
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID, pad: 'x'.repeat(1024) }), { token: await as('viewer') })).status, 413);
    assert.equal(h.upstream.requests.length, forwarded);
  });
});
