import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { DOC_ID, minimalPolicy, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';

const DAY = 24 * 3600;

// A revocation is kept for the longest token lifetime (24 h) after the tokens it matches were
// issued, then dropped. A token living longer would be accepted again once it is dropped.
describe('authn layer: only tokens a revocation can name and outlive', () => {
  let clock = Date.now();
  let h: Harness;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(minimalPolicy('token-lifetime')),
      sidecar: { now: () => clock },
    });
  });
  after(() => h.close());
  afterEach(() => {
    clock = Date.now();
  });

  const get = (token: string) => h.call(rpc('get_document', { document_id: DOC_ID }), { token });

  it('never accepts a revoked 48 h token again, also after the revocation was dropped', async () => {
    const iat = Math.floor(clock / 1000);
    const token = await h.issuer.sign({ sub: 'long-lived', iat, exp: iat + 2 * DAY });
    const seen: number[] = [(await get(token)).status];
    await h.sidecar.revoker.revoke({ kind: 'subject', subject: 'long-lived', reason: 'left', revokedBy: 'test' });
    seen.push((await get(token)).status);
    clock += (DAY + 301) * 1000;
    h.sidecar.revocations.prune(clock / 1000); // as every resync does
    seen.push((await get(token)).status);
    assert.deepEqual(seen.slice(1), [401, 401], `statuses: ${seen.join(', ')}`);
  });

  it("refuses a token living longer than 24 h at once, naming 'exp', and accepts one living exactly 24 h", async () => {
    const iat = Math.floor(clock / 1000);
    const long = await get(await h.issuer.sign({ iat, exp: iat + DAY + 1 }));
    assert.equal(long.status, 401, JSON.stringify(long.json));
    assert.equal(long.json.error?.code, -32010);
    assert.equal(long.json.error?.data?.reason, 'authn.claim_invalid');
    assert.match(long.json.error?.message ?? '', /'exp' claim: the token lives longer than 24 h/);
    assert.equal((await get(await h.issuer.sign({ iat, exp: iat + DAY }))).status, 200);
  });

  // The revoker takes a jti or subject of 1..200 characters without NUL (PostgreSQL text cannot
  // hold one): a token it could not revoke is not accepted.
  for (const [name, claims] of [
    ['a 201-character jti', { jti: 'j'.repeat(201) }],
    ['a 201-character sub', { sub: 's'.repeat(201) }],
    ['a NUL in the jti', { jti: 'a\u0000b' }],
    ['a NUL in the sub', { sub: 'a\u0000b' }],
    ['an unpaired surrogate in the jti', { jti: 'a\ud800b' }],
    ['an unpaired surrogate in the sub', { sub: 'a\udc00' }],
    ['a jti of whitespace only', { jti: ' \t ' }],
    ['a sub of whitespace only', { sub: ' ' }],
  ] as const) {
    it(`refuses a token with ${name}, which no revocation could name`, async () => {
      const res = await get(await h.issuer.sign(claims));
      assert.equal(res.status, 401, JSON.stringify(res.json));
      assert.equal(res.json.error?.data?.reason, 'authn.claim_invalid');
      assert.match(res.json.error?.message ?? '', /'(jti|sub)' claim/);
    });
  }

  it('accepts a jti and a sub of 200 characters, and revokes by each', async () => {
    const token = await h.issuer.sign({ jti: 'j'.repeat(200), sub: 's'.repeat(200) });
    assert.equal((await get(token)).status, 200);
    await h.sidecar.revoker.revoke({ kind: 'jti', jti: 'j'.repeat(200), reason: 'r', revokedBy: 'test' });
    assert.equal((await get(token)).status, 401);
  });
});
