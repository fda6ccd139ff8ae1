import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { closeRedis, openRedis, redisReady, RedisSilentError } from '../../../proxy/stores/redis.js';
import { REDIS_URL, TcpRelay, uniquePrefix } from '../shared-state/helpers.js';

describe('the Redis client of the sidecars and the admin API', () => {
  let relay: TcpRelay;
  before(async () => {
    relay = new TcpRelay(Number(new URL(REDIS_URL).port || 6379));
    await relay.start();
  });
  after(() => relay.stop());

  // A NAT or load balancer that forgets a connection leaves it open and silent: ioredis still says
  // ready, every command times out, and the kernel gives up only after minutes of retransmissions.
  it('replaces a connection gone silent without closing, reporting it, and answers again on the new one', async () => {
    const errors: Error[] = [];
    const client = openRedis(`redis://127.0.0.1:${relay.port}`, { onError: (error) => errors.push(error) });
    try {
      await redisReady(client, 5_000);
      const key = `${uniquePrefix()}:silent`;
      await client.set(key, 'before', 'EX', 60);
      assert.equal(relay.accepted, 1);
      relay.freeze();
      await assert.rejects(client.get(key), /timed out/i, 'the frozen connection answers nothing');
      let answer: string | null = null;
      for (let waited = 0; answer === null && waited < 15_000; waited += 100) {
        await sleep(100);
        answer = await client.get(key).catch(() => null);
      }
      assert.equal(answer, 'before', 'a command succeeds again, on a new connection');
      assert.equal(relay.accepted, 2);
      const silent = errors.filter((error) => error instanceof RedisSilentError);
      assert.equal(silent.length, 1, errors.map((error) => error.message).join('; '));
      assert.match(silent[0]?.message ?? '', /went silent: 2 PINGs in a row unanswered/);
      await client.del(key);
    } finally {
      await closeRedis(client);
    }
  });
});
