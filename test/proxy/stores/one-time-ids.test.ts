import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { openRedis, closeRedis, redisReady } from '../../../proxy/stores/redis.js';
import { MemoryOneTimeIds, RedisOneTimeIds } from '../../../proxy/stores/one-time-ids.js';
import { MemoryTokenSources, RedisTokenSources } from '../../../proxy/stores/token-sources.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from '../shared-state/helpers.js';

describe('one-time ids', () => {
  const prefix = uniquePrefix();
  const client = openRedis(REDIS_URL);
  after(async () => {
    await closeRedis(client);
    await dropPrefix(prefix);
  });

  it('memory: new once, then seen until the ttl passes', async () => {
    let now = 1_000_000;
    const ids = new MemoryOneTimeIds({ now: () => now });
    assert.equal(await ids.claim('a', 10, now / 1000, 'c'), 'new');
    assert.equal(await ids.claim('a', 10, now / 1000, 'c'), 'seen');
    now += 10_001;
    assert.equal(await ids.claim('a', 10, now / 1000, 'c'), 'new');
  });

  it('memory: stays bounded under a flood of ids, and never takes back an id it forgot early', async () => {
    let now = 1_000_000;
    const ids = new MemoryOneTimeIds({ maxEntries: 100, now: () => now });
    const victimIssuedAt = now / 1000 - 1;
    assert.equal(await ids.claim('victim', 300, victimIssuedAt, 'c'), 'new');
    for (let i = 0; i < 1_000; i++) {
      now += 10;
      assert.equal(await ids.claim(`flood-${i}`, 300, now / 1000, 'c'), 'new');
    }
    assert.ok(ids.size <= 100);
    assert.equal(await ids.claim('flood-999', 300, now / 1000, 'c'), 'seen');
    // The victim's id was forgotten within its ttl: its replay is not 'new', the store cannot tell.
    await assert.rejects(ids.claim('victim', 300, victimIssuedAt, 'c'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
    // Nor is any id minted before the last one forgotten early; a fresh proof still is new.
    await assert.rejects(ids.claim('older', 300, (now - 2_000) / 1000, 'c'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
    assert.equal(await ids.claim('fresh', 300, now / 1000, 'c'), 'new');
    // Ids forgotten at their expiry narrow nothing.
    now += 301_000;
    assert.equal(await ids.claim('later', 300, now / 1000, 'c'), 'new');
  });

  it('memory: never takes back an id minted ahead of its clock (within the leeway) and forgotten early', async () => {
    let now = 1_000_000;
    const ids = new MemoryOneTimeIds({ maxEntries: 100, now: () => now });
    // The client's clock runs 5 s ahead: the proof's iat is after the moment it is claimed.
    const victimIssuedAt = now / 1000 + 5;
    assert.equal(await ids.claim('victim', 310, victimIssuedAt, 'c'), 'new');
    for (let i = 0; i < 200; i++) {
      now += 10;
      assert.equal(await ids.claim(`flood-${i}`, 310, now / 1000 + 6, 'c'), 'new');
    }
    // Forgotten 2 s after its claim, still inside its acceptance window: its replay is not 'new'.
    await assert.rejects(ids.claim('victim', 310, victimIssuedAt, 'c'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
  });

  it('memory: a caller flooding it forgets its own ids first and narrows its own window, not another caller\'s', async () => {
    let now = 1_000_000;
    const ids = new MemoryOneTimeIds({ maxEntries: 100, maxPerCaller: 10, now: () => now });
    const aliceIssuedAt = now / 1000 - 1;
    assert.equal(await ids.claim('alice-1', 300, aliceIssuedAt, 'alice'), 'new');
    for (let i = 0; i < 1_000; i++) {
      now += 10;
      assert.equal(await ids.claim(`flood-${i}`, 300, now / 1000 + 5, 'mallory'), 'new');
    }
    assert.equal(ids.size, 11);
    // Alice's id is still known, and her proofs minted before the flood's are still new.
    assert.equal(await ids.claim('alice-1', 300, aliceIssuedAt, 'alice'), 'seen');
    assert.equal(await ids.claim('alice-2', 300, aliceIssuedAt, 'alice'), 'new');
    // Mallory's window is what her share of memory holds.
    await assert.rejects(ids.claim('flood-0', 300, (1_000_000 + 10) / 1000 + 5, 'mallory'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
    await assert.rejects(ids.claim('mallory-old', 300, aliceIssuedAt, 'mallory'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
  });

  it('memory: many callers fill it: the oldest claims of all go, each narrowing its own caller\'s window, and a caller forgotten with them keeps its mark', async () => {
    let now = 1_000_000;
    const ids = new MemoryOneTimeIds({ maxEntries: 4, maxPerCaller: 4, now: () => now });
    const issuedAt = now / 1000;
    for (let i = 0; i < 12; i++) {
      now += 10;
      assert.equal(await ids.claim(`id-${i}`, 300, issuedAt + i, `caller-${i}`), 'new');
    }
    assert.ok(ids.size <= 4);
    // caller-0's id was forgotten while live, and the record of what caller-0 forgot made room for
    // newer callers: its replay is still not new.
    await assert.rejects(ids.claim('id-0', 300, issuedAt, 'caller-0'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
    assert.equal(await ids.claim('id-11', 300, issuedAt + 11, 'caller-11'), 'seen');
    assert.equal(await ids.claim('fresh', 300, issuedAt + 12, 'caller-0'), 'new');
    // Once those ids would have expired, their marks narrow nothing.
    now += 301_000;
    assert.equal(await ids.claim('id-0', 300, now / 1000, 'caller-0'), 'new');
  });

  it('redis: one claim wins across two stores (replicas)', async () => {
    await redisReady(client, 2_000);
    const a = new RedisOneTimeIds(client, `${prefix}:once`);
    const b = new RedisOneTimeIds(client, `${prefix}:once`);
    const iat = Date.now() / 1000;
    const answers = await Promise.all([a.claim('proof-1', 60, iat, 'c'), b.claim('proof-1', 60, iat, 'c'), a.claim('proof-1', 60, iat, 'c')]);
    assert.deepEqual(answers.sort(), ['new', 'seen', 'seen']);
    assert.ok((await client.ttl(`${prefix}:once:proof-1`)) > 0);
  });

  it('redis unreachable: claim throws STORE_UNAVAILABLE at once instead of queueing', async () => {
    let connectionErrors = 0;
    const dead = openRedis('redis://127.0.0.1:1', { onError: () => connectionErrors++ });
    try {
      await assert.rejects(new RedisOneTimeIds(dead, 'x').claim('proof', 60, Date.now() / 1000, 'c'), (error: { code?: string }) => error.code === 'STORE_UNAVAILABLE');
      // Not timed: a queued command could only fail once a connection attempt had (refused, here).
      assert.equal(connectionErrors, 0, 'refused before waiting on any connection attempt');
    } finally {
      await closeRedis(dead);
    }
  });

  it('token sources: counts distinct addresses per jti, in memory and on Redis', async () => {
    await redisReady(client, 2_000);
    for (const store of [new MemoryTokenSources(), new RedisTokenSources(client, `${prefix}:sources`)]) {
      assert.equal(await store.add('jti-1', '10.0.0.1', 60), 1);
      assert.equal(await store.add('jti-1', '10.0.0.1', 60), 1);
      assert.equal(await store.add('jti-1', '10.0.0.2', 60), 2);
      assert.equal(await store.add('jti-2', '10.0.0.3', 60), 1);
    }
  });
});
