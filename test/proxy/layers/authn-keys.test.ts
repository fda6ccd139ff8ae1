import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { KeySource } from '../../../proxy/auth/key-source.js';
import { createSidecarMetrics } from '../../../proxy/observe/metrics.js';
import type { AuthPolicy } from '../../../proxy/policy/model.js';
import { startTestIssuer, type TestIssuer } from '../../helpers/test-issuer.js';

describe('authn layer: the issuer\'s keys after a failed fetch', () => {
  let issuer: TestIssuer;
  before(async () => {
    issuer = await startTestIssuer();
  });
  after(() => issuer.close());

  // The waits were timed on the wall clock: stepped back after a failure (NTP correcting a clock
  // that ran ahead), every token was answered jwks_unavailable, the IdP never asked, for as long
  // as the step. Timed on an injected monotonic clock, the wait ends when that clock says so.
  it('asks the IdP again once its own clock, not the wall clock, has moved a second past a failure', async () => {
    const auth: AuthPolicy = {
      issuer: issuer.issuer, audience: 'ca-a2a-agents', jwksUri: undefined, algorithms: ['RS256'], clockToleranceSeconds: 30,
      rolesClaim: ['realm_access', 'roles'], tokenTypes: { header: ['application/at+jwt'], claim: ['Bearer'] },
      jwksCacheMaxAgeSeconds: 3600, jwksCooldownSeconds: 30, jwksTimeoutMs: 5000, tokenCacheSize: 10,
    };
    let now = 5_000;
    const keys = new KeySource(auth, createSidecarMetrics(), 'keys-clock', () => now);
    const token = await issuer.sign();
    const verify = () => jwtVerify(token, keys.getKey, { issuer: issuer.issuer, audience: 'ca-a2a-agents' });

    issuer.breakJwks('down');
    await assert.rejects(verify(), { code: 'CA_A2A_KEYS_UNAVAILABLE' });
    const fetched = issuer.fetches.jwks;
    issuer.breakJwks(undefined);
    await assert.rejects(verify(), { code: 'CA_A2A_KEYS_UNAVAILABLE' }, 'not asked again within the second');
    assert.equal(issuer.fetches.jwks, fetched);
    now += 999;
    await assert.rejects(verify(), { code: 'CA_A2A_KEYS_UNAVAILABLE' });
    assert.equal(issuer.fetches.jwks, fetched);
    now += 1;
    assert.equal((await verify()).payload.sub, 'service-account-viewer');
    assert.equal(issuer.fetches.jwks, fetched + 1);
  });
});
