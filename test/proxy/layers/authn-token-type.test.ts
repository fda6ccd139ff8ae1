import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import { loadClientSecrets } from '../../../deploy/dev-issuer/clients.js';
import { startIssuer, type DevIssuer } from '../../../deploy/dev-issuer/issuer.js';
import { signedHeaders } from '../../../proxy/client/signed-headers.js';
import { createProofKey } from '../../../proxy/integrity/proof.js';
import { isPolicyLoadError } from '../../../proxy/policy/errors.js';
import { loadPolicy } from '../../../proxy/policy/load.js';
import { diffServices } from '../../../proxy/policy/tooling/diff.js';
import { rawTokenRequest } from '../../dev-issuer/helpers.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import type { TestIssuer } from '../../helpers/test-issuer.js';
import { tempDirSync } from '../../helpers/temp-dir.js';

const body = rpc('get_document', { document_id: DOC_ID });
const decode = (segment: string | undefined): Record<string, unknown> => JSON.parse(Buffer.from(segment ?? '', 'base64url').toString()) as Record<string, unknown>;

function policyWith(tokenTypes: string): string {
  return writePolicy(`service: token-types
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents${tokenTypes ? `, token_types: ${tokenTypes}` : ''} }
methods:
  get_document: {}
`);
}

describe('authn layer: only access tokens', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: policyWith('') });
  });
  after(() => h.close());

  async function refused(token: string, why: RegExp): Promise<void> {
    const forwarded = h.upstream.requests.length;
    const failures = await h.metric('ca_a2a_authn_failures_total', { reason: 'claim_invalid' });
    const audited = h.audit.events('authentication_failure').length;
    const res = await h.call(body, { token });
    assert.equal(res.status, 401, JSON.stringify(res.json));
    assert.equal(res.json.error?.code, -32010);
    assert.equal(res.json.error?.data?.reason, 'authn.claim_invalid');
    assert.match(String(res.json.error?.message), why);
    assert.equal(h.upstream.requests.length, forwarded, 'must not be forwarded');
    assert.equal(await h.metric('ca_a2a_authn_failures_total', { reason: 'claim_invalid' }), failures + 1);
    const lines = h.audit.events('authentication_failure');
    assert.equal(lines.length, audited + 1);
    assert.equal(lines.at(-1)?.code, 'authn.claim_invalid');
  }

  // Keycloak signs its ID tokens with the realm key, and an audience mapper can put the same aud
  // in them: nothing but the type told one from an access token.
  it('refuses a Keycloak ID token (typ ID) with the right audience, signature and roles, twice: never cached', async () => {
    const token = await h.issuer.sign({ typ: 'ID', realm_access: { roles: ['admin'] } }, { header: { typ: 'JWT' } });
    const hits = await h.metric('ca_a2a_token_cache_total', { result: 'hit' });
    await refused(token, /'typ' claim/);
    await refused(token, /'typ' claim/);
    assert.equal(await h.metric('ca_a2a_token_cache_total', { result: 'hit' }), hits);
  });

  it('refuses refresh and offline tokens, even under an at+jwt header', async () => {
    for (const typ of ['Refresh', 'Offline']) {
      await refused(await h.issuer.sign({ typ }, { header: { typ: 'JWT' } }), /'typ' claim/);
      await refused(await h.issuer.sign({ typ }), /'typ' claim/);
    }
    await refused(await h.issuer.sign({ typ: 'bearer' }, { header: { typ: 'JWT' } }), /'typ' claim/);
    await refused(await h.issuer.sign({ typ: ['Bearer'] }, { header: { typ: 'JWT' } }), /'typ' claim/);
  });

  // RFC 8725 §3.11: an explicitly typed token is that type and no other, whatever its claims say.
  it('refuses a logout token (header typ logout+jwt), with or without a typ claim', async () => {
    const events = { 'http://schemas.openid.net/event/backchannel-logout': {} };
    await refused(await h.issuer.sign({ events }, { header: { typ: 'logout+jwt' } }), /'typ' header/);
    await refused(await h.issuer.sign({ events, typ: 'Logout' }, { header: { typ: 'logout+jwt' } }), /'typ' header/);
    await refused(await h.issuer.sign({ typ: 'Bearer' }, { header: { typ: 'application/logout+jwt' } }), /'typ' header/);
    await refused(await h.issuer.sign({}, { header: { typ: 7 } }), /'typ' header/);
  });

  it('refuses a token marked neither way: no typ at all, or header typ JWT alone', async () => {
    await refused(await h.issuer.sign({}, { header: { typ: undefined } }), /not marked as an access token/);
    await refused(await h.issuer.sign({}, { header: { typ: 'JWT' } }), /not marked as an access token/);
  });

  it("accepts RFC 9068 access tokens (at+jwt in any spelling) and Keycloak's (typ Bearer under header typ JWT)", async () => {
    const accepted = [
      await h.issuer.sign(),
      await h.issuer.sign({}, { header: { typ: 'application/at+jwt' } }),
      await h.issuer.sign({}, { header: { typ: 'AT+JWT' } }),
      await h.issuer.sign({ typ: 'Bearer' }, { header: { typ: 'JWT' } }),
      // Keycloak with "Use RFC 9068 header type" on.
      await h.issuer.sign({ typ: 'Bearer' }),
    ];
    for (const token of accepted) {
      const res = await h.call(body, { token });
      assert.equal(res.status, 200, `${JSON.stringify(decode(token.split('.')[0]))}: ${JSON.stringify(res.json)}`);
    }
  });

  // deploy/keycloak binds every client's tokens to a DPoP key: Keycloak types those typ DPoP.
  it("accepts Keycloak's DPoP-bound access token (typ DPoP, cnf.jkt) sent with its proof", async () => {
    const key = await createProofKey();
    const token = await h.issuer.sign({ typ: 'DPoP', cnf: { jkt: await calculateJwkThumbprint(key.publicJwk) } }, { header: { typ: 'JWT' } });
    const headers = await signedHeaders({ key, accessToken: token, tokenType: 'DPoP', method: 'POST', url: `${h.sidecar.url}/message`, body: JSON.stringify(body) });
    const res = await h.call(body, { headers });
    assert.equal(res.status, 200, JSON.stringify(res.json));
  });
});

describe('authn layer: auth.token_types', () => {
  let h: Harness;
  before(async () => {
    // An Entra ID v2 deployment: access tokens carry header typ JWT and no typ claim.
    h = await startHarness({ policyFile: policyWith('{ header: [at+jwt, JWT], claim: [Bearer] }') });
  });
  after(() => h.close());

  it('accepts the header types listed, and still refuses a typ claim not listed', async () => {
    assert.equal((await h.call(body, { token: await h.issuer.sign({}, { header: { typ: 'JWT' } }) })).status, 200);
    assert.equal((await h.call(body, { token: await h.issuer.sign({}, { header: { typ: 'application/jwt' } }) })).status, 200);
    for (const typ of ['ID', 'DPoP']) {
      const res = await h.call(body, { token: await h.issuer.sign({ typ }, { header: { typ: 'JWT' } }) });
      assert.equal(res.json.error?.data?.reason, 'authn.claim_invalid', typ);
    }
  });

  it('refuses a policy that lists no type at all, naming the field', () => {
    assert.throws(() => loadPolicy(policyWith('{ header: [], claim: [] }')), (error: unknown) => {
      assert.ok(isPolicyLoadError(error));
      assert.match(error.message, /token_types lists no header typ and no typ claim/);
      return true;
    });
  });

  it('points a misspelt token_type at token_types', () => {
    const file = writePolicy(`service: token-types
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents, token_type: [at+jwt] }
`);
    assert.throws(() => loadPolicy(file), (error: unknown) => isPolicyLoadError(error) && error.message.includes("unknown key 'token_type' (did you mean 'token_types'?)"));
  });

  it('is reported by policy diff: a type added is a gain, one removed a loss', () => {
    const before = loadPolicy(policyWith(''));
    const after = loadPolicy(policyWith('{ header: [AT+JWT, JWT], claim: [Bearer] }'));
    const changes = diffServices([before], [after]).map((c) => `${c.change} ${c.kind} ${c.name} ${c.old}→${c.new}`);
    assert.deepEqual(changes, [
      'gained auth token_types.header application/jwt refused→accepted',
      'lost auth token_types.claim DPoP accepted→refused',
    ]);
  });
});

// The dev issuer is oidc-provider: RFC 9068 tokens, header typ at+jwt and no typ claim. Its real
// token, not one shaped after it, must pass.
describe('authn layer: the dev issuer\'s access token', () => {
  let issuer: DevIssuer;
  let h: Harness;
  let dataDir: string;
  before(async () => {
    dataDir = tempDirSync('authn-dev-issuer');
    issuer = await startIssuer({ port: 0, dataDir });
    h = await startHarness({ service: 'archivist', issuer: { issuer: issuer.issuer, close: () => Promise.resolve() } as unknown as TestIssuer });
  });
  after(async () => {
    await h?.close();
    await issuer?.close();
  });

  it('is an at+jwt token and is accepted end to end', async () => {
    const secrets = await loadClientSecrets(dataDir);
    const { status, body: answer } = await rawTokenRequest(`${issuer.issuer}/protocol/openid-connect/token`, 'orchestrator', secrets.orchestrator ?? '', 'basic');
    assert.equal(status, 200);
    const token = String(answer.access_token);
    const [header, payload] = token.split('.');
    assert.equal(decode(header).typ, 'at+jwt');
    assert.equal(decode(payload).typ, undefined);
    const res = await h.call(rpc('archive_document', { document_id: DOC_ID }), { token });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(h.upstream.requests.at(-1)?.headers['x-ca-a2a-client-id'], 'orchestrator');
  });
});
