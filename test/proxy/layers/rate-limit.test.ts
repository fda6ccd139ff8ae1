import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';
import { memoryCounters, SlidingWindowRateLimit } from '../../../proxy/stores/rate-limit.js';
import { tempDirSync } from '../../helpers/temp-dir.js';

describe('rate-limit layer', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      policyFile: writePolicy(`service: rl-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
rate_limit:
  points: 3
  window_seconds: 60
  per_role:
    admin: { points: 6 }
methods:
  get_document: {}
  list_documents:
    rate_limit: { points: 1 }
`),
    });
  });
  after(() => h.close());

  const get = () => rpc('get_document', { document_id: DOC_ID });

  it('allows the budget, then refuses with 429, Retry-After, RateLimit-* headers and -32029', async () => {
    const token = await h.issuer.sign({ sub: 'user-a' });
    for (let i = 0; i < 3; i++) {
      const res = await h.call(get(), { token });
      assert.equal(res.status, 200);
      assert.equal(res.headers['ratelimit-limit'], '3');
      assert.equal(res.headers['ratelimit-remaining'], String(2 - i));
    }
    const count = h.upstream.requests.length;
    const res = await h.call(get(), { token });
    assert.equal(res.status, 429);
    assert.equal(res.json.error?.code, -32029);
    assert.ok(Number(res.headers['retry-after']) >= 1);
    assert.equal(h.upstream.requests.length, count);
    assert.ok(h.audit.events('rate_limited').length >= 1);
    assert.ok((await h.metric('ca_a2a_rate_limited_total')) >= 1);
  });

  it('keys the budget by subject: another principal is unaffected, a new token of the same subject is not', async () => {
    assert.equal((await h.call(get(), { token: await h.issuer.sign({ sub: 'user-b' }) })).status, 200);
    assert.equal((await h.call(get(), { token: await h.issuer.sign({ sub: 'user-a' }) })).status, 429);
  });

  it('gives a role its own budget', async () => {
    const token = await h.issuer.sign({ sub: 'admin-1', realm_access: { roles: ['admin'] } });
    const statuses = [];
    for (let i = 0; i < 7; i++) statuses.push((await h.call(get(), { token })).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429]);
  });

  it('gives a method its own budget', async () => {
    const token = await h.issuer.sign({ sub: 'user-c' });
    assert.equal((await h.call(rpc('list_documents', {}), { token })).status, 200);
    assert.equal((await h.call(rpc('list_documents', {}), { token })).status, 429);
    assert.equal((await h.call(get(), { token })).status, 200, 'the default budget is separate');
  });

  it('spends one point per call of a batch', async () => {
    const token = await h.issuer.sign({ sub: 'user-d' });
    assert.equal((await h.call([get(), get()], { token })).status, 200);
    assert.equal((await h.call([get(), get()], { token })).status, 429);
  });

  it('charges each call of a batch to its own method\'s budget: a batch cannot get round a per-method limit', async () => {
    const token = await h.issuer.sign({ sub: 'user-e' });
    const before = h.upstream.requests.length;
    const batch = [rpc('list_documents', {}, 1), rpc('list_documents', {}, 2)];
    const res = await h.call(batch, { token });
    assert.equal(res.status, 429, 'two calls of a method allowed once a minute');
    assert.equal(res.headers['ratelimit-policy'], '1;w=60', 'the headers name the budget that refused');
    assert.equal(h.upstream.requests.length, before);
    assert.equal((await h.call([rpc('list_documents', {}, 1), get()], { token })).status, 429, 'its budget is spent');
    // The default budget was charged only for the get_document calls: 1 of 3 so far.
    assert.equal((await h.call([get(), get()], { token })).status, 200);
  });

  it('keeps principals apart when a role or subject holds a colon', async () => {
    const rbac = join(tempDirSync('rbac'), 'rbac.yaml');
    writeFileSync(rbac, 'roles:\n  ops: { allow: [get_document] }\n  "ops:read": { allow: [get_document] }\n');
    const policyFile = writePolicy(`service: rl-colon
rbac: ${rbac}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
rate_limit:
  points: 1
  window_seconds: 60
  per_role:
    ops: { points: 2 }
    "ops:read": { points: 2 }
methods:
  get_document: {}
`);
    const colon = await startHarness({ policyFile, issuer: h.issuer });
    try {
      const victim = await h.issuer.sign({ sub: 'read:alice', realm_access: { roles: ['ops'] } });
      const other = await h.issuer.sign({ sub: 'alice', realm_access: { roles: ['ops:read'] } });
      assert.equal((await colon.call(get(), { token: victim })).status, 200);
      assert.equal((await colon.call(get(), { token: victim })).status, 200);
      assert.equal((await colon.call(get(), { token: other })).status, 200, 'another principal\'s budget is untouched');
    } finally {
      await colon.close();
    }
  });
});

describe('sliding window', () => {
  it('weighs the previous window by the part of it still inside the sliding window', async () => {
    let now = 60_000 * 1000;
    const limiter = new SlidingWindowRateLimit(memoryCounters, 'sw-test', () => now);
    const rule = { points: 10, windowSeconds: 60 };
    for (let i = 0; i < 10; i++) assert.equal((await limiter.consume('k', rule, 1)).allowed, true);
    assert.equal((await limiter.consume('k', rule, 1)).allowed, false);
    now += 60_000 + 15_000; // a quarter into the next window: previous counts for 3/4
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push((await limiter.consume('k', rule, 1)).allowed);
    // 11 × 0.75 = 8.25 carried over: 1 more fits (9.25), the second makes 10.25 > 10.
    assert.deepEqual(outcomes, [true, false, false, false]);
    now += 60_000; // one more window: only the previous window's 4 attempts weigh (4 × 0.75 + 1 = 4)
    assert.equal((await limiter.consume('k', rule, 1)).allowed, true);
  });

  it('answers a Retry-After after which the same request passes, and not much later', async () => {
    const rule = { points: 10, windowSeconds: 60 };
    // Spends the budget to the first refusal, then tries again `retryAt(resetSeconds)` ms later.
    const scenario = async (start: number, previous: number, retryAt: (resetSeconds: number) => number): Promise<{ resetSeconds: number; allowed: boolean }> => {
      let now = 60_000 * 1000 + start;
      const limiter = new SlidingWindowRateLimit(memoryCounters, 'sw-retry', () => now);
      for (let i = 0; i < previous; i++) await limiter.consume('k', rule, 1);
      now += previous > 0 ? 60_000 : 0;
      let refused = await limiter.consume('k', rule, 1);
      while (refused.allowed) refused = await limiter.consume('k', rule, 1);
      now += retryAt(refused.resetSeconds);
      return { resetSeconds: refused.resetSeconds, allowed: (await limiter.consume('k', rule, 1)).allowed };
    };
    // A burst at the start of a window, one 30 s into it, and one in the window after a full one.
    for (const [start, previous] of [[0, 0], [30_000, 0], [0, 10]] as const) {
      const obeyed = await scenario(start, previous, (seconds) => seconds * 1000);
      assert.equal(obeyed.allowed, true, `retry after ${obeyed.resetSeconds} s (start ${start}, previous ${previous})`);
      const early = await scenario(start, previous, (seconds) => seconds * 1000 - 1000);
      assert.equal(early.allowed, false, `a second early is still refused (start ${start}, previous ${previous})`);
    }
  });

  it('keeps counting a budget across policy versions that carry the same points and window', async () => {
    const now = 60_000 * 1000;
    const limiter = new SlidingWindowRateLimit(memoryCounters, 'sw-reload', () => now);
    for (let i = 0; i < 3; i++) assert.equal((await limiter.consume('k', { points: 3, windowSeconds: 60 }, 1)).allowed, true);
    // A reload builds new rule objects: the budget they describe is the one already spent.
    const reloaded = { points: 3, windowSeconds: 60 };
    assert.equal((await limiter.consume('k', reloaded, 1)).allowed, false);
    assert.equal((await limiter.consume('k', { points: 4, windowSeconds: 60 }, 1)).allowed, true, 'another budget counts apart');
  });
});
