import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { contentDigest } from '../../../proxy/integrity/digest.js';
import { createProof, createProofKey } from '../../../proxy/integrity/proof.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../../helpers/test-issuer.js';
import { createTestSchema, dropPrefix, REDIS_URL, TcpRelay, uniquePrefix } from './helpers.js';

describe('replay protection on Redis', () => {
  const prefix = uniquePrefix();
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let issuer: TestIssuer;
  let relay: TcpRelay;
  let a: Harness;
  let b: Harness;
  let viaRelay: Harness;
  let lenient: Harness;

  before(async () => {
    schema = await createTestSchema();
    issuer = await startTestIssuer();
    const stores = { redisUrl: REDIS_URL, databaseUrl: schema.urlFor(), keyPrefix: prefix };
    a = await startHarness({ service: 'archivist', issuer, sidecar: { stores } });
    b = await startHarness({ service: 'archivist', issuer, sidecar: { stores } });
    relay = new TcpRelay(Number(new URL(REDIS_URL).port || 6379));
    await relay.start();
    viaRelay = await startHarness({ service: 'archivist', issuer, sidecar: { stores: { ...stores, redisUrl: `redis://127.0.0.1:${relay.port}` } } });
    const allowPolicy = writePolicy(`service: replay-allow
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
integrity: { dpop: required, replay_store_failure: allow }
methods:
  get_document: {}
`);
    lenient = await startHarness({ policyFile: allowPolicy, issuer, sidecar: { stores: { ...stores, redisUrl: `redis://127.0.0.1:${relay.port}` } } });
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close(), viaRelay?.close(), lenient?.close()]);
    await relay?.stop();
    await issuer?.close();
    await schema?.drop();
    await dropPrefix(prefix);
  });

  const body = JSON.stringify(rpc('get_document', { document_id: DOC_ID }));

  /** One proof, addressed to `url` but sent to `target` (replicas behind one public URL). */
  async function signed(url: string): Promise<Record<string, string>> {
    const token = await issuer.sign();
    const key = await createProofKey();
    return { authorization: `Bearer ${token}`, dpop: await createProof(key, { htm: 'POST', htu: url, accessToken: token, body }), 'content-digest': contentDigest(body) };
  }

  it('accepts a proof once across two replicas sharing Redis: the second use, on the other replica, is 409', async () => {
    // Behind a load balancer both replicas share one public URL; here each is addressed by its
    // own Host, so the same proof is valid for both only when they agree on the htu.
    const headers = await signed(`${a.sidecar.url}/message`);
    assert.equal((await a.call(body, { headers })).status, 200);
    const count = b.upstream.requests.length;
    const res = await b.call(body, { headers: { ...headers, host: new URL(a.sidecar.url).host } });
    assert.equal(res.status, 409, JSON.stringify(res.json));
    assert.equal(res.json.error?.data?.reason, 'replay.duplicate_id');
    assert.equal(b.upstream.requests.length, count, 'never forwarded');
  });

  it('fails closed with 503 and -32017 when Redis is unreachable (open only where the policy allows it), and recovers', async () => {
    await relay.stop();
    const failures = () => viaRelay.audit.lines.filter((line) => line.event_type === 'store_failure' && line.store === 'replay');
    const logged = failures().length;
    for (let i = 0; i < 2; i++) assert.equal((await viaRelay.call(body, { headers: await signed(`${viaRelay.sidecar.url}/message`) })).status, 503);
    const headers = await signed(`${viaRelay.sidecar.url}/message`);
    const res = await viaRelay.call(body, { headers });
    assert.equal(res.status, 503);
    // Each refusal has its own audit line; the outage has one store_failure line, not one per request.
    assert.equal(failures().length, logged + 1);
    assert.equal(await viaRelay.metric('ca_a2a_store_errors_total', { store: 'replay', fallback: 'deny' }), 3);
    assert.equal(res.json.error?.code, -32017);
    assert.equal(res.json.error?.data?.reason, 'replay.store_unavailable');
    assert.equal(res.json.error?.message, 'replay protection unavailable', '5xx carries no detail');
    assert.ok((await viaRelay.metric('ca_a2a_store_errors_total', { store: 'replay', fallback: 'deny' })) >= 1);
    // A service whose policy says replay_store_failure: allow forwards instead, and counts it.
    const allowed = await lenient.call(body, { headers: await signed(`${lenient.sidecar.url}/message`) });
    assert.equal(allowed.status, 200, JSON.stringify(allowed.json));
    assert.equal(await lenient.metric('ca_a2a_store_errors_total', { store: 'replay', fallback: 'allow' }), 1);
    await relay.start();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = (await viaRelay.call(body, { headers: await signed(`${viaRelay.sidecar.url}/message`) })).status;
    }
    assert.equal(status, 200);
    assert.ok(viaRelay.audit.lines.some((line) => line.event_type === 'store_recovered' && line.store === 'replay'), 'the end of the outage is logged');
  });
});
