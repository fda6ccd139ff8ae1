import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { closeRedis, openRedis, redisReady } from '../../../proxy/stores/redis.js';
import { RedisRevocationBus } from '../../../proxy/stores/revocation-bus.js';
import type { Revocation } from '../../../proxy/stores/revocation-set.js';
import { MemoryRevocationStore } from '../../../proxy/stores/revocation-store.js';
import { Revoker } from '../../../proxy/stores/revoker.js';
import { dropPrefix, REDIS_URL, TcpRelay, uniquePrefix } from '../shared-state/helpers.js';

const revocation = (jti: string): Revocation => ({ kind: 'jti', jti, expiresAt: Math.floor(Date.now() / 1000) + 300 });

describe('Redis revocation bus', () => {
  const prefix = uniquePrefix();
  after(() => dropPrefix(prefix));

  it('resyncs only once it is subscribed: a revocation published when the resync starts is heard, at start and after a reconnect', async () => {
    // The bus's connections go through a relay the test can cut; the publisher's do not.
    const relay = new TcpRelay(Number(new URL(REDIS_URL).port || 6379));
    await relay.start();
    const client = openRedis(`redis://127.0.0.1:${relay.port}`);
    const publisher = openRedis(REDIS_URL);
    await Promise.all([redisReady(client, 2_000), redisReady(publisher, 2_000)]);
    const bus = new RedisRevocationBus(client, prefix, () => undefined);
    const publisherBus = new RedisRevocationBus(publisher, prefix, () => undefined);
    const heard: string[] = [];
    let resyncs = 0;
    let onHeard: (() => void) | undefined;
    bus.subscribe({
      onRevocation: (r) => {
        if (r.kind === 'jti') heard.push(r.jti);
        onHeard?.();
      },
      // What a sidecar does at a resync is read the durable store: anything published from here on
      // must reach it as a message, or wait for the next periodic resync.
      onResync: () => {
        resyncs++;
        void publisherBus.publish(revocation(`published-at-resync-${resyncs}`), Date.now() / 1000);
      },
    });
    const until = (jti: string): Promise<void> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${jti} not heard; heard ${heard.join(' ')}`)), 2_000);
      onHeard = () => {
        if (!heard.includes(jti)) return;
        clearTimeout(timer);
        resolve();
      };
      onHeard();
    });
    try {
      await until('published-at-resync-1');
      // Cut the bus's connections: ioredis reconnects and resubscribes.
      await relay.stop();
      await relay.start();
      await until('published-at-resync-2');
    } finally {
      await bus.close();
      await publisherBus.close();
      await Promise.all([closeRedis(client), closeRedis(publisher)]);
      await relay.stop();
    }
  });

  it('computes the cache entry\'s expiry and trims the live set on the revoker\'s clock, not the host\'s', async () => {
    const client = openRedis(REDIS_URL);
    await redisReady(client, 2_000);
    const clockPrefix = `${prefix}-clock`;
    const bus = new RedisRevocationBus(client, clockPrefix, () => undefined);
    // Ten days behind the host: on the host's clock the revocation below expired long ago.
    const clock = Math.floor(Date.now() / 1000) - 10 * 24 * 3600;
    const revoker = new Revoker({ store: new MemoryRevocationStore(), bus, now: () => clock * 1000 });
    try {
      const result = await revoker.revoke({ kind: 'jti', jti: 'clocked', expiresAt: clock + 600, reason: 'r', revokedBy: 'me' });
      assert.equal(result.pushed, true);
      const expiresAt = result.record.revocation.expiresAt;
      const ttl = await client.ttl(`${clockPrefix}:revoked:jti:clocked`);
      assert.ok(ttl > 0 && ttl <= Math.ceil(expiresAt - clock) && ttl >= Math.ceil(expiresAt - clock) - 5, `ttl ${ttl}`);
      assert.deepEqual((await bus.live(clock)).map((r) => r.kind === 'jti' && r.jti), ['clocked']);
      // A later revocation on that clock trims nothing still in force on it.
      await revoker.revoke({ kind: 'subject', subject: 'someone', reason: 'r', revokedBy: 'me' });
      assert.deepEqual((await bus.live(clock)).map((r) => r.kind).sort(), ['jti', 'subject']);
    } finally {
      await bus.close();
      await dropPrefix(clockPrefix);
      await closeRedis(client);
    }
  });
});
