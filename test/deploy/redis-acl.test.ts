import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { redisAclRules, type RedisAclMode, type RedisUser } from '../../deploy/cdk/redis-acl.js';
import { AuditLog } from '../../proxy/observe/audit.js';
import { createLogger } from '../../proxy/observe/logger.js';
import { createSidecarMetrics } from '../../proxy/observe/metrics.js';
import { openRevocationBackend, type RevocationBackend } from '../../proxy/stores/backends.js';
import { closeRedis, openRedis, redisReady } from '../../proxy/stores/redis.js';
import { Revoker } from '../../proxy/stores/revoker.js';
import { openSidecarStores, type SidecarStores } from '../../proxy/stores/sidecar-stores.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { tempDirSync } from '../helpers/temp-dir.js';
import { createTestSchema, dropPrefix, REDIS_URL, uniquePrefix, until } from '../proxy/shared-state/helpers.js';

/** ACL LOG entries (flat [field, value, …] arrays) as objects. */
function aclLog(raw: unknown): Array<Record<string, unknown>> {
  return (raw as unknown[][]).map((entry) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < entry.length; i += 2) out[String(entry[i])] = entry[i + 1];
    return out;
  });
}

describe('Redis ACL users of a deployment (deploy/cdk/redis-acl.ts) on a real Redis', () => {
  const prefix = uniquePrefix();
  const tag = randomBytes(4).toString('hex');
  interface TestUser { readonly role: RedisUser; readonly mode: RedisAclMode; readonly name: string; readonly password: string; url: string }
  const user = (role: RedisUser, mode: RedisAclMode): TestUser => ({ role, mode, name: `ca-a2a-test-${role}-${mode}-${tag}`, password: randomBytes(24).toString('hex'), url: '' });
  const users: Record<RedisUser, TestUser> = { sidecar: user('sidecar', 'postgres'), admin: user('admin', 'postgres') };
  // The same parties in a deployment without DATABASE_URL.
  const redisOnly: Record<RedisUser, TestUser> = { sidecar: user('sidecar', 'redis-only'), admin: user('admin', 'redis-only') };
  let root: Redis;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let sidecar: SidecarStores | undefined;
  let admin: RevocationBackend | undefined;
  const clients: Redis[] = [];

  before(async () => {
    root = openRedis(REDIS_URL, { commandTimeoutMs: 2_000 });
    await redisReady(root, 2_000);
    for (const user of [...Object.values(users), ...Object.values(redisOnly)]) {
      await root.call('ACL', 'SETUSER', user.name, 'reset', `>${user.password}`, ...redisAclRules(user.role, prefix, user.mode));
      const url = new URL(REDIS_URL);
      url.username = user.name;
      url.password = user.password;
      user.url = url.toString();
    }
    schema = await createTestSchema();
  });
  after(async () => {
    for (const client of clients) await closeRedis(client);
    await sidecar?.close();
    await admin?.close();
    await root.call('ACL', 'DELUSER', users.sidecar.name, users.admin.name, redisOnly.sidecar.name, redisOnly.admin.name);
    await closeRedis(root);
    await dropPrefix(prefix);
    await schema?.drop();
  });

  const deniedTo = async (user: TestUser): Promise<Array<Record<string, unknown>>> =>
    aclLog(await root.call('ACL', 'LOG', '1000')).filter((entry) => entry['username'] === user.name);
  /** The names of the connections open as `user`, sorted. */
  const connectionsOf = async (user: TestUser): Promise<string[]> => {
    const list = String(await root.call('CLIENT', 'LIST'));
    return list.split('\n').filter((line) => line.includes(` user=${user.name} `)).map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '').sort();
  };
  const connect = async (user: TestUser): Promise<Redis> => {
    const client = openRedis(user.url, { commandTimeoutMs: 2_000 });
    clients.push(client);
    await redisReady(client, 2_000);
    return client;
  };

  it('a sidecar counts, claims, records sources and hears the admin API\'s push; the admin API pushes: no command of either is refused', async () => {
    const capture = new AuditCapture();
    const logger = createLogger({ service: 'acl-test', destination: capture });
    sidecar = await openSidecarStores({ redisUrl: users.sidecar.url, databaseUrl: schema.urlFor(), keyPrefix: prefix, resyncIntervalMs: 600_000 }, {
      service: 'acl-test', metrics: createSidecarMetrics(), audit: new AuditLog(logger), logger, now: Date.now,
    });
    const stores = sidecar;
    await until(async () => stores.revocations.loaded);
    admin = await openRevocationBackend({ redisUrl: users.admin.url, databaseUrl: schema.urlFor(), keyPrefix: prefix }, () => undefined);
    const backend = admin;
    await redisReady(backend.redis as Redis, 2_000);
    const now = Date.now() / 1000;

    const first = await stores.rateLimits.consume('principal', { points: 5, windowSeconds: 60 }, 1);
    const second = await stores.rateLimits.consume('principal', { points: 5, windowSeconds: 60 }, 1);
    assert.deepEqual([first.allowed, first.remaining, second.remaining], [true, 4, 3]);
    assert.equal(await stores.oneTimeIds.claim('proof-1', 60, now, 'client'), 'new');
    assert.equal(await stores.oneTimeIds.claim('proof-1', 60, now, 'client'), 'seen');
    assert.equal(await stores.tokenSources.add('jti-1', '10.0.0.1', 60), 1);
    assert.equal(await stores.tokenSources.add('jti-1', '10.0.0.2', 60), 2);

    const revoker = new Revoker({ store: backend.store, bus: backend.bus });
    const principal = { subject: 's', clientId: 'c', roles: [], jti: 'stolen', issuedAt: now - 10, expiresAt: now + 290, boundKeyThumbprint: undefined };
    const result = await revoker.revoke({ kind: 'jti', jti: 'stolen', expiresAt: now + 290, reason: 'acl test', revokedBy: 'ops' });
    assert.equal(result.pushed, true);
    // Heard through the push (the resync is 10 minutes away).
    await until(async () => stores.revocations.isRevoked(principal));

    // Counted in Redis, not by the in-memory insurance limiter a refused script would fall back to.
    const [, counters] = await root.scan('0', 'MATCH', `${prefix}:rl:*`, 'COUNT', 1000);
    assert.ok(counters.length > 0, 'rate-limit counters in Redis');
    // The admin API only pushes: one connection, no subscriber (which its user may not SUBSCRIBE on).
    assert.deepEqual(await connectionsOf(users.admin), ['ca-a2a']);
    assert.deepEqual(await deniedTo(users.sidecar), []);
    assert.deepEqual(await deniedTo(users.admin), []);
  });

  it('a sidecar may not publish revocations, touch the revocation cache or other keys, nor administer Redis', async () => {
    const client = await connect(users.sidecar);
    const refused = [
      ['PUBLISH', `${prefix}:revocations`, '{"kind":"before","revokedAt":9999999999,"expiresAt":9999999999}'],
      ['SET', `${prefix}:revoked:jti:x`, '1'],
      ['ZADD', `${prefix}:revocations:live`, '1', 'x'],
      ['GET', `${prefix}:revoked:jti:stolen`],
      ['DEL', `${prefix}:once:proof-1`],
      ['SET', 'elsewhere:key', '1'],
      ['KEYS', '*'],
      ['FLUSHALL'],
      ['CONFIG', 'GET', 'maxmemory-policy'],
      ['SUBSCRIBE', 'elsewhere'],
    ];
    for (const [command = '', ...args] of refused) {
      await assert.rejects(client.call(command, ...args), /NOPERM/, `${command} ${args.join(' ')}`);
    }
  });

  it('docs/deploy.md shows each user\'s access string as the stack sets it, and as a deployment without PostgreSQL needs it', () => {
    const doc = readFileSync(new URL('../../docs/deploy.md', import.meta.url), 'utf8');
    for (const mode of ['postgres', 'redis-only'] as const) {
      for (const user of ['sidecar', 'admin'] as const) {
        assert.ok(doc.includes(`| \`ca-a2a-${user}\` | \`${redisAclRules(user, 'ca-a2a', mode).join(' ').replaceAll('|', '\\|')}\` |`), `${user} ${mode}`);
      }
    }
  });

  it('the admin API may not subscribe to the revocations, nor read or reset rate limits, replay ids or token sources', async () => {
    const client = await connect(users.admin);
    for (const [command = '', ...args] of [['SUBSCRIBE', `${prefix}:revocations`], ['GET', `${prefix}:rl:principal`], ['DEL', `${prefix}:once:proof-1`], ['SET', `${prefix}:sources:jti-1`, 'x'], ['EVAL', 'return 1', '0'], ['FLUSHALL']]) {
      await assert.rejects(client.call(command, ...args), /NOPERM/, `${command} ${args.join(' ')}`);
    }
  });

  it('without PostgreSQL, a sidecar started after a revocation loads it from Redis and hears the next, and the admin API keeps a later expiry another host pushed: no command of either is refused', async () => {
    const now = Date.now() / 1000;
    const capture = new AuditCapture();
    const logger = createLogger({ service: 'acl-test', destination: capture });
    // Two hosts' admin APIs, each on its own journal; the sidecar on a third.
    const hostA = await openRevocationBackend({ redisUrl: redisOnly.admin.url, dataDir: tempDirSync('acl-a'), keyPrefix: prefix }, () => undefined);
    const hostB = await openRevocationBackend({ redisUrl: redisOnly.admin.url, dataDir: tempDirSync('acl-b'), keyPrefix: prefix }, () => undefined);
    let stores: SidecarStores | undefined;
    try {
      for (const host of [hostA, hostB]) await redisReady(host.redis as Redis, 2_000);
      const onA = new Revoker({ store: hostA.store, bus: hostA.bus });
      const onB = new Revoker({ store: hostB.store, bus: hostB.bus });
      const long = await onA.revoke({ kind: 'jti', jti: 'long', expiresAt: now + 3_600, reason: 'acl test', revokedBy: 'alice' });
      assert.equal(long.pushed, true);
      // B's journal has none: the later expiry is A's, read from Redis (GET PREFIX:revoked:jti:long).
      const again = await onB.revoke({ kind: 'jti', jti: 'long', expiresAt: now + 60, reason: 'acl test', revokedBy: 'bob' });
      assert.equal(again.record.revocation.expiresAt, long.record.revocation.expiresAt);

      stores = await openSidecarStores({ redisUrl: redisOnly.sidecar.url, dataDir: tempDirSync('acl-sidecar'), keyPrefix: prefix, resyncIntervalMs: 600_000 }, {
        service: 'acl-test', metrics: createSidecarMetrics(), audit: new AuditLog(logger), logger, now: Date.now,
      });
      const sidecarStores = stores;
      await until(async () => sidecarStores.revocations.loaded);
      const principal = (jti: string) => ({ subject: 's', clientId: 'c', roles: [], jti, issuedAt: now - 10, expiresAt: now + 290, boundKeyThumbprint: undefined });
      // Made before this sidecar started, on another host: only Redis's live set holds it.
      assert.equal(sidecarStores.revocations.isRevoked(principal('long')), true);
      assert.equal((await onA.revoke({ kind: 'jti', jti: 'later', expiresAt: now + 290, reason: 'acl test', revokedBy: 'alice' })).pushed, true);
      await until(async () => sidecarStores.revocations.isRevoked(principal('later')));

      assert.deepEqual(await deniedTo(redisOnly.sidecar), []);
      assert.deepEqual(await deniedTo(redisOnly.admin), []);
    } finally {
      await stores?.close();
      await hostA.close();
      await hostB.close();
    }
  });

  it('without PostgreSQL, a sidecar only reads the live revocations: it may not write or expire them, read the cache entries, nor push its own auto-revocation', async () => {
    const client = await connect(redisOnly.sidecar);
    const live = `${prefix}:revocations:live`;
    assert.ok(Array.isArray(await client.zrangebyscore(live, '-inf', '+inf')));
    const refused = [
      ['ZADD', live, '9999999999', '{"kind":"before","revokedAt":9999999999,"expiresAt":9999999999}'],
      ['ZREMRANGEBYSCORE', live, '-inf', '+inf'],
      ['SET', live, 'x'],
      ['EXPIRE', live, '1'],
      ['DEL', live],
      ['EVAL', 'return redis.call("EXPIRE", KEYS[1], 1)', '1', live],
      ['GET', `${prefix}:revoked:jti:long`],
      ['ZRANGEBYSCORE', `${prefix}:revocations:other`, '-inf', '+inf'],
      ['PUBLISH', `${prefix}:revocations`, '{"kind":"before","revokedAt":9999999999,"expiresAt":9999999999}'],
    ];
    for (const [command = '', ...args] of refused) {
      await assert.rejects(client.call(command, ...args), /NOPERM/, `${command} ${args.join(' ')}`);
    }
    // A script may not write it either (a key named only inside the script, not in KEYS).
    await assert.rejects(client.call('EVAL', `return redis.call("SET", "${live}", "x")`, '0'), /can't access/);

    // The anomaly auto-revoke of a sidecar: durable in its host's journal, not pushed.
    const logger = createLogger({ service: 'acl-test', destination: new AuditCapture() });
    const stores = await openSidecarStores({ redisUrl: redisOnly.sidecar.url, dataDir: tempDirSync('acl-auto'), keyPrefix: prefix, resyncIntervalMs: 600_000 }, {
      service: 'acl-test', metrics: createSidecarMetrics(), audit: new AuditLog(logger), logger, now: Date.now,
    });
    try {
      const result = await stores.revoker.revoke({ kind: 'jti', jti: 'by-sidecar', expiresAt: Date.now() / 1000 + 290, reason: 'anomalous usage', revokedBy: 'sidecar:acl-test' });
      assert.deepEqual([result.created, result.pushed], [true, false]);
      assert.equal(await root.exists(`${prefix}:revoked:jti:by-sidecar`), 0);
      assert.ok(!(await root.zrange(live, 0, -1)).some((member) => member.includes('by-sidecar')));
    } finally {
      await stores.close();
    }
  });
});
