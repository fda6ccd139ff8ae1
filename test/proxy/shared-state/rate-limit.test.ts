import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { startTestIssuer, type TestIssuer } from '../../helpers/test-issuer.js';
import { openRedis, redisReady } from '../../../proxy/stores/redis.js';
import { redisCounters } from '../../../proxy/stores/rate-limit-redis.js';
import { SlidingWindowRateLimit } from '../../../proxy/stores/rate-limit.js';
import { createTestSchema, dropPrefix, REDIS_URL, TcpRelay, uniquePrefix, until } from './helpers.js';

const policy = (points: number) => writePolicy(`service: shared-rl
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
rate_limit: { points: ${points}, window_seconds: 60 }
methods:
  get_document: {}
`);

const get = () => rpc('get_document', { document_id: DOC_ID });

describe('rate limits on Redis', () => {
  const prefix = uniquePrefix();
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let issuer: TestIssuer;
  let a: Harness;
  let b: Harness;

  before(async () => {
    schema = await createTestSchema();
    issuer = await startTestIssuer();
    const stores = { redisUrl: REDIS_URL, databaseUrl: schema.urlFor(), keyPrefix: prefix };
    const file = policy(6);
    a = await startHarness({ policyFile: file, issuer, sidecar: { stores } });
    b = await startHarness({ policyFile: file, issuer, sidecar: { stores } });
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await issuer?.close();
    await schema?.drop();
    await dropPrefix(prefix);
  });

  it('gives two replicas of a service one shared budget per principal', async () => {
    const token = await issuer.sign({ sub: 'shared-user' });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await a.call(get(), { token })).status);
      statuses.push((await b.call(get(), { token })).status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
    assert.equal((await a.call(get(), { token: await issuer.sign({ sub: 'someone-else' }) })).status, 200);
  });
});

describe('rate limits while Redis restarts', () => {
  const prefix = uniquePrefix();
  let relay: TcpRelay;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let issuer: TestIssuer;
  let h: Harness;

  before(async () => {
    relay = new TcpRelay(Number(new URL(REDIS_URL).port || 6379));
    await relay.start();
    schema = await createTestSchema();
    issuer = await startTestIssuer();
    h = await startHarness({ policyFile: policy(1000), issuer, sidecar: { stores: { redisUrl: `redis://127.0.0.1:${relay.port}`, databaseUrl: schema.urlFor(), keyPrefix: prefix } } });
  });
  after(async () => {
    await h?.close();
    await relay?.stop();
    await issuer?.close();
    await schema?.drop();
    await dropPrefix(prefix);
  });

  it('falls back to the insurance limiter, says so in metrics and logs, keeps serving and recovers', async () => {
    const token = await issuer.sign({ sub: 'steady-traffic' });
    const insured = () => h.metric('ca_a2a_store_errors_total', { store: 'rate_limit', fallback: 'insurance' });
    let stop = false;
    const statuses: number[] = [];
    const traffic = (async () => {
      while (!stop) statuses.push((await h.call(get(), { token })).status);
    })();
    // Each wait is for the event itself, not for a guess at how long it takes.
    await until(async () => statuses.length > 0);
    await relay.stop();
    await until(async () => (await insured()) > 0);
    assert.ok(h.audit.lines.some((line) => line.event_type === 'store_failure' && line.fallback === 'insurance'));
    // Redis comes back once the client has seen it gone (a reconnect refused), so that it recovers.
    await until(async () => h.audit.lines.some((line) => line.event_type === 'store_failure' && line.store === 'redis'));
    await relay.start();
    // Back on Redis: once the client is ready again the insurance counter stops moving.
    await until(async () => h.audit.lines.some((line) => line.event_type === 'store_recovered'));
    const settled = await insured();
    const before = statuses.length;
    await until(async () => statuses.length >= before + 20);
    stop = true;
    await traffic;
    assert.ok(statuses.every((status) => status === 200), `every request served: ${[...new Set(statuses)].join(',')}`);
    assert.equal(await insured(), settled, 'requests after the reconnect were counted on Redis');
  });
});

describe('one principal\'s concurrent requests on Redis', () => {
  it('are counted exactly, in fewer Redis commands than requests', async () => {
    const prefix = uniquePrefix();
    const client = openRedis(REDIS_URL, { commandTimeoutMs: 2_000 });
    const watcher = openRedis(REDIS_URL);
    const monitor = await watcher.monitor();
    const commands: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((arg) => arg.includes(prefix))) commands.push(String(args[0]).toLowerCase());
    });
    try {
      // The client fails fast (no offline queue): a command sent before it is connected would fail.
      await redisReady(client, 5_000);
      // Counted and asserted after: the insurance limiter must not answer while Redis is up.
      let insured = 0;
      const limiter = new SlidingWindowRateLimit(redisCounters(client, () => insured++), prefix);
      const rule = { points: 20, windowSeconds: 60 };
      const outcomes = await Promise.all(Array.from({ length: 50 }, () => limiter.consume('svc:default:alice', rule, 1)));
      assert.equal(outcomes.filter((outcome) => outcome.allowed).length, 20, 'exactly the budget is allowed');
      const remaining = outcomes.filter((outcome) => outcome.allowed).map((outcome) => outcome.remaining).sort((a, b) => b - a);
      assert.deepEqual(remaining, Array.from({ length: 20 }, (_, i) => 19 - i), 'each request sees its own place in the count');
      const next = await limiter.consume('svc:default:alice', rule, 1);
      assert.equal(next.allowed, false);
      assert.equal(next.remaining, 0);
      assert.equal(insured, 0, 'Redis is up: the insurance limiter never answered');
      // MONITOR lines arrive after the replies, in the order Redis ran the commands: once this
      // marker is seen, every command before it is.
      await client.echo(`${prefix}:done`);
      while (!commands.includes('echo')) await new Promise((resolve) => setImmediate(resolve));
      const increments = commands.filter((command) => command.startsWith('eval'));
      assert.ok(increments.length >= 2 && increments.length < 20, `${increments.length} counter updates for 51 requests`);
    } finally {
      monitor.disconnect();
      watcher.disconnect();
      client.disconnect();
      await dropPrefix(prefix);
    }
  });
});


describe('rate limits with Redis unreachable', () => {
  it('answers from the insurance limiter even when the observer told of it throws, instead of never settling', async () => {
    // A port nothing listens on: the client never becomes ready, so every consume goes to the insurance limiter.
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const client = openRedis(`redis://127.0.0.1:${port}`);
    try {
      let told = 0;
      const limiter = new SlidingWindowRateLimit(redisCounters(client, () => {
        told++;
        throw new Error('observer failed');
      }), uniquePrefix());
      const rule = { points: 2, windowSeconds: 60 };
      const outcomes = await Promise.all([1, 2, 3].map(() => limiter.consume('svc:default:bob', rule, 1)));
      assert.deepEqual(outcomes.map((outcome) => outcome.allowed), [true, true, false]);
      assert.ok(told > 0);
    } finally {
      client.disconnect();
    }
  });
});
