import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';

const base = `service: reload-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
methods:
  get_document: {}
`;

async function waitFor(predicate: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail('condition not reached in 5 s');
}

describe('policy hot reload', () => {
  let h: Harness;
  let file: string;
  before(async () => {
    file = writePolicy(base);
    h = await startHarness({ policyFile: file, sidecar: { watchPolicy: true } });
  });
  after(() => h.close());

  const ready = async () => (await (await request(`${h.sidecar.adminUrl}/ready`)).body.json()) as { status: string; policy_version: string };

  it('reports the policy version in /ready and as a metric label', async () => {
    const status = await ready();
    assert.equal(status.status, 'ready');
    assert.equal(status.policy_version, h.sidecar.policy().version);
    assert.equal(await h.metric('ca_a2a_policy_info', { version: status.policy_version }), 1);
  });

  it('swaps in a valid edit: a method added to the file is served without a restart', async () => {
    const token = await h.issuer.sign();
    assert.equal((await h.call(rpc('list_documents', {}), { token })).status, 403);
    const before = (await ready()).policy_version;
    writeFileSync(file, `${base}  list_documents: {}\n`);
    await waitFor(async () => (await ready()).policy_version !== before);
    assert.equal((await h.call(rpc('list_documents', {}), { token })).status, 200);
  });

  it('keeps the old policy on an invalid edit, logs every error with its line, and counts it', async () => {
    const good = readFileSync(file, 'utf8');
    const version = (await ready()).policy_version;
    const failures = await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' });
    writeFileSync(file, good.replace('audience: ca-a2a-agents', 'audiense: ca-a2a-agents').replace('get_document: {}', 'get_document: { parms: {} }'));
    await waitFor(async () => (await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' })) > failures);
    assert.equal((await ready()).policy_version, version);
    const line = h.audit.events('policy_reload_failed').at(-1);
    const problems = line?.problems as string[];
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.ok(problems.some((problem) => /service\.yaml:4:\d+ .*audiense/.test(problem)));
    assert.ok(problems.some((problem) => /service\.yaml:\d+:\d+ .*parms/.test(problem)));
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() })).status, 200);
    writeFileSync(file, good);
  });
});
