import { after, describe, it } from 'node:test';
import { closeRedis, openRedis, redisReady } from '../../../proxy/stores/redis.js';
import { RedisRevocationBus } from '../../../proxy/stores/revocation-bus.js';
import type { Revocation } from '../../../proxy/stores/revocation-set.js';
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
        void publisherBus.publish(revocation(`published-at-resync-${resyncs}`));
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
});
