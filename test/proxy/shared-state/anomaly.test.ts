import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openRevocationBackend } from '../../../proxy/stores/backends.js';
import { Revoker } from '../../../proxy/stores/revoker.js';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../../helpers/test-issuer.js';
import { answerFrom, createTestSchema, dropPrefix, postFrom, readOnlyRevocationRole, REDIS_URL, TcpRelay, uniquePrefix, until } from './helpers.js';

const policy = (anomaly: string) => writePolicy(`service: anomaly-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
anomaly: ${anomaly}
methods:
  get_document: {}
`);
const body = rpc('get_document', { document_id: DOC_ID });

describe('stolen-token detection (one jti from several source addresses)', () => {
  const prefix = uniquePrefix();
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let issuer: TestIssuer;
  let watch: Harness;
  let replica: Harness;
  let revoking: Harness;

  before(async () => {
    schema = await createTestSchema();
    issuer = await startTestIssuer();
    const stores = { redisUrl: REDIS_URL, databaseUrl: schema.urlFor(), keyPrefix: prefix };
    const watchFile = policy('{ max_sources: 3, trusted_proxies: [127.0.0.9] }');
    watch = await startHarness({ policyFile: watchFile, issuer, sidecar: { stores } });
    replica = await startHarness({ policyFile: watchFile, issuer, sidecar: { stores } });
    revoking = await startHarness({ policyFile: policy('{ max_sources: 3, auto_revoke: true }'), issuer, sidecar: { stores } });
  });
  after(async () => {
    await Promise.all([watch?.close(), replica?.close(), revoking?.close()]);
    await issuer?.close();
    await schema?.drop();
    await dropPrefix(prefix);
  });

  it('raises the alarm (audit line + metric) when a token comes from a 4th address, across replicas, and still serves', async () => {
    const token = await issuer.sign({ sub: 'traveller' });
    const statuses = [];
    for (const [i, source] of ['127.0.0.2', '127.0.0.3', '127.0.0.2', '127.0.0.4'].entries()) {
      statuses.push(await postFrom((i % 2 ? replica : watch).sidecar.url, source, token, body));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(watch.audit.events('anomalous_token_usage').length + replica.audit.events('anomalous_token_usage').length, 0, 'three addresses are allowed');
    statuses.push(await postFrom(replica.sidecar.url, '127.0.0.5', token, body));
    assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
    await until(async () => replica.audit.events('anomalous_token_usage').length === 1);
    const line = replica.audit.events('anomalous_token_usage')[0];
    assert.equal(line?.subject, 'traveller');
    assert.equal(line?.source_ip, '127.0.0.5');
    assert.equal(line?.sources, 4);
    assert.equal(line?.action, 'logged');
    assert.equal(await replica.metric('ca_a2a_anomalous_token_usage_total', { action: 'logged' }), 1);
    assert.equal((await postFrom(replica.sidecar.url, '127.0.0.6', token, body)), 200, 'logged only: the token keeps working');
  });

  it('never believes X-Forwarded-For from an untrusted peer, and takes the right-most untrusted hop behind a trusted proxy', async () => {
    const token = await issuer.sign({ sub: 'spoofer' });
    for (const fake of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']) {
      assert.equal(await postFrom(watch.sidecar.url, '127.0.0.2', token, body, { 'x-forwarded-for': fake }), 200);
    }

    const proxied = await issuer.sign({ sub: 'behind-lb' });
    for (const client of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) {
      // The client wrote a left-most entry; the trusted proxy (127.0.0.9) appended the real one.
      assert.equal(await postFrom(watch.sidecar.url, '127.0.0.9', proxied, body, { 'x-forwarded-for': `203.0.113.7, ${client}` }), 200);
    }
    await until(async () => watch.audit.events('anomalous_token_usage').some((line) => line.subject === 'behind-lb'));
    const line = watch.audit.events('anomalous_token_usage').find((l) => l.subject === 'behind-lb');
    assert.equal(line?.source_ip, '192.0.2.4');
    // The spoofer's source addresses went to the store before these, on the same connection: had
    // its header been believed, its alarm would be in by now.
    assert.ok(!watch.audit.events('anomalous_token_usage').some((l) => l.subject === 'spoofer'), 'one real peer, whatever the header says');
    // The audit lines name the client a trusted proxy forwarded for, beside the peer; never the spoofer's claim.
    const granted = (subject: string) => watch.audit.events('authorization').filter((l) => l.subject === subject);
    assert.deepEqual(granted('behind-lb').map((l) => [l.source_ip, l.client_ip]), ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'].map((client) => ['127.0.0.9', client]));
    assert.deepEqual(granted('spoofer').map((l) => [l.source_ip, l.client_ip]), Array.from({ length: 4 }, () => ['127.0.0.2', undefined]));
  });

  it('believes a proxy named at start (--trusted-proxy, CA_A2A_TRUSTED_PROXIES) beside the policy, which names none', async () => {
    const deployed = await startHarness({ policyFile: policy('{ max_sources: 3 }'), issuer, sidecar: { trustedProxies: ['127.0.0.8/31'] } });
    try {
      const token = await issuer.sign({ sub: 'through-alb' });
      assert.equal(await postFrom(deployed.sidecar.url, '127.0.0.9', token, body, { 'x-forwarded-for': '198.51.100.7' }), 200);
      assert.equal(await postFrom(deployed.sidecar.url, '127.0.0.2', token, body, { 'x-forwarded-for': '198.51.100.8' }), 200);
      const lines = deployed.audit.events('authorization').filter((l) => l.subject === 'through-alb');
      assert.deepEqual(lines.map((l) => [l.source_ip, l.client_ip]), [['127.0.0.9', '198.51.100.7'], ['127.0.0.2', undefined]]);
      assert.deepEqual(deployed.sidecar.policy().anomaly.trustedProxies, ['127.0.0.8/31']);
    } finally {
      await deployed.close();
    }
  });

  it('with auto_revoke revokes the token durably: every sidecar then refuses it', async () => {
    const token = await issuer.sign({ sub: 'victim' });
    for (const source of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) assert.equal(await postFrom(revoking.sidecar.url, source, token, body), 200);
    await until(async () => (await postFrom(watch.sidecar.url, '127.0.0.2', token, body)) === 401);
    assert.equal(await postFrom(revoking.sidecar.url, '127.0.0.2', token, body), 401);
    const line = revoking.audit.events('anomalous_token_usage')[0];
    assert.equal(line?.action, 'revoked');
    const revoked = revoking.audit.events('token_revoked')[0];
    assert.equal(revoked?.revoked_by, 'sidecar:anomaly-test');
    // Both lines name the request that came from the 4th address, as its authorization line does.
    const trigger = revoking.audit.events('authorization').find((l) => l.subject === 'victim' && l.source_ip === '127.0.0.5');
    assert.equal(typeof trigger?.request_id, 'string');
    assert.deepEqual([line?.request_id, revoked?.request_id], [trigger?.request_id, trigger?.request_id]);
    assert.equal(await revoking.metric('ca_a2a_anomalous_token_usage_total', { action: 'revoked' }), 1);
  });

  it('with auto_revoke, says already_revoked (line and metric), not revoked, for a jti revoked before the alarm, and the first record stays', async () => {
    // A sidecar that does not reload on its own during the test, and a revocation it is not told of
    // (PostgreSQL only, no push): as when another replica's alarm or an operator got there first.
    const late = await startHarness({ policyFile: policy('{ max_sources: 3, auto_revoke: true }'), issuer, sidecar: { stores: { redisUrl: REDIS_URL, databaseUrl: schema.urlFor(), keyPrefix: prefix, resyncIntervalMs: 3_600_000 } } });
    const quiet = await openRevocationBackend({ databaseUrl: schema.urlFor() }, () => undefined);
    try {
      const jti = 'anomaly-already-revoked';
      const token = await issuer.sign({ sub: 'already', jti });
      for (const source of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) assert.equal(await postFrom(late.sidecar.url, source, token, body), 200);
      assert.equal((await new Revoker({ store: quiet.store, bus: quiet.bus }).revoke({ kind: 'jti', jti, reason: 'by hand', revokedBy: 'oncall' })).created, true);
      assert.equal(await postFrom(late.sidecar.url, '127.0.0.5', token, body), 200, 'this sidecar has not heard of it yet');
      await until(async () => late.audit.events('anomalous_token_usage').length === 1 && late.audit.events('token_revoked').length === 1);
      const line = late.audit.events('anomalous_token_usage')[0];
      const revoked = late.audit.events('token_revoked')[0];
      assert.equal(line?.action, 'already_revoked');
      assert.deepEqual([revoked?.created, revoked?.revoked_by, revoked?.requested_by, revoked?.request_id], [false, 'oncall', 'sidecar:anomaly-test', line?.request_id]);
      assert.deepEqual([await late.metric('ca_a2a_anomalous_token_usage_total', { action: 'already_revoked' }), await late.metric('ca_a2a_anomalous_token_usage_total', { action: 'revoked' })], [1, 0]);
      // The record it pushed is applied.
      await until(async () => (await postFrom(late.sidecar.url, '127.0.0.2', token, body)) === 401);
    } finally {
      await quiet.close();
      await late.close();
    }
  });

  it('with auto_revoke on a read-only revocations role (the AWS stack), revokes locally: the alarming sidecar refuses the token as revoked, across resyncs, and so does a second sidecar sharing Redis from its next sight of it', async () => {
    const reader = await readOnlyRevocationRole(schema.urlFor());
    // Resyncs every 100 ms: the local revocations must outlive many loads from PostgreSQL.
    const stores = { redisUrl: REDIS_URL, databaseUrl: reader.readerUrl, keyPrefix: prefix, resyncIntervalMs: 100 };
    const file = policy('{ max_sources: 3, auto_revoke: true }');
    const first = await startHarness({ policyFile: file, issuer, sidecar: { stores } });
    const second = await startHarness({ policyFile: file, issuer, sidecar: { stores } });
    const owner = await openRevocationBackend({ databaseUrl: schema.urlFor() }, () => undefined);
    try {
      const jti = 'anomaly-read-only';
      const exp = Math.floor(Date.now() / 1000) + 120;
      const token = await issuer.sign({ sub: 'copied', jti, exp });
      for (const source of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) assert.equal(await postFrom(first.sidecar.url, source, token, body), 200);
      await until(async () => first.audit.events('anomalous_token_usage').length === 1);
      const line = first.audit.events('anomalous_token_usage')[0];
      assert.equal(line?.action, 'revoked_locally');
      assert.match(String(line?.err), /may only read revocations/);
      // Kept as the durable path keeps a jti: the token's exp plus the clock tolerance a sidecar grants.
      assert.equal(line?.expires_at, new Date((exp + 300) * 1000).toISOString());
      // The refusal of any revoked token, from every address, the alarm's own included.
      for (const source of ['127.0.0.2', '127.0.0.5']) assert.deepEqual(await answerFrom(first.sidecar.url, source, token, body), { status: 401, reason: 'authn.token_revoked' });
      assert.deepEqual([
        await first.metric('ca_a2a_anomalous_token_usage_total', { action: 'revoked_locally' }),
        await first.metric('ca_a2a_anomalous_token_usage_total', { action: 'revoked' }),
        await first.metric('ca_a2a_revoked_token_refusals_total'),
        // Applied to its set by the alarm itself, neither loaded nor pushed.
        await first.metric('ca_a2a_revocations_total', { kind: 'jti', source: 'local' }),
      ], [1, 0, 2, 1]);
      // Nothing durable: no token_revoked line, no row.
      assert.equal(first.audit.events('token_revoked').length, 0);
      assert.ok(!(await owner.store.active(Date.now() / 1000)).some((r) => r.kind === 'jti' && r.jti === jti));

      // The source count is shared: the second sidecar's first request with the token finds it past
      // the limit. That request is served (the alarm never holds one up); the next ones are refused.
      assert.equal(await postFrom(second.sidecar.url, '127.0.0.2', token, body), 200);
      await until(async () => (await answerFrom(second.sidecar.url, '127.0.0.2', token, body)).reason === 'authn.token_revoked');
      const secondLine = second.audit.events('anomalous_token_usage')[0];
      assert.deepEqual([secondLine?.action, secondLine?.sources, secondLine?.expires_at], ['revoked_locally', 4, line?.expires_at]);
      assert.equal(await second.metric('ca_a2a_revocations_total', { kind: 'jti', source: 'local' }), 1);

      // Another jti revoked in PostgreSQL only (no push): once a sidecar refuses it, it has reloaded
      // since, and its local revocation still stands.
      const other = 'anomaly-read-only-other';
      const otherToken = await issuer.sign({ sub: 'by-hand', jti: other });
      await new Revoker({ store: owner.store, bus: owner.bus }).revoke({ kind: 'jti', jti: other, reason: 'by hand', revokedBy: 'oncall' });
      for (const sidecar of [first, second]) {
        await until(async () => (await postFrom(sidecar.sidecar.url, '127.0.0.3', otherToken, body)) === 401);
        assert.deepEqual(await answerFrom(sidecar.sidecar.url, '127.0.0.3', token, body), { status: 401, reason: 'authn.token_revoked' });
      }
    } finally {
      await Promise.all([first.close(), second.close(), owner.close()]);
      await reader.drop();
    }
  });

  it('with auto_revoke and PostgreSQL down, revokes locally and refuses the token as revoked; once PostgreSQL is back, the next replica to see it revokes it durably', async () => {
    // PostgreSQL through a relay the test cuts once the sidecar has loaded its revocations.
    const relay = new TcpRelay(5432);
    await relay.start();
    const port = relay.port;
    const stores = { redisUrl: REDIS_URL, databaseUrl: schema.urlFor(`127.0.0.1:${port}`), keyPrefix: prefix };
    const cut = await startHarness({ policyFile: policy('{ max_sources: 3, auto_revoke: true }'), issuer, sidecar: { stores } });
    try {
      const token = await issuer.sign({ sub: 'during-outage' });
      for (const source of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) assert.equal(await postFrom(cut.sidecar.url, source, token, body), 200);
      await relay.stop();
      assert.equal(await postFrom(cut.sidecar.url, '127.0.0.5', token, body), 200);
      await until(async () => cut.audit.events('anomalous_token_usage').some((line) => line.action === 'revoked_locally'));
      assert.deepEqual(await answerFrom(cut.sidecar.url, '127.0.0.2', token, body), { status: 401, reason: 'authn.token_revoked' });
      assert.equal(await postFrom(watch.sidecar.url, '127.0.0.2', token, body), 200, 'local to the sidecar that raised the alarm');
      relay.port = port;
      await relay.start();
      // Another replica with auto_revoke, on PostgreSQL: its alarm revokes the jti for every sidecar.
      assert.equal(await postFrom(revoking.sidecar.url, '127.0.0.6', token, body), 200);
      await until(async () => (await postFrom(watch.sidecar.url, '127.0.0.2', token, body)) === 401);
      assert.deepEqual(revoking.audit.events('anomalous_token_usage').filter((line) => line.subject === 'during-outage').map((line) => line.action), ['revoked']);
      assert.deepEqual(cut.audit.events('anomalous_token_usage').map((line) => line.action), ['revoked_locally']);
      assert.equal(await postFrom(cut.sidecar.url, '127.0.0.2', token, body), 401);
    } finally {
      await cut.close();
      await relay.stop();
    }
  });
});
