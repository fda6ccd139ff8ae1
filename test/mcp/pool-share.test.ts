import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { limitPerCaller } from '../../mcp/caller-limit.js';
import type { CallerLimitOptions } from '../../mcp/caller-limit.js';
import { createGatewayMetrics } from '../../mcp/metrics.js';
import { createResilientBackend } from '../../mcp/resilience.js';
import { captureLogger } from './helpers.js';

/** A call that starts when the limiter lets it through and ends when the test says so. */
interface HeldCall {
  readonly started: Promise<string>;
  readonly done: Promise<unknown>;
  end(): void;
}

/** The limiter over a real resilience policy whose calls the test starts and ends by hand. */
function limiter(options: CallerLimitOptions) {
  const metrics = createGatewayMetrics(() => ({ total: 0, idle: 0, waiting: 0 }));
  const { logger, lines } = captureLogger();
  const backend = createResilientBackend('postgres', () => false, { timeoutMs: 600_000 }, metrics, logger);
  const limit = limitPerCaller(backend, options, metrics, logger);
  const call = (clientId: string, name: string): HeldCall => {
    let markStarted!: (name: string) => void;
    let end!: () => void;
    const started = new Promise<string>((ok) => (markStarted = ok));
    const ended = new Promise<void>((ok) => (end = ok));
    const done = limit.forCaller({ client_id: clientId }).run(async () => {
      markStarted(name);
      await ended;
      return name;
    });
    // Refusals are read from `done` by the test that expects them.
    done.catch(() => undefined);
    return { started, done, end };
  };
  return { call, lines, metrics, close: () => limit.close(), dispose: () => backend.dispose() };
}

describe('pool sharing among callers (limitPerCaller)', () => {
  // A pool of 6 with 1 kept back: callers' further calls share 5; at most 4 per caller.
  const l = limiter({ maxConcurrent: 4, maxWaitMs: 600_000, poolSize: 6, reserved: 1 });
  after(() => l.dispose());

  it('hands a freed slot to the waiting caller holding fewest, then first come first served', async () => {
    const a = [1, 2, 3, 4, 5].map((i) => l.call('a', `a${i}`));
    await Promise.all(a.slice(0, 4).map((c) => c.started));
    const [b1, b2, b3] = [1, 2, 3].map((i) => l.call('b', `b${i}`)) as [HeldCall, HeldCall, HeldCall];
    // b's first call takes the fifth shared slot; its next ones, like a's fifth, wait.
    await b1.started;
    // A caller with nothing in flight takes the connection kept back.
    const c1 = l.call('c', 'c1');
    assert.equal(await c1.started, 'c1');
    c1.end();
    assert.equal(await c1.done, 'c1');
    const a5 = a[4] as HeldCall;
    const next = () => Promise.race([a5.started, b2.started, b3.started]);

    (a[0] as HeldCall).end();
    // a holds 3, b holds 1: b's waiting call goes first, though a's came earlier.
    assert.equal(await next(), 'b2');
    (a[1] as HeldCall).end();
    // a holds 2, b holds 2: the earlier of the two waiting.
    assert.equal(await Promise.race([a5.started, b3.started]), 'a5');
    (a[2] as HeldCall).end();
    assert.equal(await b3.started, 'b3');

    for (const c of [...a, b1, b2, b3]) c.end();
    assert.deepEqual(await Promise.all([...a, b1, b2, b3].map((c) => c.done)), ['a1', 'a2', 'a3', 'a4', 'a5', 'b1', 'b2', 'b3']);
  });
});

describe('pool sharing among callers: a call held back by the shared part of the pool', () => {
  const l = limiter({ maxConcurrent: 3, maxWaitMs: 20, poolSize: 3, reserved: 1 });
  after(() => l.dispose());

  it('is refused with caller_busy naming what it holds once its wait runs out; its slots are whole again after', async () => {
    const a1 = l.call('a', 'a1');
    const b1 = l.call('b', 'b1');
    await Promise.all([a1.started, b1.started]);
    const a2 = l.call('a', 'a2');
    await assert.rejects(a2.done, (err: { code: string; message: string; details: Record<string, unknown> }) => {
      assert.equal(err.code, 'caller_busy');
      assert.equal(err.message, 'this caller already runs 1 postgres calls and the rest of the pool is kept for other callers; ask again once one has ended');
      assert.deepEqual(err.details, { backend: 'postgres', retry_after_seconds: 1 });
      return true;
    });
    const line = l.lines.find((x) => x.event_type === 'mcp_caller_limited');
    assert.equal(line?.reason, 'pool_share');
    assert.equal(line?.held, 1);
    a1.end();
    b1.end();
    await Promise.all([a1.done, b1.done]);
    // Every slot is free again: a caller's calls go up to its bound of 3 less the one kept back.
    const again = [1, 2].map((i) => l.call('a', `a${i}`));
    assert.deepEqual(await Promise.all(again.map((c) => c.started)), ['a1', 'a2']);
    for (const c of again) c.end();
    await Promise.all(again.map((c) => c.done));
  });
});

/** Timers that keep the process alive (an unref'd one is not listed). */
const liveTimers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;

describe('pool sharing among callers: calls still waiting when the gateway stops', () => {
  const l = limiter({ maxConcurrent: 1, maxWaitMs: 600_000, poolSize: 10, reserved: 0 });
  after(() => l.dispose());

  it('holds no timer that keeps the process alive; close() refuses them and every later call, and lets running calls end', async () => {
    const a1 = l.call('a', 'a1');
    await a1.started;
    const before = liveTimers();
    const a2 = l.call('a', 'a2');
    const a3 = l.call('a', 'a3');
    assert.equal(liveTimers(), before, 'a wait of 10 minutes would hold a stopping process that long');
    assert.equal((await l.metrics.callerWaiting.get()).values[0]?.value, 2);
    l.close();
    for (const waiting of [a2, a3]) {
      await assert.rejects(waiting.done, (err: { code: string; message: string; details: Record<string, unknown> }) => {
        assert.equal(err.code, 'backend_unavailable');
        assert.equal(err.message, 'the gateway is stopping; postgres calls are no longer taken');
        assert.deepEqual(err.details, { backend: 'postgres', retry_after_seconds: 1 });
        return true;
      });
    }
    await assert.rejects(l.call('b', 'b1').done, { code: 'backend_unavailable' });
    assert.equal((await l.metrics.callerWaiting.get()).values[0]?.value, 0);
    a1.end();
    assert.equal(await a1.done, 'a1');
  });
});
