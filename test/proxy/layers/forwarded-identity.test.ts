import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, minimalPolicy, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';

// The verified identity reaches the agent in x-ca-a2a-subject, x-ca-a2a-client-id and
// x-ca-a2a-roles. A value a header cannot carry as it is must not become a 502 blamed on the agent
// for every call of that caller, nor reach the agent as another identity.
describe('authn layer: only identities the agent receives exactly as verified', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(minimalPolicy('identity')) });
  });
  after(() => h.close());

  const get = (token: string) => h.call(rpc('get_document', { document_id: DOC_ID }), { token });

  for (const [name, claims, claim] of [
    ['a sub past Latin-1', { sub: '管理者' }, 'sub'],
    ['an emoji in the sub', { sub: 'ops-😀' }, 'sub'],
    ['a line break in the sub', { sub: 'alice\r\nx-ca-a2a-roles: admin' }, 'sub'],
    ['a sub with a blank at its start, which the agent would read trimmed', { sub: ' admin' }, 'sub'],
    ['a tab at the end of the sub', { sub: 'admin\t' }, 'sub'],
    ['a client id past Latin-1', { azp: 'クライアント' }, 'azp'],
    ['a DEL in the client id', { azp: 'lambda\u007f' }, 'azp'],
    ['a role holding a comma, which would read as two', { realm_access: { roles: ['viewer,admin'] } }, 'realm_access.roles'],
    ['a role with a blank at its start', { realm_access: { roles: ['viewer', ' admin'] } }, 'realm_access.roles'],
    ['an empty role', { realm_access: { roles: ['viewer', ''] } }, 'realm_access.roles'],
    ['a role past Latin-1', { realm_access: { roles: ['viewer', '管理者'] } }, 'realm_access.roles'],
  ] as const) {
    it(`refuses a token with ${name}, 401 naming the claim, and forwards nothing`, async () => {
      const before = h.upstream.requests.length;
      const denials = h.audit.lines.length;
      const res = await get(await h.issuer.sign(claims));
      assert.equal(res.status, 401, JSON.stringify(res.json));
      assert.equal(res.json.error?.code, -32010);
      assert.equal(res.json.error?.data?.reason, 'authn.claim_invalid');
      assert.ok((res.json.error?.message ?? '').includes(`'${claim}' claim`), res.json.error?.message);
      assert.equal(h.upstream.requests.length, before);
      const line = h.audit.lines.slice(denials).find((l) => l['event_type'] === 'authentication_failure');
      assert.equal(line?.['code'], 'authn.claim_invalid');
      assert.ok((res.json.error?.message ?? '').endsWith(String(line?.['reason'])), String(line?.['reason']));
    });
  }

  it('passes on Latin-1, inner blanks and roles the RBAC file does not name, exactly', async () => {
    const token = await h.issuer.sign({ sub: 'José Müller', azp: 'client ñ', realm_access: { roles: ['viewer', 'default roles', 'offline_access'] } });
    const res = await get(token);
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const seen = h.upstream.requests.at(-1)?.headers;
    assert.equal(seen?.['x-ca-a2a-subject'], 'José Müller');
    assert.equal(seen?.['x-ca-a2a-client-id'], 'client ñ');
    assert.equal(seen?.['x-ca-a2a-roles'], 'viewer,default roles,offline_access');
  });
});
