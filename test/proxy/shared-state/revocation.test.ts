import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startAdminApi, type AdminApi } from '../../../proxy/admin-api/start.js';
import { startSidecar, type Sidecar } from '../../../proxy/sidecar.js';
import { DOC_ID, rpc, startHarness, type Harness } from '../../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../../helpers/test-issuer.js';
import { AuditCapture } from '../../helpers/audit-capture.js';
import { startUpstream } from '../../helpers/upstream.js';
import { tempDirSync } from '../../helpers/temp-dir.js';
import { openRevocationBackend } from '../../../proxy/stores/backends.js';
import { closeRedis, openRedis, redisReady } from '../../../proxy/stores/redis.js';
import { Revoker } from '../../../proxy/stores/revoker.js';
import { createTestSchema, dropPrefix, REDIS_URL, sharedStores, TcpRelay, until, uniquePrefix } from './helpers.js';

const ADMIN = { sub: 'ops-alice', azp: 'ops-console', realm_access: { roles: ['admin'] } };

describe('hybrid revocation on Redis + PostgreSQL', () => {
  const prefix = uniquePrefix();
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let issuer: TestIssuer;
  let api: AdminApi;
  let apiAudit: AuditCapture;
  let admin: Harness;
  let a: Harness;
  let b: Harness;

  before(async () => {
    schema = await createTestSchema();
    issuer = await startTestIssuer();
    const stores = sharedStores(prefix, schema.urlFor());
    apiAudit = new AuditCapture();
    api = await startAdminApi({ listen: '127.0.0.1:0', stores, logDestination: apiAudit });
    admin = await startHarness({ service: 'admin', issuer, sidecar: { upstream: api.url, stores } });
    a = await startHarness({ service: 'archivist', issuer, sidecar: { stores } });
    b = await startHarness({ service: 'archivist', issuer, sidecar: { stores } });
  });
  after(async () => {
    await Promise.all([admin?.close(), a?.close(), b?.close()]);
    await api?.close();
    await issuer?.close();
    await schema?.drop();
    await dropPrefix(prefix);
  });

  const get = () => rpc('get_document', { document_id: DOC_ID });
  const viewerToken = (claims: Record<string, unknown> = {}) => issuer.sign({ sub: 'viewer-1', ...claims });
  const refusedEverywhere = async (token: string, harnesses: Harness[]) =>
    (await Promise.all(harnesses.map((h) => h.call(get(), { token })))).every((res) => res.status === 401 && res.json.error?.code === -32010);

  it('refuses a token on two other running sidecars once one admin call revoked it', async () => {
    const adminToken = await issuer.sign(ADMIN);
    for (let i = 0; i < 5; i++) {
      const jti = `stolen-${i}-${prefix}`;
      const token = await viewerToken({ jti });
      assert.equal((await a.call(get(), { token })).status, 200);
      assert.equal((await b.call(get(), { token })).status, 200);
      const res = await admin.call({ jti, reason: 'laptop stolen' }, { token: adminToken, path: '/admin/revoke-token' });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      assert.equal(res.json.revoked, true);
      // Waited for, not timed: how fast is the bench's to measure (bench/revocation.ts).
      await until(() => refusedEverywhere(token, [a, b]));
      const refused = await a.call(get(), { token });
      assert.equal(refused.json.error?.data?.reason, 'authn.token_revoked');
    }
    const line = apiAudit.events('token_revoked').at(-1);
    assert.equal(line?.revoked_by, 'ops-alice (ops-console)');
    assert.equal(line?.reason, 'laptop stolen');
    assert.equal(line?.kind, 'jti');
    assert.ok((await a.metric('ca_a2a_revocations_total', { kind: 'jti', source: 'push' })) >= 5);
    assert.ok((await a.metric('ca_a2a_revoked_token_refusals_total')) >= 5);
  });

  it('re-revoking a jti until earlier answers, audits and caches in Redis the later expiry it is kept until', async () => {
    const adminToken = await issuer.sign(ADMIN);
    const jti = `twice-${prefix}`;
    const first = await admin.call({ jti, reason: 'leaked' }, { token: adminToken, path: '/admin/revoke-token' });
    assert.equal(first.status, 200, JSON.stringify(first.json));
    const keptUntil = (first.json.revocation as { expires_at: string }).expires_at;
    const soon = new Date(Date.now() + 600_000).toISOString();
    const again = await admin.call({ jti, reason: 'leaked', expires_at: soon }, { token: await issuer.sign(ADMIN), path: '/admin/revoke-token' });
    assert.equal(again.status, 200, JSON.stringify(again.json));
    assert.equal(again.json.created, false);
    assert.equal((again.json.revocation as { expires_at: string }).expires_at, keptUntil);
    assert.equal(apiAudit.events('token_revoked').at(-1)?.expires_at, keptUntil);
    const redis = openRedis(REDIS_URL);
    try {
      await redisReady(redis, 2_000);
      assert.ok(await redis.ttl(`${prefix}:revoked:jti:${jti}`) > 3_600);
    } finally {
      await closeRedis(redis);
    }
  });

  it('re-revoking a jti revoked by another admin answers, lists and audits the first revocation (who, when, why), REST and JSON-RPC alike', async () => {
    const jti = `alice-then-bob-${prefix}`;
    const alice = await admin.call({ jti, reason: 'laptop stolen', expires_at: new Date(Date.now() + 600_000).toISOString() }, { token: await issuer.sign(ADMIN), path: '/admin/revoke-token' });
    assert.equal(alice.status, 200, JSON.stringify(alice.json));
    const bobToken = await issuer.sign({ ...ADMIN, sub: 'ops-bob' });
    // Bob, over JSON-RPC: with the same expiry, then with a later one (until the longest token lifetime).
    const answers = [];
    for (const params of [{ jti, reason: 'seen in a log', expires_at: new Date(Date.now() + 600_000).toISOString() }, { jti, reason: 'seen in a log' }]) {
      const res = await admin.call(rpc('revoke_token', params), { token: bobToken });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      answers.push(res.json.result as { created: boolean; revocation: Record<string, unknown> });
    }
    const listed = await admin.call(undefined, { token: await issuer.sign(ADMIN), path: '/admin/revocations', method: 'GET' });
    const stored = (listed.json.revocations as Record<string, unknown>[]).filter((r) => r.jti === jti);
    assert.equal(stored.length, 1);
    const first = alice.json.revocation as Record<string, unknown>;
    const who = (r: Record<string, unknown> | undefined) => [r?.revoked_by, r?.reason, r?.revoked_at];
    assert.deepEqual(who(stored[0]), ['ops-alice (ops-console)', 'laptop stolen', first.revoked_at]);
    assert.deepEqual(answers.map((a) => [a.created, ...who(a.revocation)]), [[false, ...who(first)], [false, ...who(first)]]);
    assert.equal(answers[1]?.revocation.expires_at, stored[0]?.expires_at, 'the later expiry, answered and stored');
    assert.ok(Date.parse(String(stored[0]?.expires_at)) > Date.now() + 3_600_000);
    const lines = apiAudit.events('token_revoked').filter((l) => l.jti === jti);
    assert.deepEqual(lines.map((l) => [l.revoked_by, l.requested_by, l.requested_reason, l.created]), [
      ['ops-alice (ops-console)', 'ops-alice (ops-console)', undefined, true],
      ['ops-alice (ops-console)', 'ops-bob (ops-console)', 'seen in a log', false],
      ['ops-alice (ops-console)', 'ops-bob (ops-console)', 'seen in a log', false],
    ]);
    assert.equal(new Set(lines.map((l) => l.request_id)).size, 3, 'each request audited under its own request id');
  });

  it('keeps revocations across a sidecar restart: the new sidecar loads them before it is ready', async () => {
    const jti = `restart-${prefix}`;
    const token = await viewerToken({ jti });
    await a.sidecar.revoker.revoke({ kind: 'jti', jti, reason: 'test', revokedBy: 'test' });
    const stores = sharedStores(prefix, schema.urlFor());
    const fresh = await startHarness({ service: 'archivist', issuer, sidecar: { stores } });
    try {
      const ready = await request(`${fresh.sidecar.adminUrl}/ready`);
      assert.equal(ready.statusCode, 200);
      assert.equal(((await ready.body.json()) as { revocations_loaded: boolean }).revocations_loaded, true);
      assert.equal((await fresh.call(get(), { token })).status, 401);
      assert.ok((await fresh.metric('ca_a2a_revocations_total', { kind: 'jti', source: 'load' })) >= 1);
    } finally {
      await fresh.close();
    }
  });

  it('never accepts, after a restart, a token whose jti or sub PostgreSQL would read back otherwise (an unpaired surrogate)', async () => {
    // A JSON \ud800 escape decodes to a lone surrogate, which PostgreSQL's UTF-8 text stores as U+FFFD:
    // a revocation loaded back would name another token. Pushed, it matched; loaded, it must too.
    const cases = [
      { claims: { jti: `lone-\ud800-${prefix}` }, revoke: { kind: 'jti', jti: `lone-\ud800-${prefix}` } },
      { claims: { sub: `lone-\udc00-${prefix}` }, revoke: { kind: 'subject', subject: `lone-\udc00-${prefix}` } },
    ] as const;
    const tokens = [];
    for (const { claims, revoke } of cases) {
      tokens.push(await viewerToken(claims));
      try {
        await a.sidecar.revoker.revoke({ ...revoke, reason: 'stolen', revokedBy: 'test' });
      } catch (error) {
        assert.equal((error as { code?: string }).code, 'INVALID_REVOCATION', (error as Error).message);
      }
    }
    const fresh = await startHarness({ service: 'archivist', issuer, sidecar: { stores: sharedStores(prefix, schema.urlFor()) } });
    try {
      for (const token of tokens) assert.equal((await fresh.call(get(), { token })).status, 401);
    } finally {
      await fresh.close();
    }
  });

  it('revoke-subject refuses the subject\'s old tokens and accepts its new ones', async () => {
    const adminToken = await issuer.sign(ADMIN);
    const old = await viewerToken({ sub: 'leaver' });
    const other = await viewerToken({ sub: 'stayer' });
    const res = await admin.call({ subject: 'leaver', reason: 'logout everywhere' }, { token: adminToken, path: '/admin/revoke-subject' });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    await until(() => refusedEverywhere(old, [a, b]));
    assert.equal((await a.call(get(), { token: other })).status, 200);
    // iat is whole seconds: a token issued after the revocation second is a new login.
    const fresh = await viewerToken({ sub: 'leaver', iat: Math.floor(Date.now() / 1000) + 2 });
    assert.equal((await a.call(get(), { token: fresh })).status, 200);
    assert.equal((await b.call(get(), { token: fresh })).status, 200);
  });

  it('revoke-before refuses every token issued at or before the time and accepts later ones', async () => {
    const adminToken = await issuer.sign(ADMIN);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const old = await viewerToken({ sub: 'anyone', iat: nowSeconds - 120 });
    const atTheTime = await viewerToken({ sub: 'anyone', iat: nowSeconds - 60 });
    const newer = await viewerToken({ sub: 'anyone', iat: nowSeconds - 10 });
    const before = new Date((nowSeconds - 60) * 1000).toISOString();
    const res = await admin.call({ before, reason: 'signing key rotated' }, { token: adminToken, path: '/admin/revoke-before' });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    await until(() => refusedEverywhere(old, [a, b]));
    assert.ok(await refusedEverywhere(atTheTime, [a, b]), 'a token issued at the very second is refused too');
    assert.equal((await a.call(get(), { token: newer })).status, 200);
    assert.equal((await b.call(get(), { token: newer })).status, 200);
  });

  it('revoke-before a time every token issued by then has outlived is refused with 400', async () => {
    const adminToken = await issuer.sign(ADMIN);
    const before = new Date(Date.now() - 25 * 3600_000).toISOString();
    const res = await admin.call({ before, reason: 'year mistyped' }, { token: adminToken, path: '/admin/revoke-before' });
    assert.equal(res.status, 400, JSON.stringify(res.json));
    assert.match(JSON.stringify(res.json), /would revoke nothing/);
  });

  it('revoke-token with an expires_at long past (a mistyped date) is refused with 400, over HTTP and JSON-RPC, and stores nothing', async () => {
    const adminToken = await issuer.sign(ADMIN);
    const jti = `mistyped-${prefix}`;
    const expiresAt = new Date(Date.now() - 365 * 24 * 3600_000).toISOString();
    const res = await admin.call({ jti, reason: 'year mistyped', expires_at: expiresAt }, { token: adminToken, path: '/admin/revoke-token' });
    assert.equal(res.status, 400, JSON.stringify(res.json));
    assert.equal((res.json.error as unknown as { code: string }).code, 'invalid_request');
    assert.match(JSON.stringify(res.json), /expires_at is more than 300 s in the past/);
    const viaRpc = await admin.call(rpc('revoke_token', { jti, reason: 'year mistyped', expires_at: expiresAt }), { token: await issuer.sign(ADMIN) });
    assert.equal(viaRpc.json.error?.code, -32602, JSON.stringify(viaRpc.json));
    const listed = await admin.call(undefined, { token: await issuer.sign(ADMIN), path: '/admin/revocations', method: 'GET' });
    assert.equal(JSON.stringify(listed.json).includes(jti), false, 'nothing stored');
    // Within the clock tolerance a sidecar grants past exp, a token's own exp is still accepted.
    const recent = await admin.call({ jti, reason: 'just expired', expires_at: new Date(Date.now() - 120_000).toISOString() }, { token: await issuer.sign(ADMIN), path: '/admin/revoke-token' });
    assert.equal(recent.status, 200, JSON.stringify(recent.json));
  });

  it('lists revocations to admins (GET /admin/revocations and JSON-RPC list_revocations)', async () => {
    const token = await issuer.sign(ADMIN);
    const res = await admin.call(undefined, { token, path: '/admin/revocations', method: 'GET' });
    assert.equal(res.status, 200);
    const list = res.json.revocations as { kind: string }[];
    assert.ok(list.some((r) => r.kind === 'jti') && list.some((r) => r.kind === 'subject') && list.some((r) => r.kind === 'before'));
    const viaRpc = await admin.call(rpc('revoke_token', { jti: `rpc-${prefix}`, reason: 'via JSON-RPC' }), { token });
    assert.equal(viaRpc.status, 200);
    assert.equal((viaRpc.json.result as { revoked: boolean }).revoked, true);
  });

  it('refuses every admin method to non-admin roles through the admin sidecar', async () => {
    const cases = [
      { roles: ['viewer'], code: 'authz.method_denied' },
      { roles: ['orchestrator'], code: 'authz.explicit_deny' },
      { roles: ['lambda', 'document-processor'], code: 'authz.method_denied' },
    ];
    for (const { roles, code } of cases) {
      const token = await issuer.sign({ sub: `not-admin-${roles[0]}`, realm_access: { roles } });
      const res = await admin.call({ jti: 'x', reason: 'y' }, { token, path: '/admin/revoke-token' });
      assert.equal(res.status, 403, roles.join());
      assert.equal(res.json.error?.data?.reason, code);
      for (const path of ['/admin/revoke-subject', '/admin/revoke-before']) {
        assert.equal((await admin.call({ subject: 'x', before: new Date().toISOString(), reason: 'y' }, { token, path })).status, 403);
      }
      assert.equal((await admin.call(undefined, { token, path: '/admin/revocations', method: 'GET' })).status, 403);
    }
    assert.equal((await admin.call({ jti: 'x', reason: 'y' }, { path: '/admin/revoke-token' })).status, 401);
    assert.ok(!apiAudit.events('token_revoked').some((line) => line.jti === 'x'));
  });

  it('refuses an invalid admin request with 400 before it reaches the API', async () => {
    const token = await issuer.sign(ADMIN);
    const res = await admin.call({ jti: 'x' }, { token, path: '/admin/revoke-token' });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.data?.reason, 'params.invalid');
    assert.equal((await admin.call({ before: 'yesterday', reason: 'y' }, { token, path: '/admin/revoke-before' })).status, 400);
  });

  it('refuses with 400, not 503, what PostgreSQL cannot store: a NUL in a jti, subject or reason, a time out of range', async () => {
    const token = await issuer.sign(ADMIN);
    const bodies: [string, Record<string, unknown>][] = [
      ['/admin/revoke-token', { jti: 'a\u0000b', reason: 'leak' }],
      ['/admin/revoke-subject', { subject: 'a\u0000b', reason: 'leak' }],
      ['/admin/revoke-token', { jti: `nul-reason-${prefix}`, reason: 'le\u0000ak' }],
    ];
    for (const [path, body] of bodies) {
      const res = await admin.call(body, { token, path });
      assert.equal(res.status, 400, `${path} ${JSON.stringify(res.json)}`);
      assert.match(String((res.json.error as unknown as { message: string }).message), /must not contain NUL/);
    }
    // Epoch seconds reach the API only past the sidecar (its schema wants a date-time).
    const direct = (path: string, body: unknown) => request(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (const [path, body] of [['/admin/revoke-token', { jti: `far-${prefix}`, reason: 'r', expires_at: 1e300 }], ['/admin/revoke-before', { before: -1e300, reason: 'r' }]] as const) {
      const res = await direct(path, body);
      assert.equal(res.statusCode, 400, path);
      assert.match(((await res.body.json()) as { error: { message: string } }).error.message, /between the years 0001 and 9999/);
    }
    // The latest exp of any token accepted so far bounds how long a jti is kept, whatever expires_at says.
    const kept = await admin.call({ jti: `year-9999-${prefix}`, reason: 'r', expires_at: '9999-12-31T00:00:00Z' }, { token, path: '/admin/revoke-token' });
    assert.equal(kept.status, 200, JSON.stringify(kept.json));
    const expiresAt = Date.parse((kept.json.revocation as { expires_at: string }).expires_at) / 1000;
    assert.ok(expiresAt <= Date.now() / 1000 + 24 * 3600 + 600, `kept until ${new Date(expiresAt * 1000).toISOString()}`);
    assert.deepEqual(apiAudit.events('admin_request_failed'), [], 'no input is taken for a store failure');
    assert.ok(apiAudit.events('admin_request_refused').some((line) => line.target_jti === 'a\u0000b' && line.status === 400), 'each is logged as a refusal');
  });

  it('with PostgreSQL down: a revocation fails with a clear 503, nothing is half-applied, and checks keep using the in-process set', async () => {
    const dead = sharedStores(prefix, schema.urlFor('127.0.0.1:1'));
    const deadApi = await startAdminApi({ listen: '127.0.0.1:0', stores: dead, logDestination: new AuditCapture() });
    try {
      const jti = `never-${prefix}`;
      const res = await request(`${deadApi.url}/admin/revoke-token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jti, reason: 'db down' }) });
      assert.equal(res.statusCode, 503);
      assert.equal(((await res.body.json()) as { error: { code: string } }).error.code, 'store_unavailable');
      // Not pushed either: the sidecars still accept the token.
      const token = await viewerToken({ jti });
      assert.equal((await a.call(get(), { token })).status, 200);
      // Revoked tokens stay refused.
      assert.equal((await a.call(get(), { token: await viewerToken({ jti: `stolen-0-${prefix}` }) })).status, 401);
      // Listing says the store is down as a write does: 503 store_unavailable (-32017), not a 500 internal error.
      const listed = await request(`${deadApi.url}/admin/revocations`);
      assert.equal(listed.statusCode, 503);
      assert.equal(((await listed.body.json()) as { error: { code: string } }).error.code, 'store_unavailable');
      const rpcListed = await request(`${deadApi.url}/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'list_revocations' }) });
      assert.equal(((await rpcListed.body.json()) as { error: { code: number } }).error.code, -32017);
    } finally {
      await deadApi.close();
    }
  });
});

describe('a sidecar started while PostgreSQL is down', () => {
  it('is not ready and refuses tokens, and its public routes, with 503 revocation.not_loaded until the revocations are loaded', async () => {
    const issuer = await startTestIssuer();
    const upstream = await startUpstream();
    const prefix = uniquePrefix();
    const schema = await createTestSchema();
    const { TcpRelay } = await import('../../mcp/helpers.js');
    const relay = new TcpRelay(5432);
    await relay.start();
    const port = relay.port;
    await relay.stop();
    let sidecar: Sidecar | undefined;
    const audit = new AuditCapture();
    try {
      const { shippedPolicyFile } = await import('../../../proxy/services.js');
      sidecar = await startSidecar({
        policyFile: shippedPolicyFile('archivist'), upstream: upstream.url, issuer: issuer.issuer, watchPolicy: false,
        logDestination: audit,
        stores: sharedStores(prefix, schema.urlFor(`127.0.0.1:${port}`)),
      });
      // A load balancer's health check on the traffic port sees the sidecar is not ready.
      const health = await request(`${sidecar.url}/health`);
      assert.equal(health.statusCode, 503);
      assert.equal(((await health.body.json()) as { error: { data: { reason: string } } }).error.data.reason, 'revocation.not_loaded');
      const ready = await request(`${sidecar.adminUrl}/ready`);
      assert.equal(ready.statusCode, 503);
      await ready.body.dump();
      const res = await request(`${sidecar.url}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await issuer.sign({})}` },
        body: JSON.stringify(rpc('get_document', { document_id: DOC_ID })),
      });
      assert.equal(res.statusCode, 503);
      const body = (await res.body.json()) as { error: { code: number; data: { reason: string } } };
      assert.equal(body.error.data.reason, 'revocation.not_loaded');
      assert.equal(body.error.code, -32018);
      assert.ok(audit.events('dependency_failure').length >= 1);
      // Whether the token is revoked is not known: no authentication success to count.
      const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      assert.doesNotMatch(metrics, /^ca_a2a_authn_success_total\{service="archivist"\} [1-9]/m);
      // PostgreSQL comes back (the relay listens again on the same port): the sidecar converges.
      relay.port = port;
      await relay.start();
      await until(async () => (await (await request(`${sidecar?.adminUrl}/ready`)).body.json() as { status: string }).status === 'ready', 5_000);
      const served = await request(`${sidecar.url}/health`);
      await served.body.dump();
      assert.equal(served.statusCode, 200);
      assert.equal(upstream.requests.length, 1, 'only the health check made once ready reached the agent');
      assert.ok(upstream.metricsFetches() >= 1, "the admin scrape fetched the agent's metrics (upstream_metrics_path), not counted as traffic");
    } finally {
      await sidecar?.close();
      await relay.stop();
      await upstream.close();
      await issuer.close();
      await schema.drop();
      await dropPrefix(prefix);
    }
  });
});

describe('a running sidecar whose PostgreSQL goes away', () => {
  /**
   * An archivist sidecar whose PostgreSQL is reached through a relay the test can cut, resyncing
   * every 20 ms, on the clock `now`; `failures` and `recoveries` are its log lines about the
   * revocation store (a failed load names the store, a dropped pooled connection PostgreSQL).
   */
  async function relayedSidecar(now: () => number = Date.now) {
    const issuer = await startTestIssuer();
    const prefix = uniquePrefix();
    const schema = await createTestSchema();
    const relay = new TcpRelay(5432);
    await relay.start();
    const audit = new AuditCapture();
    const lines = (event: string) => audit.events(event).filter((line) => (line.store === 'revocation' || line.store === 'postgres') && line.during !== 'cleanup');
    const { shippedPolicyFile } = await import('../../../proxy/services.js');
    const sidecar = await startSidecar({
      policyFile: shippedPolicyFile('archivist'), upstream: 'http://127.0.0.1:1', issuer: issuer.issuer, watchPolicy: false, now,
      logDestination: audit, stores: sharedStores(prefix, schema.urlFor(`127.0.0.1:${relay.port}`), { resyncIntervalMs: 20 }),
    });
    return {
      relay,
      port: relay.port,
      failures: () => lines('store_failure'),
      recoveries: () => lines('store_recovered'),
      async close() {
        await sidecar.close();
        await relay.stop();
        await issuer.close();
        await schema.drop();
        await dropPrefix(prefix);
      },
    };
  }

  it('logs each outage of the revocation store once, and its end', async () => {
    const { relay, port, failures, recoveries, close } = await relayedSidecar();
    try {
      for (let outage = 1; outage <= 2; outage++) {
        await relay.stop();
        await until(async () => failures().length === outage);
        relay.port = port;
        await relay.start();
        await until(async () => recoveries().length === outage);
      }
    } finally {
      await close();
    }
  });

  it('logs a new cause during an outage, at most once a minute, so a fixed first cause does not hide the next', async () => {
    let clock = Date.now();
    const { relay, port, failures, close } = await relayedSidecar(() => clock);
    // Then a server on the same address that refuses every login: PostgreSQL back, but full.
    let logins = 0;
    const refusing = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => {
        logins++;
        socket.end(pgError('53300', 'sorry, too many clients already'));
      });
    });
    try {
      await relay.stop();
      await until(async () => failures().length === 1);
      await new Promise<void>((listening) => refusing.listen(port, '127.0.0.1', listening));
      await until(async () => logins >= 3);
      assert.equal(failures().length, 1, 'a new cause within a minute of the last line is not logged yet');
      clock += 61_000;
      await until(async () => failures().length === 2);
      assert.match(String(failures()[1]?.err), /too many clients/);
      assert.doesNotMatch(String(failures()[0]?.err), /too many clients/);
    } finally {
      await close();
      await new Promise((closed) => refusing.close(closed));
    }
  });
});

/** A PostgreSQL ErrorResponse message (protocol v3): severity FATAL, `code`, `message`. */
function pgError(code: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0C${code}\0M${message}\0\0`);
  const head = Buffer.alloc(5);
  head.write('E');
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

describe('a running sidecar whose Redis subscriber connection goes silent', () => {
  it('notices it without the periodic resync, reconnects and catches up on what it missed, and logs and counts it', async () => {
    const issuer = await startTestIssuer();
    const prefix = uniquePrefix();
    const schema = await createTestSchema();
    // The sidecar's Redis connections go through a relay the test can silence; the admin's do not.
    const relay = new TcpRelay(Number(new URL(REDIS_URL).port || 6379));
    await relay.start();
    // The periodic resync is ten minutes away: only noticing the silent link can explain a catch-up.
    const stores = sharedStores(prefix, schema.urlFor(), { redisUrl: `redis://127.0.0.1:${relay.port}`, resyncIntervalMs: 600_000 });
    const sidecar = await startHarness({ service: 'archivist', issuer, sidecar: { stores } });
    const adminSide = await openRevocationBackend(sharedStores(prefix, schema.urlFor()), () => undefined);
    const revoker = new Revoker({ store: adminSide.store, bus: adminSide.bus });
    const revoked = (jti: string) => sidecar.sidecar.revocations.isRevoked({ subject: 'viewer-1', clientId: 'c', roles: [], jti, issuedAt: 0, expiresAt: 0, boundKeyThumbprint: undefined });
    const redisLines = (event: string) => sidecar.audit.events(event).filter((line) => line.store === 'redis');
    try {
      // Subscribed: a push reaches it.
      await revoker.revoke({ kind: 'jti', jti: `before-${prefix}`, reason: 'test', revokedBy: 'test' });
      await until(async () => revoked(`before-${prefix}`));
      // The link goes silent (no FIN, no RST): the connection still looks ready, the push is lost.
      relay.freeze();
      await revoker.revoke({ kind: 'jti', jti: `during-${prefix}`, reason: 'test', revokedBy: 'test' });
      await until(async () => revoked(`during-${prefix}`), 15_000);
      assert.match(String(redisLines('store_failure')[0]?.err), /PING/);
      await until(async () => redisLines('store_recovered').length === 1);
      assert.equal(redisLines('store_failure').length, 1);
      assert.ok(await sidecar.metric('ca_a2a_store_errors_total', { store: 'revocation', fallback: 'cached' }) >= 1);
    } finally {
      await sidecar.close();
      await adminSide.close();
      await relay.stop();
      await issuer.close();
      await schema.drop();
      await dropPrefix(prefix);
    }
  });
});

describe('Redis without PostgreSQL: each host its own journal', () => {
  it('a sidecar started on another data directory after a revocation refuses the token, and is not ready while Redis is unreachable', async () => {
    const issuer = await startTestIssuer();
    const prefix = uniquePrefix();
    const onHost = (name: string) => ({ redisUrl: REDIS_URL, keyPrefix: prefix, dataDir: tempDirSync(name) });
    const first = await startHarness({ service: 'archivist', issuer, sidecar: { stores: onHost('host-a') } });
    let later: Harness | undefined;
    let cut: Sidecar | undefined;
    try {
      const token = await issuer.sign({ sub: 'viewer-1', jti: `elsewhere-${prefix}` });
      await first.sidecar.revoker.revoke({ kind: 'jti', jti: `elsewhere-${prefix}`, reason: 'stolen', revokedBy: 'test' });
      later = await startHarness({ service: 'archivist', issuer, sidecar: { stores: onHost('host-b') } });
      const res = await later.call(rpc('get_document', { document_id: DOC_ID }), { token });
      assert.equal(res.status, 401, JSON.stringify(res.json));
      assert.equal(res.json.error?.data?.reason, 'authn.token_revoked');
      // What it knows of other hosts' revocations is in Redis: without it, it cannot say.
      const { shippedPolicyFile } = await import('../../../proxy/services.js');
      cut = await startSidecar({
        policyFile: shippedPolicyFile('archivist'), upstream: 'http://127.0.0.1:1', issuer: issuer.issuer, watchPolicy: false,
        logDestination: new AuditCapture(), stores: { ...onHost('host-c'), redisUrl: 'redis://127.0.0.1:1' },
      });
      const ready = await request(`${cut.adminUrl}/ready`);
      assert.equal(ready.statusCode, 503);
      await ready.body.dump();
    } finally {
      await cut?.close();
      await later?.close();
      await first.close();
      await issuer.close();
      await dropPrefix(prefix);
    }
  });
});
