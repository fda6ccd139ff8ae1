import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { request } from 'undici';
import { startAdminApi, type AdminApi } from '../../proxy/admin-api/start.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { rpc, startHarness, type Harness } from '../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../helpers/test-issuer.js';
import { tempDirSync } from '../helpers/temp-dir.js';
import { createTestSchema } from './shared-state/helpers.js';

/** The named fields of a log line, those it has. */
function pick(line: Record<string, unknown> | undefined, names: string[]): Record<string, unknown> {
  return Object.fromEntries(names.filter((name) => line?.[name] !== undefined).map((name) => [name, line?.[name]]));
}

const ADMIN = { sub: 'ops-alice', azp: 'ops-console', realm_access: { roles: ['admin'] } };

describe('admin API behind the admin sidecar', () => {
  let issuer: TestIssuer;
  let api: AdminApi;
  let apiAudit: AuditCapture;
  let admin: Harness;

  before(async () => {
    const stores = { dataDir: tempDirSync('admin') };
    issuer = await startTestIssuer();
    apiAudit = new AuditCapture();
    api = await startAdminApi({ listen: '127.0.0.1:0', stores, logDestination: apiAudit });
    admin = await startHarness({ service: 'admin', issuer, sidecar: { upstream: api.url, stores } });
  });
  after(async () => {
    await admin?.close();
    await api?.close();
    await issuer?.close();
  });

  const revokedJtis = (): unknown[] => apiAudit.events('token_revoked').map((line) => line.jti);

  it('refuses a batch of revocations at the sidecar with -32600 and revokes nothing', async () => {
    const token = await issuer.sign(ADMIN);
    const batch = [rpc('revoke_token', { jti: 'batch-a', reason: 'leak' }, 1), rpc('revoke_token', { jti: 'batch-b', reason: 'leak' }, 2)];
    const res = await admin.call(batch, { token });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.code, -32600);
    assert.equal(res.json.error?.data?.reason, 'jsonrpc.batch_too_large');
    assert.deepEqual(revokedJtis().filter((jti) => String(jti).startsWith('batch-')), []);
  });

  it('answers a batch of one with invalid request, not method not found, and revokes nothing', async () => {
    const token = await issuer.sign(ADMIN);
    const res = await admin.call([rpc('revoke_token', { jti: 'batch-one', reason: 'leak' })], { token });
    assert.equal(res.json.error?.code, -32600);
    assert.match(res.json.error?.message ?? '', /one call per request/);
    assert.ok(!revokedJtis().includes('batch-one'));
  });

  it('revokes for an admin whose subject and client id are both 100 characters, recording 200 of them', async () => {
    const token = await issuer.sign({ ...ADMIN, sub: 's'.repeat(100), azp: 'c'.repeat(100) });
    const res = await admin.call(rpc('revoke_token', { jti: 'long-names', reason: 'leak' }), { token });
    const result = res.json.result as { revocation?: { revoked_by?: string } } | undefined;
    assert.equal(res.json.error, undefined, JSON.stringify(res.json));
    const revokedBy = result?.revocation?.revoked_by ?? '';
    assert.equal(revokedBy.length, 200);
    assert.ok(revokedBy.startsWith(`${'s'.repeat(100)} (ccc`));
  });

  it('accepts every date-time the sidecar accepts: lower-case t and z, a space, a leap second', async () => {
    const token = await issuer.sign(ADMIN);
    // An hour ago, whole seconds: a cut-off older than a day is refused for its age (it would revoke nothing).
    const hourAgo = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);
    const iso = hourAgo.toISOString().replace('.000Z', 'Z');
    const inParis = new Date(hourAgo.getTime() + 3600_000).toISOString().replace('.000Z', '+01:00').replace('T', ' ');
    const cases = [
      [iso.replace('T', 't').replace('Z', 'z'), hourAgo.toISOString()],
      [inParis, hourAgo.toISOString()],
    ] as const;
    for (const [before, notAfter] of cases) {
      const res = await admin.call({ before, reason: 'key rotated' }, { token, path: '/admin/revoke-before' });
      assert.equal(res.status, 200, `${before}: ${JSON.stringify(res.json)}`);
      assert.equal((res.json.revocation as { not_after?: string }).not_after, notAfter);
    }
    // A leap second is a date-time too: past the sidecar's schema, and refused only for its age.
    const leap = await admin.call({ before: '2016-12-31T23:59:60Z', reason: 'key rotated' }, { token, path: '/admin/revoke-before' });
    assert.equal(leap.status, 400, JSON.stringify(leap.json));
    assert.match(JSON.stringify(leap.json), /would revoke nothing/);
  });

  it('refuses to start on an address other hosts reach: it has no security of its own', async () => {
    const outcome = await startAdminApi({ listen: '0.0.0.0:0', stores: { dataDir: tempDirSync('admin-open') } }).then(
      async (open) => {
        await open.close();
        return 'listening';
      },
      (error: Error) => error.message,
    );
    assert.match(outcome, /must listen on a loopback address/);
  });

  it('refuses what a web page on this host can send it: another Host (DNS rebinding) with 403, a body not typed JSON (a form, a no-cors fetch) with 415', async () => {
    const direct = (path: string, headers: Record<string, string>, body?: unknown) =>
      request(`${api.url}${path}`, { method: body === undefined ? 'GET' : 'POST', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const rebound = { host: `attacker.example:${new URL(api.url).port}`, 'content-type': 'application/json' };
    const plain = { 'content-type': 'text/plain' };
    const answers = [
      await direct('/admin/revoke-token', rebound, { jti: 'web-rebound', reason: 'x' }),
      await direct('/admin/revocations', rebound),
      await direct('/admin/revoke-token', plain, { jti: 'web-form', reason: 'x' }),
      await direct('/message', plain, rpc('revoke_token', { jti: 'web-rpc', reason: 'x' })),
    ];
    const bodies = await Promise.all(answers.map(async (res) => ({ status: res.statusCode, json: (await res.body.json()) as { error?: { message?: string } } })));
    assert.deepEqual(bodies.map((b) => b.status), [403, 403, 415, 415]);
    assert.match(bodies[0]?.json.error?.message ?? '', /Host/);
    assert.match(bodies[2]?.json.error?.message ?? '', /application\/json/);
    assert.deepEqual(revokedJtis().filter((jti) => String(jti).startsWith('web-')), []);
    const refused = apiAudit.events('admin_request_refused').slice(-4);
    assert.deepEqual(refused.map((line) => [line.status, line.code, line.http_method, line.path]), [
      [403, 'forbidden', 'POST', '/admin/revoke-token'], [403, 'forbidden', 'GET', '/admin/revocations'],
      [415, 'unsupported_media_type', 'POST', '/admin/revoke-token'], [415, 'unsupported_media_type', 'POST', '/message'],
    ]);
    for (const line of refused) {
      assert.match(String(line.request_id), /^[0-9a-f-]{36}$/, 'called without its sidecar, the request still has an id');
      assert.equal(line.source_ip, '127.0.0.1');
      assert.equal(line.level, 'warn');
    }
  });

  it('answers a /message body it cannot read (not JSON-typed, too large, not JSON) in JSON-RPC form, in the refusal\'s HTTP status', async () => {
    const cases: [Record<string, string>, string, number, number, string][] = [
      [{ 'content-type': 'text/plain' }, JSON.stringify(rpc('revoke_token', { jti: 'x', reason: 'r' })), 415, -32600, 'unsupported_media_type'],
      [{ 'content-type': 'application/json' }, JSON.stringify(rpc('revoke_token', { jti: 'x'.repeat(70_000), reason: 'r' })), 413, -32012, 'too_large'],
      [{ 'content-type': 'application/json' }, '{"jsonrpc": "2.0", "id": 1,', 400, -32700, 'invalid_request'],
    ];
    for (const [headers, body, status, rpcCode, code] of cases) {
      const res = await request(`${api.url}/message`, { method: 'POST', headers, body });
      assert.equal(res.statusCode, status);
      const json = (await res.body.json()) as { jsonrpc?: string; id?: unknown; error?: { code?: number; message?: string } };
      assert.deepEqual([json.jsonrpc, json.id, json.error?.code], ['2.0', null, rpcCode], JSON.stringify(json));
      assert.ok(json.error?.message);
      assert.deepEqual(pick(apiAudit.events('admin_request_refused').at(-1), ['status', 'rpc_code', 'code', 'path']), { status, rpc_code: rpcCode, code, path: '/message' });
    }
  });

  it('answers a JSON-RPC body that is not an object with -32600, logged as a refusal, not as a failure', async () => {
    const res = await request(`${api.url}/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'null' });
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as { error?: { code?: number } }).error?.code, -32600);
    assert.deepEqual(apiAudit.events('admin_request_failed'), []);
    assert.deepEqual(pick(apiAudit.events('admin_request_refused').at(-1), ['status', 'rpc_code', 'code', 'path']), { status: 200, rpc_code: -32600, code: 'invalid_request', path: '/message' });
  });

  it('logs each refusal of its own with who asked (caller, address, request id) and what (route, method, target), and the revocation with its request id', async () => {
    const token = await issuer.sign(ADMIN);
    const caller = { subject: 'ops-alice', client_id: 'ops-console', source_ip: '127.0.0.1' };
    // REST: a cut-off from 2016 passes the sidecar's schema and is refused by the revoker.
    const rest = await admin.call({ before: '2016-12-31T23:59:59Z', reason: 'key rotated' }, { token, path: '/admin/revoke-before' });
    assert.equal(rest.status, 400);
    assert.deepEqual(pick(apiAudit.events('admin_request_refused').at(-1), ['request_id', ...Object.keys(caller), 'http_method', 'path', 'target_before', 'status', 'code']), {
      request_id: rest.headers['x-ca-a2a-request-id'], ...caller, http_method: 'POST', path: '/admin/revoke-before', target_before: '2016-12-31T23:59:59Z', status: 400, code: 'invalid_request',
    });
    // JSON-RPC: an expires_at a year gone.
    const rpcRes = await admin.call(rpc('revoke_token', { jti: 'logged-target', reason: 'leak', expires_at: '2024-01-01T00:00:00Z' }), { token });
    assert.equal(rpcRes.json.error?.code, -32602);
    assert.deepEqual(pick(apiAudit.events('admin_request_refused').at(-1), ['request_id', ...Object.keys(caller), 'path', 'method', 'target_jti', 'status', 'rpc_code', 'code']), {
      request_id: rpcRes.headers['x-ca-a2a-request-id'], ...caller, path: '/message', method: 'revoke_token', target_jti: 'logged-target', status: 200, rpc_code: -32602, code: 'invalid_request',
    });
    const done = await admin.call(rpc('revoke_token', { jti: 'logged-target', reason: 'leak' }), { token });
    assert.equal(done.json.error, undefined);
    const revoked = apiAudit.events('token_revoked').find((line) => line.jti === 'logged-target');
    assert.equal(revoked?.request_id, done.headers['x-ca-a2a-request-id']);
    assert.equal(typeof revoked?.request_id, 'string');
    // Its own 404, -32601 and 413, asked directly.
    const direct = (path: string, body: string) => request(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': `direct-${path}` }, body });
    await (await direct('/admin/nothing', '{}')).body.dump();
    await (await direct('/message', JSON.stringify(rpc('drop_tables', {})))).body.dump();
    await (await direct('/admin/revoke-subject', JSON.stringify({ subject: 'x'.repeat(70_000), reason: 'r' }))).body.dump();
    assert.deepEqual(apiAudit.events('admin_request_refused').slice(-3).map((line) => pick(line, ['request_id', 'status', 'code', 'rpc_code', 'method'])), [
      { request_id: 'direct-/admin/nothing', status: 404, code: 'not_found' },
      { request_id: 'direct-/message', status: 200, code: 'method_not_found', rpc_code: -32601, method: 'drop_tables' },
      { request_id: 'direct-/admin/revoke-subject', status: 413, code: 'too_large' },
    ]);
  });

  it('never logs a token pasted where a jti belongs, nor the caller\'s token', async () => {
    const token = await issuer.sign(ADMIN);
    const res = await request(`${api.url}/admin/revoke-token`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ jti: token, reason: 'pasted the wrong thing' }) });
    assert.equal(res.statusCode, 400);
    await res.body.dump();
    assert.equal(apiAudit.events('admin_request_refused').at(-1)?.target_jti, '[token-shaped value not logged]');
    const [header, payload] = token.split('.');
    assert.ok(!apiAudit.text().includes(`${header}.${payload}`), 'no token in any line');
  });

  it('refuses at the sidecar a time that is not an RFC 3339 date-time', async () => {
    const token = await issuer.sign(ADMIN);
    const res = await admin.call({ before: '2025-01-31T12:00Z', reason: 'key rotated' }, { token, path: '/admin/revoke-before' });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.data?.reason, 'params.invalid');
  });
});

describe('admin API with its store down', () => {
  let api: AdminApi;
  let audit: AuditCapture;

  before(async () => {
    audit = new AuditCapture();
    // Nothing listens on port 1: every statement fails with ECONNREFUSED.
    api = await startAdminApi({ listen: '127.0.0.1:0', stores: { databaseUrl: 'postgres://postgres@127.0.0.1:1/test' }, logDestination: audit });
  });
  after(async () => {
    await api?.close();
  });

  it('answers 503 and -32017 and logs each failure with who asked what, the store and the error', async () => {
    const post = (path: string, body: unknown) => request(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': `down-${path}`, 'x-ca-a2a-subject': 'ops-bob', 'x-ca-a2a-client-id': 'ops-console' }, body: JSON.stringify(body) });
    const answers = [
      await post('/admin/revoke-subject', { subject: 'svc-leaked', reason: 'r' }),
      await post('/message', rpc('revoke_token', { jti: 'jti-down', reason: 'r' })),
      await post('/message', rpc('list_revocations', {})),
      await request(`${api.url}/admin/revocations`, { headers: { 'x-ca-a2a-request-id': 'down-list' } }),
    ];
    const bodies = await Promise.all(answers.map(async (res) => [res.statusCode, ((await res.body.json()) as { error?: { code?: unknown } }).error?.code]));
    assert.deepEqual(bodies, [[503, 'store_unavailable'], [200, -32017], [200, -32017], [503, 'store_unavailable']]);
    const failed = audit.events('admin_request_failed');
    assert.deepEqual(failed.map((line) => pick(line, ['request_id', 'subject', 'http_method', 'path', 'method', 'target_subject', 'target_jti', 'status', 'rpc_code', 'code', 'store', 'level'])), [
      { request_id: 'down-/admin/revoke-subject', subject: 'ops-bob', http_method: 'POST', path: '/admin/revoke-subject', target_subject: 'svc-leaked', status: 503, code: 'store_unavailable', store: 'revocation', level: 'error' },
      { request_id: 'down-/message', subject: 'ops-bob', http_method: 'POST', path: '/message', method: 'revoke_token', target_jti: 'jti-down', status: 200, rpc_code: -32017, code: 'store_unavailable', store: 'revocation', level: 'error' },
      { request_id: 'down-/message', subject: 'ops-bob', http_method: 'POST', path: '/message', method: 'list_revocations', status: 200, rpc_code: -32017, code: 'store_unavailable', store: 'revocation', level: 'error' },
      { request_id: 'down-list', http_method: 'GET', path: '/admin/revocations', status: 503, code: 'store_unavailable', store: 'revocation', level: 'error' },
    ]);
    for (const line of failed) assert.match(String(line.err), /ECONNREFUSED|connect/);
    assert.deepEqual(audit.events('admin_request_refused'), []);
  });
});

describe('admin API listing on PostgreSQL', () => {
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let api: AdminApi;

  before(async () => {
    schema = await createTestSchema();
    api = await startAdminApi({ listen: '127.0.0.1:0', stores: { databaseUrl: schema.urlFor() }, logDestination: new AuditCapture() });
  });
  after(async () => {
    await api?.close();
    await schema?.drop();
  });

  const list = async (): Promise<{ revocations: { jti?: string }[]; truncated?: unknown }> => {
    const rest = await request(`${api.url}/admin/revocations`);
    assert.equal(rest.statusCode, 200);
    const viaRpc = await request(`${api.url}/message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rpc('list_revocations', {})) });
    const listed = (await rest.body.json()) as { revocations: { jti?: string }[]; truncated?: unknown };
    assert.deepEqual(((await viaRpc.body.json()) as { result: unknown }).result, listed);
    return listed;
  };

  it('says when it lists only the newest 1000 revocations in force (an operator looking for one not shown knows to look elsewhere)', async () => {
    assert.deepEqual(await list(), { revocations: [], truncated: false });
    const client = new pg.Client({ connectionString: schema.urlFor() });
    await client.connect();
    try {
      await client.query(`INSERT INTO revoked_tokens (jti, revoked_at, revoked_by, reason, expires_at)
        SELECT 'bulk-' || n, now() - n * interval '1 second', 'anomaly', 'r', now() + interval '1 hour' FROM generate_series(1, $1::int) AS n`, [1000]);
      const full = await list();
      assert.deepEqual([full.revocations.length, full.truncated], [1000, false]);
      await client.query(`INSERT INTO revoked_tokens (jti, revoked_by, reason, expires_at) VALUES ('bulk-newest', 'ops', 'r', now() + interval '1 hour')`);
    } finally {
      await client.end();
    }
    const over = await list();
    assert.deepEqual([over.revocations.length, over.truncated, over.revocations[0]?.jti], [1000, true, 'bulk-newest']);
    assert.ok(!over.revocations.some((r) => r.jti === 'bulk-1000'), 'the oldest is the one left out');
  });
});
