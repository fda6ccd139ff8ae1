import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';

const DAY = 24 * 3600;

// A revocation is kept for the longest token lifetime (24 h) after the tokens it matches were
// issued, then dropped. A token living longer would be accepted again once it is dropped.
describe('authn layer: tokens living longer than revocations are kept', () => {
  let clock = Date.now();
  let h: Harness;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(`service: token-lifetime
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
methods:
  get_document: {}
`),
      sidecar: { now: () => clock },
    });
  });
  after(() => h.close());

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
});
