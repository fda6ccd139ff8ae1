import assert from 'node:assert/strict';
import { afterEach, describe, it, type TestContext } from 'node:test';
import { randomUUID } from 'node:crypto';
import { formatProblem, isPolicyLoadError } from '../../proxy/policy/errors.js';
import { loadPolicy } from '../../proxy/policy/load.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { startTestIssuer } from '../helpers/test-issuer.js';

function policy(extraAuth: string): string {
  return `service: jwks-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth:
  issuer: http://placeholder/realms/test
  audience: ca-a2a-agents
${extraAuth}
methods:
  get_document: {}
`;
}

/** Past the shortest cooldown (1 s) since the last fetch: a token with an unknown kid makes the sidecar fetch the keys again. */
const pastCooldown = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1_100));

describe('issuer keys (JWKS)', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('refuses a policy with jwks_cooldown_seconds: 0, under which every token with a forged kid would fetch the keys again', () => {
    const file = writePolicy(policy('  jwks_cooldown_seconds: 0'));
    assert.throws(() => loadPolicy(file), (error: unknown) => {
      assert.ok(isPolicyLoadError(error));
      assert.deepEqual(error.problems.map(formatProblem), [`${file}:7:26 /auth/jwks_cooldown_seconds: must be >= 1`]);
      return true;
    });
  });

  it('follows a key rotation: a token from the new key triggers one refetch and verifies', async () => {
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 1')) });
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() })).status, 200);
    const before = h.issuer.fetches.jwks;
    await h.issuer.rotate({ dropOld: true });
    await pastCooldown();
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(h.issuer.fetches.jwks, before + 1);
  });

  it('stops accepting a token verified earlier once the issuer no longer publishes the key that signed it', async () => {
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 1')) });
    const body = rpc('get_document', { document_id: DOC_ID });
    const old = await h.issuer.sign({ exp: Math.floor(Date.now() / 1000) + 3600 });
    assert.equal((await h.call(body, { token: old })).status, 200, 'verified, and kept in the token cache');
    await h.issuer.rotate({ dropOld: true });
    await pastCooldown();
    assert.equal((await h.call(body, { token: await h.issuer.sign() })).status, 200, 'a token from the new key makes the sidecar fetch the keys again');
    const before = h.upstream.requests.length;
    const res = await h.call(body, { token: old });
    assert.equal(res.json.error?.data?.reason, 'authn.unknown_key', JSON.stringify(res.json));
    assert.equal(h.upstream.requests.length, before, 'must not be forwarded');
  });

  it('keeps its verified tokens across a refetch that finds the same keys (unknown kids cannot flush the cache)', async () => {
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 1')) });
    const body = rpc('get_document', { document_id: DOC_ID });
    const token = await h.issuer.sign();
    // Twice: the first may race the start-up fetch of the keys, and a verification the keys
    // changed under is not kept.
    for (let i = 0; i < 2; i++) assert.equal((await h.call(body, { token })).status, 200);
    const fetches = h.issuer.fetches.jwks;
    await pastCooldown();
    assert.equal((await h.call(body, { token: await h.issuer.sign({}, { kid: randomUUID() }) })).json.error?.data?.reason, 'authn.unknown_key');
    assert.ok(h.issuer.fetches.jwks > fetches, 'the unknown kid made the sidecar fetch the keys again');
    const hits = await h.metric('ca_a2a_token_cache_total', { result: 'hit' });
    assert.equal((await h.call(body, { token })).status, 200);
    assert.equal(await h.metric('ca_a2a_token_cache_total', { result: 'hit' }), hits + 1);
  });

  it('bounds fetches under a flood of random kids (single-flight plus cooldown)', async () => {
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 60')) });
    const harness = h;
    assert.equal((await harness.call(rpc('get_document', { document_id: DOC_ID }), { token: await harness.issuer.sign() })).status, 200);
    const before = harness.issuer.fetches.jwks;
    const tokens = await Promise.all(Array.from({ length: 200 }, () => harness.issuer.sign({}, { kid: randomUUID() })));
    const results = await Promise.all(tokens.map((token) => harness.call(rpc('get_document', { document_id: DOC_ID }), { token })));
    assert.ok(results.every((res) => res.status === 401 && res.json.error?.data?.reason === 'authn.unknown_key'));
    assert.ok(harness.issuer.fetches.jwks - before <= 1, `fetched ${harness.issuer.fetches.jwks - before} times`);
  });

  it('with no keys yet and the JWKS failing, asks the IdP at most once a second, however many tokens arrive', async (t) => {
    const issuer = await startTestIssuer();
    // Closed whatever happens: an open issuer would keep the test process alive past a failure.
    t.after(() => issuer.close());
    issuer.breakJwks('down');
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 60')), issuer });
    const harness = h;
    const started = Date.now();
    const tokens = await Promise.all(Array.from({ length: 40 }, () => issuer.sign({}, { kid: randomUUID() })));
    for (const token of tokens) {
      const res = await harness.call(rpc('get_document', { document_id: DOC_ID }), { token });
      assert.equal(res.json.error?.data?.reason, 'authn.jwks_unavailable');
    }
    const seconds = (Date.now() - started) / 1000;
    // The sidecar's start-up fetch, then one per second at most.
    assert.ok(issuer.fetches.jwks <= 2 + Math.ceil(seconds), `${issuer.fetches.jwks} JWKS fetches in ${seconds} s`);
    issuer.breakJwks(undefined);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal((await harness.call(rpc('get_document', { document_id: DOC_ID }), { token: await issuer.sign() })).status, 200, 'recovers a second after the IdP does');
  });

  it('keeps verifying with cached keys while the IdP is down, past the cache age', async () => {
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cache_max_age_seconds: 1\n  jwks_cooldown_seconds: 1')) });
    const token = await h.issuer.sign();
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    h.issuer.breakJwks('down');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() });
    assert.equal(res.status, 200, JSON.stringify(res.json));
  });

  it('answers 401 jwks_unavailable, counted apart from bad tokens, when the issuer cannot be reached', async () => {
    h = await startHarness({ policyFile: writePolicy(policy('')), sidecar: { issuer: 'http://127.0.0.1:9/realms/test' } });
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() });
    assert.equal(res.status, 401);
    assert.equal(res.json.error?.data?.reason, 'authn.jwks_unavailable');
    assert.equal(res.json.error?.code, -32013);
    assert.equal(await h.metric('ca_a2a_authn_failures_total', { reason: 'jwks_unavailable' }), 1);
    assert.equal(await h.metric('ca_a2a_authn_failures_total', { reason: 'bad_signature' }), 0);
    assert.equal(h.upstream.requests.length, 0);
    // Why is the operator's to read (the audit line), not the caller's: the wire names no address.
    const line = await h.audit.byRequestId(res.headers['x-ca-a2a-request-id'] as string);
    assert.match(String(line?.['cause']), /discovery failed: http:\/\/127\.0\.0\.1:9\/realms\/test\/\.well-known\/openid-configuration: fetch failed: bad port$/);
    assert.doesNotMatch(JSON.stringify(res.json), /127\.0\.0\.1:9|discovery/);
  });

  /**
   * Starts a sidecar (also `h`, closed after each test) whose issuer answers its JWKS `mode`, and
   * checks a token of that issuer is refused jwks_unavailable; returns the issuer, token and sidecar.
   */
  async function withBrokenJwks(t: TestContext, mode: 'garbage' | 'huge') {
    const issuer = await startTestIssuer();
    t.after(() => issuer.close());
    issuer.breakJwks(mode);
    const side = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 1')), issuer });
    h = side;
    const token = await issuer.sign();
    const res = await side.call(rpc('get_document', { document_id: DOC_ID }), { token });
    assert.equal(res.json.error?.data?.reason, 'authn.jwks_unavailable');
    return { issuer, token, side };
  }

  it('refuses a JWKS answer over 1 MiB unread past the limit, counted too_large, and recovers when it is fixed', async (t) => {
    const { issuer, token, side } = await withBrokenJwks(t, 'huge');
    assert.ok(await side.metric('ca_a2a_jwks_fetches_total', { result: 'too_large' }) >= 1);
    assert.equal(side.upstream.requests.length, 0);
    issuer.breakJwks(undefined);
    await pastCooldown(); // past the one-a-second retry with no key cached
    assert.equal((await side.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
  });

  // The discovery promise was reset only when fetching the document failed: a jwks_uri that is no
  // URL threw after it, so that failed discovery was kept and every token refused until a restart.
  it('answers 401 jwks_unavailable while discovery names no absolute jwks_uri, and recovers when it is fixed', async (t) => {
    const issuer = await startTestIssuer();
    t.after(() => issuer.close());
    issuer.breakDiscovery('relative');
    h = await startHarness({ policyFile: writePolicy(policy('  jwks_cooldown_seconds: 1')), issuer });
    const token = await issuer.sign();
    const res = await h.call(rpc('get_document', { document_id: DOC_ID }), { token });
    assert.equal(res.json.error?.data?.reason, 'authn.jwks_unavailable');
    assert.equal(issuer.fetches.jwks, 0);
    issuer.breakDiscovery(undefined);
    await pastCooldown(); // past the one-a-second retry with no key cached
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    assert.equal(h.upstream.requests.length, 1);
  });

  it('answers 401 jwks_unavailable when the JWKS is garbage, counted invalid, and recovers when it is fixed', async (t) => {
    const { issuer, token, side } = await withBrokenJwks(t, 'garbage');
    assert.ok(await side.metric('ca_a2a_jwks_fetches_total', { result: 'invalid' }) >= 1, 'a 200 with garbage is no success');
    assert.equal(await side.metric('ca_a2a_jwks_fetches_total', { result: 'success' }), 1, 'the discovery document only');
    issuer.breakJwks(undefined);
    await pastCooldown(); // past the one-a-second retry with no key cached
    assert.equal((await side.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
  });
});
