import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { redisAclRules, type RedisUser } from '../../deploy/cdk/redis-acl.js';
import { AuditLog } from '../../proxy/observe/audit.js';
import { createLogger } from '../../proxy/observe/logger.js';
import { createSidecarMetrics } from '../../proxy/observe/metrics.js';
import { openRevocationBackend, type RevocationBackend } from '../../proxy/stores/backends.js';
import { closeRedis, openRedis, redisReady } from '../../proxy/stores/redis.js';
import { Revoker } from '../../proxy/stores/revoker.js';
import { openSidecarStores, type SidecarStores } from '../../proxy/stores/sidecar-stores.js';
import { AuditCapture } from '../helpers/audit-capture.js';
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
  const users: Record<RedisUser, { name: string; password: string; url: string }> = {
    sidecar: { name: `ca-a2a-test-sidecar-${tag}`, password: randomBytes(24).toString('hex'), url: '' },
    admin: { name: `ca-a2a-test-admin-${tag}`, password: randomBytes(24).toString('hex'), url: '' },
  };
  let root: Redis;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let sidecar: SidecarStores | undefined;
  let admin: RevocationBackend | undefined;
  const clients: Redis[] = [];

  before(async () => {
    root = openRedis(REDIS_URL, { commandTimeoutMs: 2_000 });
    await redisReady(root, 2_000);
    for (const [role, user] of Object.entries(users) as Array<[RedisUser, (typeof users)[RedisUser]]>) {
      await root.call('ACL', 'SETUSER', user.name, 'reset', `>${user.password}`, ...redisAclRules(role, prefix));
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
    await root.call('ACL', 'DELUSER', users.sidecar.name, users.admin.name);
    await closeRedis(root);
    await dropPrefix(prefix);
    await schema?.drop();
  });

  const deniedTo = async (user: RedisUser): Promise<Array<Record<string, unknown>>> =>
    aclLog(await root.call('ACL', 'LOG', '1000')).filter((entry) => entry['username'] === users[user].name);
  /** The names of the connections open as `user`, sorted. */
  const connectionsOf = async (user: RedisUser): Promise<string[]> => {
    const list = String(await root.call('CLIENT', 'LIST'));
    return list.split('\n').filter((line) => line.includes(` user=${users[user].name} `)).map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '').sort();
  };
  const connect = async (user: RedisUser): Promise<Redis> => {
    const client = openRedis(users[user].url, { commandTimeoutMs: 2_000 });
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
    assert.deepEqual(await connectionsOf('admin'), ['ca-a2a']);
    assert.deepEqual(await deniedTo('sidecar'), []);
    assert.deepEqual(await deniedTo('admin'), []);
  });

  it('a sidecar may not publish revocations, touch the revocation cache or other keys, nor administer Redis', async () => {
    const client = await connect('sidecar');
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

  it('docs/deploy.md shows each user\'s access string as the stack sets it', () => {
    const doc = readFileSync(new URL('../../docs/deploy.md', import.meta.url), 'utf8');
    for (const user of ['sidecar', 'admin'] as const) {
      assert.ok(doc.includes(`| \`ca-a2a-${user}\` | \`${redisAclRules(user).join(' ').replaceAll('|', '\\|')}\` |`), user);
    }
  });

  it('the admin API may not subscribe to the revocations, nor read or reset rate limits, replay ids or token sources', async () => {
    const client = await connect('admin');
    for (const [command = '', ...args] of [['SUBSCRIBE', `${prefix}:revocations`], ['GET', `${prefix}:rl:principal`], ['DEL', `${prefix}:once:proof-1`], ['SET', `${prefix}:sources:jti-1`, 'x'], ['EVAL', 'return 1', '0'], ['FLUSHALL']]) {
      await assert.rejects(client.call(command, ...args), /NOPERM/, `${command} ${args.join(' ')}`);
    }
  });
});
