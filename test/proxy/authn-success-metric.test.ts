import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import { signedHeaders } from '../../proxy/client/signed-headers.js';
import { createProofKey } from '../../proxy/integrity/proof.js';
import { DOC_ID, rpc, startHarness, type Harness } from '../helpers/harness.js';

// ca_a2a_authn_success_total against a sidecar whose policy requires DPoP (the shipped archivist):
// a verified token whose proof is refused did not authenticate; a body refused for its digest did.
describe('ca_a2a_authn_success_total and DPoP proof refusals', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ service: 'archivist', sidecar: { publicUrls: [] } });
  });
  after(() => h.close());

  const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }));
  const successes = (): Promise<number> => h.metric('ca_a2a_authn_success_total', { service: 'archivist' });
  const signed = async (key: Awaited<ReturnType<typeof createProofKey>>, accessToken: string, tokenType: 'DPoP' | 'Bearer') =>
    signedHeaders({ key, accessToken, tokenType, method: 'POST', url: `${h.sidecar.url}/message`, body });

  it('does not count a bound token presented with a proof from another key (integrity.key_mismatch)', async () => {
    const key = await createProofKey();
    const bound = await h.issuer.sign({ cnf: { jkt: await calculateJwkThumbprint(key.publicJwk, 'sha256') } });
    const before = await successes();
    const stolen = await h.call(body, { headers: await signed(await createProofKey(), bound, 'DPoP') });
    assert.equal(stolen.status, 401);
    assert.equal(stolen.json.error?.data?.reason, 'integrity.key_mismatch');
    assert.equal(await successes(), before, 'presented with another key: not authenticated');

    const own = await h.call(body, { headers: await signed(key, bound, 'DPoP') });
    assert.equal(own.status, 200);
    assert.equal(await successes(), before + 1, 'with its own key: authenticated');
  });

  it('does not count a valid token without the proof the policy requires (integrity.proof_missing)', async () => {
    const before = await successes();
    const res = await h.call(body, { token: await h.issuer.sign(), proof: false });
    assert.equal(res.json.error?.data?.reason, 'integrity.proof_missing');
    assert.equal(await successes(), before);
  });

  it('counts a caller whose proof holds but whose body does not match its digest (400): it did authenticate', async () => {
    const headers = await signed(await createProofKey(), await h.issuer.sign(), 'Bearer');
    const before = await successes();
    const res = await h.call(body.replace(DOC_ID, '00000000-0000-4000-8000-000000000000'), { headers });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.data?.reason, 'integrity.digest_mismatch');
    assert.equal(await successes(), before + 1);
  });
});
