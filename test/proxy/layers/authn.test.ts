import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, importJWK, SignJWT, base64url, type CryptoKey } from 'jose';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';

const b64 = (value: unknown): string => base64url.encode(JSON.stringify(value));

describe('authn layer', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ service: 'archivist' });
  });
  after(() => h.close());

  async function refused(token: string, reason: string, status = 401): Promise<void> {
    const before = h.upstream.requests.length;
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token });
    assert.equal(res.status, status, JSON.stringify(res.json));
    assert.equal(res.json.error?.data?.reason, reason);
    assert.equal(res.json.error?.code, status === 401 ? -32010 : -32011);
    assert.equal(h.upstream.requests.length, before, 'must not be forwarded');
  }

  it('forwards a valid token with the verified identity and drops client identity headers', async () => {
    const token = await h.issuer.sign();
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), {
      token,
      headers: { 'x-ca-a2a-subject': 'admin', 'x-ca-a2a-roles': 'admin', 'X-CA-A2A-Client-Id': 'evil', 'proxy-authorization': 'Basic eA==' },
    });
    assert.equal(res.status, 200);
    const seen = h.upstream.requests.at(-1);
    assert.equal(seen?.headers.dpop, undefined, 'nor does the proof');
    assert.equal(seen?.headers['proxy-authorization'], undefined);
    assert.equal(seen?.headers['x-ca-a2a-subject'], 'service-account-viewer');
    assert.equal(seen?.headers['x-ca-a2a-client-id'], 'viewer');
    assert.equal(seen?.headers['x-ca-a2a-roles'], 'viewer');
    assert.match(String(seen?.headers['x-ca-a2a-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(seen?.headers.authorization, undefined, 'the token stays in the sidecar');
  });

  it('drops underscore spellings of the headers it owns, which CGI-style upstreams (WSGI, PHP) read as the same header', async () => {
    const token = await h.issuer.sign();
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), {
      token,
      headers: { x_ca_a2a_subject: 'admin', 'X-CA-A2A_Roles': 'admin', 'x-ca_a2a-client-id': 'evil', proxy_authorization: 'Basic eA==', 'x-app_trace': 'kept' },
    });
    assert.equal(res.status, 200);
    const seen = h.upstream.requests.at(-1);
    for (const name of ['x_ca_a2a_subject', 'x-ca-a2a_roles', 'x-ca_a2a-client-id', 'proxy_authorization']) {
      assert.equal(seen?.headers[name], undefined, `${name} must not reach the upstream`);
    }
    assert.equal(seen?.headers['x-ca-a2a-subject'], 'service-account-viewer');
    assert.equal(seen?.headers['x-app_trace'], 'kept', 'an underscore alone is no reason to drop a header');
  });

  it('refuses a missing token with 401 and -32010, audited and counted', async () => {
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }));
    assert.equal(res.status, 401);
    assert.equal(res.json.error?.data?.reason, 'authn.token_missing');
    assert.ok(h.audit.events('authentication_failure').some((line) => line.code === 'authn.token_missing'));
    assert.ok((await h.metric('ca_a2a_authn_failures_total', { reason: 'token_missing' })) >= 1);
  });

  it('names the request id of a refusal, as its audit line does, so a caller can quote it', async () => {
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: 'not-a-jwt' });
    assert.equal(res.status, 401);
    const id = res.headers['x-ca-a2a-request-id'];
    assert.match(String(id), /^[0-9a-f-]{36}$/);
    const line = h.audit.events('authentication_failure').find((candidate) => candidate.request_id === id);
    assert.equal(line?.code, 'authn.token_malformed');
  });

  it("refuses alg 'none'", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: h.issuer.issuer, aud: 'ca-a2a-agents', sub: 'x', jti: 'j', iat: now, exp: now + 60, realm_access: { roles: ['admin'] } })}.`;
    await refused(token, 'authn.alg_not_allowed');
  });

  it('refuses HS256 signed with the public key (algorithm confusion)', async () => {
    const publicKey = await importJWK(h.issuer.publicJwk(), 'RS256');
    const pem = await exportSPKI(publicKey as CryptoKey);
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ iss: h.issuer.issuer, aud: 'ca-a2a-agents', sub: 'x', jti: 'j', iat: now, exp: now + 60, realm_access: { roles: ['admin'] } })
      .setProtectedHeader({ alg: 'HS256', kid: h.issuer.publicJwk().kid as string })
      .sign(new TextEncoder().encode(pem));
    await refused(token, 'authn.alg_not_allowed');
  });

  it('refuses a token signed by an unknown key', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    await refused(await h.issuer.sign({}, { key: privateKey, kid: 'attacker-kid' }), 'authn.unknown_key');
  });

  it('refuses a kid pointing at a published key when another key signed it', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    await refused(await h.issuer.sign({}, { key: privateKey }), 'authn.bad_signature');
  });

  for (const header of ['jku', 'jwk', 'x5u', 'x5c'] as const) {
    it(`refuses an attacker '${header}' header without fetching it`, async () => {
      const value = header === 'jwk' ? h.issuer.publicJwk() : header === 'x5c' ? ['MIIB'] : 'http://127.0.0.1:1/keys';
      await refused(await h.issuer.sign({}, { header: { [header]: value } }), 'authn.header_not_allowed');
    });
  }

  it('refuses an expired token', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(await h.issuer.sign({ iat: now - 600, exp: now - 120 }), 'authn.token_expired');
  });

  it('accepts a token expired by less than the leeway', async () => {
    const now = Math.floor(Date.now() / 1000);
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign({ iat: now - 300, exp: now - 10 }) });
    assert.equal(res.status, 200);
  });

  it('refuses nbf in the future', async () => {
    await refused(await h.issuer.sign({ nbf: Math.floor(Date.now() / 1000) + 600 }), 'authn.claim_invalid');
  });

  it('refuses iat in the future beyond the leeway', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(await h.issuer.sign({ iat: now + 600, exp: now + 900 }), 'authn.claim_invalid');
  });

  it('refuses a wrong audience', async () => {
    await refused(await h.issuer.sign({ aud: 'someone-else' }), 'authn.claim_invalid');
  });

  it('refuses an audience list holding a non-string entry beside the expected audience (RFC 7519 §4.1.3)', async () => {
    // JWTPayload types aud as strings: the hostile entries need the cast.
    for (const entry of [{ evil: true }, 7, null]) {
      await refused(await h.issuer.sign({ aud: ['ca-a2a-agents', entry] as unknown as string[] }), 'authn.claim_invalid');
    }
  });

  it('accepts an audience list of strings naming the expected audience', async () => {
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign({ aud: ['account', 'ca-a2a-agents'] }) });
    assert.equal(res.status, 200);
  });

  it('refuses a wrong issuer', async () => {
    await refused(await h.issuer.sign({ iss: 'http://127.0.0.1:1/realms/evil' }), 'authn.claim_invalid');
  });

  it('refuses a token without exp', async () => {
    await refused(await h.issuer.sign({}, { omit: ['exp'] }), 'authn.claim_invalid');
  });

  // Revocation and replay need the jti, revoke-subject and rate limits the sub, revoke-before the iat.
  for (const claim of ['jti', 'sub', 'iat']) {
    it(`refuses a token without ${claim}`, async () => {
      await refused(await h.issuer.sign({}, { omit: [claim] }), 'authn.claim_invalid');
    });
  }

  it('refuses a token without roles with 403', async () => {
    await refused(await h.issuer.sign({ realm_access: undefined }), 'authz.no_roles', 403);
  });

  it('refuses two Authorization headers', async () => {
    const token = await h.issuer.sign();
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { headers: { authorization: [`Bearer ${token}`, `Bearer ${token}`] } });
    assert.equal(res.status, 401);
    assert.equal(res.json.error?.data?.reason, 'authn.token_location');
  });

  it('refuses a token in the query string, even with a valid header', async () => {
    const token = await h.issuer.sign();
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token, path: `/message?access_token=${token}` });
    assert.equal(res.status, 401);
    assert.equal(res.json.error?.data?.reason, 'authn.token_location');
  });

  it('refuses a token parameter under every spelling a framework reads as one, and lets other parameters through', async () => {
    const token = await h.issuer.sign();
    for (const query of ['access%5Ftoken=x', 'a=1&%61ccess_token=x', 'ACCESS_TOKEN[]=x', 'a=1;token=x', 'access.token=x', 'id+token=x', 'access_token%=x&access%5ftoken=y']) {
      const before = h.upstream.requests.length;
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token, path: `/message?${query}` });
      assert.equal(res.json.error?.data?.reason, 'authn.token_location', query);
      assert.equal(h.upstream.requests.length, before, `${query} must not be forwarded`);
    }
    for (const query of ['tokens=x', 'q=access_token', 'page=2&token_type=bearer']) {
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token, path: `/message?${query}` });
      assert.equal(res.status, 200, query);
    }
  });

  it('refuses a malformed token and a non-Bearer scheme', async () => {
    await refused('not-a-jwt', 'authn.token_malformed');
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    assert.equal(res.json.error?.data?.reason, 'authn.token_missing');
  });

  it('verifies a reused token once (cache hit counted)', async () => {
    const token = await h.issuer.sign();
    const hits = await h.metric('ca_a2a_token_cache_total', { result: 'hit' });
    for (let i = 0; i < 3; i++) assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    assert.equal(await h.metric('ca_a2a_token_cache_total', { result: 'hit' }), hits + 2);
  });

  // success / (success + failures) is the seed's auth success rate (CaA2aAuthSuccessRateLow): a
  // request refused for its token must not count on both sides.
  it('counts a token that verifies but is refused as an authentication failure only', async () => {
    const body = rpc('get_document', { document_id: DOC_ID });
    const successes = await h.metric('ca_a2a_authn_success_total');
    const failures = await h.metric('ca_a2a_authn_failures_total', { reason: 'dpop_required' })
      + await h.metric('ca_a2a_authn_failures_total', { reason: 'token_malformed' })
      + await h.metric('ca_a2a_authn_failures_total', { reason: 'token_revoked' });
    const bound = await h.issuer.sign({ cnf: { jkt: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' } });
    assert.equal((await h.call(body, { token: bound, proof: false })).json.error?.data?.reason, 'authn.dpop_required');
    const unbound = await h.issuer.sign();
    assert.equal((await h.call(body, { headers: { authorization: `DPoP ${unbound}` } })).json.error?.data?.reason, 'authn.token_malformed');
    const revoked = await h.issuer.sign();
    const { jti } = JSON.parse(Buffer.from(revoked.split('.')[1] as string, 'base64url').toString()) as { jti: string };
    await h.sidecar.revoker.revoke({ kind: 'jti', jti, reason: 'test', revokedBy: 'test' });
    assert.equal((await h.call(body, { token: revoked })).json.error?.data?.reason, 'authn.token_revoked');
    assert.equal(await h.metric('ca_a2a_authn_failures_total', { reason: 'dpop_required' })
      + await h.metric('ca_a2a_authn_failures_total', { reason: 'token_malformed' })
      + await h.metric('ca_a2a_authn_failures_total', { reason: 'token_revoked' }), failures + 3);
    assert.equal(await h.metric('ca_a2a_authn_success_total'), successes, 'none of the three authenticated');
    assert.equal((await h.call(body, { token: await h.issuer.sign() })).status, 200);
    assert.equal(await h.metric('ca_a2a_authn_success_total'), successes + 1);
  });

  it('never writes a whole token in a log line', async () => {
    const token = await h.issuer.sign({ exp: 1 });
    await h.call(rpc('get_document', { document_id: DOC_ID }), { token });
    const signature = token.split('.')[2] as string;
    assert.ok(!h.audit.text().includes(signature));
    assert.ok(!h.audit.text().includes(token));
  });
});

describe('authn layer: the verified-token cache', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(`service: token-cache
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents, clock_tolerance_seconds: 0 }
methods:
  get_document: {}
`) });
  });
  after(() => h.close());

  it('refuses a cached token once it has expired', async () => {
    const exp = Math.ceil(Date.now() / 1000) + 2; // at least 2 s to verify and cache it
    const token = await h.issuer.sign({ exp });
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200, 'verified and cached');
    // Waits for the wall clock to pass exp (no leeway here), not for a guessed duration.
    while (Date.now() < exp * 1000) await new Promise((resolve) => setTimeout(resolve, 50));
    const before = h.upstream.requests.length;
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token });
    assert.equal(res.status, 401, JSON.stringify(res.json));
    assert.equal(res.json.error?.data?.reason, 'authn.token_expired');
    assert.equal(h.upstream.requests.length, before, 'must not be forwarded');
  });

  // jose decodes base64url leniently (whitespace, '=' padding, non-zero unused bits): without a
  // check, each such spelling of one token verified and took a cache entry of its own, up to
  // token_cache_size copies as long as the headers allow (16 KB each), pushing out every other
  // caller's tokens.
  it('accepts one spelling of a token: the same signature with whitespace, padding or stray low bits is refused, not cached anew', async () => {
    const token = await h.issuer.sign();
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    const [header, payload, signature = ''] = token.split('.');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature.at(-1) as string);
    assert.equal(signature.length % 4, 2, 'an RS256 signature leaves 4 unused bits in its last character');
    const spellings = {
      whitespace: `${header}.${payload}.${signature.slice(0, 10)}${' '.repeat(1000)}${signature.slice(10)}`,
      padding: `${token}==`,
      'stray low bits': `${header}.${payload}.${signature.slice(0, -1)}${alphabet[last ^ 1]}`,
    };
    for (const [name, spelling] of Object.entries(spellings)) {
      const before = h.upstream.requests.length;
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: spelling });
      assert.equal(res.json.error?.data?.reason, 'authn.token_malformed', `${name}: ${JSON.stringify(res.json)}`);
      assert.equal(h.upstream.requests.length, before, `${name}: must not be forwarded`);
    }
  });

  // Found by test/proxy/fuzz.test.ts: a signature of 4n+1 characters is no base64url at all, and
  // the spelling check's decode threw: a truncated token was a 500 internal error, logged as a bug.
  it('refuses a token whose signature is cut to a length no base64url has as malformed, not as an internal error', async () => {
    const token = await h.issuer.sign();
    const signature = token.slice(token.lastIndexOf('.') + 1);
    const cut = token.slice(0, token.length - ((signature.length % 4) + 3) % 4);
    assert.equal(cut.slice(cut.lastIndexOf('.') + 1).length % 4, 1);
    const errors = h.audit.events('internal_error').length;
    for (const spelling of [cut, `${token.slice(0, token.lastIndexOf('.') + 1)}A`]) {
      const before = h.upstream.requests.length;
      const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: spelling });
      assert.equal(res.status, 401, JSON.stringify(res.json));
      assert.equal(res.json.error?.data?.reason, 'authn.token_malformed');
      assert.equal(h.upstream.requests.length, before, 'must not be forwarded');
    }
    assert.equal(h.audit.events('internal_error').length, errors, 'no internal error logged');
  });
});
