import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { createGatewayMetrics } from '../../mcp/metrics.js';
import { createResilientBackend } from '../../mcp/resilience.js';
import { PG_URL, TcpRelay, callTool, captureLogger, createTestSchema, metricValue, tempDir, waitingOnLock } from './helpers.js';

const HALF_OPEN_MS = 300;

describe('PostgreSQL resilience: retries, circuit breaker, pool bounds', () => {
  let gw: McpGateway;
  let relay: TcpRelay;
  const cleanups: (() => Promise<void>)[] = [];
  const attempts = (result: string) => metricValue(gw.url, 'ca_a2a_mcp_backend_attempts_total', { backend: 'postgres', result });
  const health = async () => (await (await fetch(`${gw.url}/health`)).json()) as { status: string; backends: Record<string, { breaker: string }> };

  before(async () => {
    const schema = await createTestSchema();
    cleanups.push(() => schema.drop());
    relay = new TcpRelay(Number(new URL(PG_URL).port || 5432));
    await relay.start();
    cleanups.unshift(() => relay.stop());
    const dataDir = await tempDir();
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    gw = await startMcpGateway({
      port: 0,
      dataDir,
      databaseUrl: schema.urlFor(`127.0.0.1:${relay.port}`),
      pool: { connectionTimeoutMs: 3_000 },
      breaker: { failureThreshold: 5, halfOpenAfterMs: HALF_OPEN_MS, initialDelayMs: 5, maxDelayMs: 20 },
      logger: captureLogger().logger,
    });
    cleanups.unshift(() => gw.close());
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('does not retry a constraint violation or a conflict (one attempt each)', async () => {
    const before = { permanent: await attempts('permanent'), transient: await attempts('transient') };
    const fk = await callTool(gw.url, 'processing_logs_append', { document_id: randomUUID(), step: 'extract', status: 'started' });
    assert.equal(fk.body.error?.code, 'not_found');
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: `uploads/${randomUUID()}.pdf`, size_bytes: 1, sha256: 'b'.repeat(64) };
    assert.equal((await callTool(gw.url, 'documents_create', doc)).status, 200);
    const dup = await callTool(gw.url, 'documents_create', doc);
    assert.equal(dup.body.error?.code, 'conflict');
    assert.equal(await attempts('permanent'), before.permanent + 2);
    assert.equal(await attempts('transient'), before.transient);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_state', { backend: 'postgres' }), 0, 'permanent errors do not trip the breaker');
  });

  it('retries transient failures, opens after 5 failed calls, fails fast naming the backend, then half-opens and closes', async () => {
    await relay.stop();
    const transientBefore = await attempts('transient');
    for (let i = 0; i < 5; i++) {
      const r = await callTool(gw.url, 'documents_list', {});
      assert.equal(r.status, 502, `call ${i}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error?.code, 'backend_error');
      assert.equal(r.body.error?.backend, 'postgres');
    }
    assert.equal(await attempts('transient'), transientBefore + 15, 'three tries per call');
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_state', { backend: 'postgres' }), 2);

    const fast = await callTool(gw.url, 'documents_list', {});
    assert.equal(fast.status, 503);
    assert.equal(fast.body.error?.code, 'backend_unavailable');
    assert.equal(fast.body.error?.backend, 'postgres');
    assert.match(String(fast.body.error?.message), /postgres/);
    assert.ok(Number(fast.body.error?.retry_after_seconds) >= 1);
    assert.equal(fast.retryAfter, String(fast.body.error?.retry_after_seconds), 'the header says the same as the body');
    assert.equal(await attempts('transient'), transientBefore + 15, 'an open breaker makes no attempt');
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_rejections_total', { backend: 'postgres' }), 1);
    const degraded = await health();
    assert.equal(degraded.status, 'degraded');
    assert.equal(degraded.backends.postgres?.breaker, 'open');
    assert.equal(degraded.backends.s3?.breaker, 'closed');

    // Half-open trial while still down: it fails and the breaker opens again.
    await sleep(HALF_OPEN_MS + 50);
    assert.equal((await callTool(gw.url, 'documents_list', {})).body.error?.code, 'backend_error');
    assert.equal((await callTool(gw.url, 'documents_list', {})).body.error?.code, 'backend_unavailable');
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_transitions_total', { backend: 'postgres', state: 'half_open' }), 1);

    // Backend back: the next trial after the wait succeeds and closes the breaker.
    await relay.start();
    await sleep(HALF_OPEN_MS + 50);
    const ok = await callTool(gw.url, 'documents_list', {});
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_state', { backend: 'postgres' }), 0);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_transitions_total', { backend: 'postgres', state: 'half_open' }), 2);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_transitions_total', { backend: 'postgres', state: 'closed' }), 1);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_transitions_total', { backend: 'postgres', state: 'open' }), 2);
    assert.equal((await health()).status, 'ok');
  });

  it('serves a burst of 50 concurrent calls on at most 10 connections', async () => {
    relay.maxOpen = 0;
    const results = await Promise.all(Array.from({ length: 50 }, () => callTool(gw.url, 'documents_list', { limit: 5 })));
    assert.ok(results.every((r) => r.status === 200));
    assert.ok(relay.maxOpen <= 10, `opened ${relay.maxOpen} connections at once`);
    assert.ok(relay.maxOpen >= 1);
    assert.ok((await metricValue(gw.url, 'ca_a2a_mcp_pool_clients', { state: 'total' })) <= 10);
  });
});

describe('PostgreSQL timeouts: a hung statement', () => {
  let gw: McpGateway;
  let locker: pg.Client;
  let documentId: string;
  const cleanups: (() => Promise<void>)[] = [];
  const attempts = (result: string) => metricValue(gw.url, 'ca_a2a_mcp_backend_attempts_total', { backend: 'postgres', result });

  before(async () => {
    const schema = await createTestSchema();
    cleanups.push(() => schema.drop());
    const dataDir = await tempDir();
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    gw = await startMcpGateway({
      port: 0,
      dataDir,
      databaseUrl: schema.urlFor(),
      breaker: { timeoutMs: 300, failureThreshold: 2, halfOpenAfterMs: 60_000, initialDelayMs: 5, maxDelayMs: 20 },
      logger: captureLogger().logger,
    });
    cleanups.unshift(() => gw.close());
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/hung.pdf', size_bytes: 1, sha256: 'c'.repeat(64) };
    documentId = String((await callTool(gw.url, 'documents_create', doc)).body.document_id);
    // Another session holds the table: every statement on it (an INSERT of a log checks its
    // document) waits, as on a hung server.
    locker = new pg.Client({ connectionString: schema.urlFor() });
    await locker.connect();
    cleanups.unshift(() => locker.end());
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE documents IN ACCESS EXCLUSIVE MODE');
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('answers a timed-out write with 502 backend_error after one try, and never sends it again', async () => {
    const before = await attempts('transient');
    const r = await callTool(gw.url, 'processing_logs_append', { document_id: documentId, step: 'extract', status: 'started' });
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, 'backend_error');
    assert.equal(r.body.error?.backend, 'postgres');
    assert.equal(await attempts('transient'), before + 1, 'the timed-out INSERT may still commit: it is not retried');
  });

  it('retries a timed-out read, counts it toward the breaker, then fails fast', async () => {
    const before = await attempts('transient');
    const r = await callTool(gw.url, 'documents_get', { document_id: documentId });
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, 'backend_error');
    assert.equal(await attempts('transient'), before + 3, 'three tries');
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_breaker_state', { backend: 'postgres' }), 2, 'two failed calls open it');
    assert.equal((await callTool(gw.url, 'documents_get', { document_id: documentId })).body.error?.code, 'backend_unavailable');
  });

  it('leaves at most one row of the timed-out write once the tables are free', async () => {
    await locker.query('COMMIT');
    // A SHARE lock is granted only after the INSERTs queued before it have finished.
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE processing_logs IN SHARE MODE');
    const { rows } = await locker.query<{ n: number }>('SELECT count(*)::int AS n FROM processing_logs WHERE document_id = $1', [documentId]);
    await locker.query('COMMIT');
    assert.ok((rows[0]?.n ?? 0) <= 1, `${rows[0]?.n} rows`);
  });
});

describe('PostgreSQL pool exhausted by a statement waiting on a lock', () => {
  let gw: McpGateway;
  let lines: Record<string, unknown>[];
  let holder: pg.Client;
  let observer: pg.Client;
  let documentId = '';
  const applicationName = `mcp-pool-${randomUUID().slice(0, 8)}`;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    const schema = await createTestSchema();
    cleanups.push(() => schema.drop());
    const dataDir = await tempDir();
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const captured = captureLogger();
    lines = captured.lines;
    gw = await startMcpGateway({
      port: 0,
      dataDir,
      databaseUrl: schema.urlFor(),
      pool: { min: 0, max: 1, connectionTimeoutMs: 200, applicationName },
      breaker: { initialDelayMs: 5, maxDelayMs: 20 },
      logger: captured.logger,
    });
    cleanups.unshift(() => gw.close());
    holder = new pg.Client({ connectionString: schema.urlFor() });
    observer = new pg.Client({ connectionString: schema.urlFor() });
    await holder.connect();
    await observer.connect();
    cleanups.unshift(() => holder.end(), () => observer.end());
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/locked.pdf', size_bytes: 1, sha256: 'c'.repeat(64) };
    documentId = String((await callTool(gw.url, 'documents_create', doc)).body.document_id);
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('bounds the wait for a pooled connection: the other call answers 502 backend_error, logged as a pool wait', async () => {
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [documentId]);
    const blocked = callTool(gw.url, 'documents_update', { document_id: documentId, error: 'held' });
    await waitingOnLock(observer, applicationName);
    // Another caller: the same caller's call would wait behind its own, within its per-caller bound.
    const starved = await callTool(gw.url, 'documents_get', { document_id: documentId }, { 'x-ca-a2a-request-id': 'req-starved', 'x-ca-a2a-client-id': 'other' });
    assert.equal(starved.status, 502, JSON.stringify(starved.body));
    assert.deepEqual(starved.body.error, { code: 'backend_error', message: 'postgres failed', backend: 'postgres' });
    const line = lines.find((l) => l.event_type === 'mcp_backend_error' && l.backend === 'postgres');
    assert.equal(line?.err_message, 'timeout exceeded when trying to connect', JSON.stringify(line));
    await holder.query('ROLLBACK');
    assert.equal((await blocked).status, 200);
  });
});

describe('a backend being stopped (dispose)', () => {
  it('gives up the tries still running (their signals aborted, none tried again), refuses later calls backend_unavailable, and warns of no listener leak', async () => {
    const metrics = createGatewayMetrics(() => ({ total: 0, idle: 0, waiting: 0 }));
    const backend = createResilientBackend('s3', () => true, { timeoutMs: 600_000 }, metrics, captureLogger().logger);
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      // More than Node's default of 10 listeners on one signal.
      const signals: AbortSignal[] = [];
      const calls = Array.from({ length: 20 }, () => backend.run((signal) => {
        signals.push(signal);
        return new Promise<never>(() => undefined);
      }));
      while (signals.length < calls.length) await setImmediate();
      backend.dispose();
      const stopping = { code: 'backend_unavailable', message: 'the gateway is stopping; s3 calls are no longer taken', details: { backend: 's3', retry_after_seconds: 1 } };
      for (const call of calls) await assert.rejects(call, stopping);
      assert.equal(signals.length, calls.length, 'no try after the stop');
      assert.ok(signals.every((signal) => signal.aborted));
      let ran = false;
      await assert.rejects(backend.run(async () => (ran = true)), stopping);
      assert.equal(ran, false);
      await setImmediate();
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
    }
  });

  // Run in a process of its own, which must then end by itself: a timer left behind by the stop
  // would hold it for the 10 minutes of the backoff, as it would hold a stopping gateway.
  it('ends a backoff wait at once: a call stopped between its tries is refused backend_unavailable, tried no more, and leaves no timer holding the process', { timeout: 60_000 }, async (t) => {
    const script = `
      import { setImmediate } from 'node:timers/promises';
      import { pino } from 'pino';
      import { createGatewayMetrics } from './mcp/metrics.ts';
      import { createResilientBackend } from './mcp/resilience.ts';
      const metrics = createGatewayMetrics(() => ({ total: 0, idle: 0, waiting: 0 }));
      // A backoff of minutes: only the stop can end it.
      const backend = createResilientBackend('s3', () => true, { initialDelayMs: 600_000, maxDelayMs: 600_000 }, metrics, pino({ level: 'silent' }));
      let tries = 0;
      const call = backend.run(async () => {
        tries += 1;
        throw new Error('connection reset');
      });
      const outcome = call.then(() => ({ answered: true }), (error) => ({ code: error.code, message: error.message }));
      // The failed try goes through the policy to the backoff wait within this turn of the loop.
      await setImmediate();
      const triesBeforeStop = tries;
      backend.dispose();
      // Settled before the next turn of the event loop, not when the backoff would have ended.
      const settled = await Promise.race([outcome, setImmediate('still waiting')]);
      console.log(JSON.stringify({ triesBeforeStop, settled, tries }));`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../../', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'], signal: t.signal,
    });
    try {
      const closed = once(child, 'close');
      // Read as soon as it is written: a call still waiting fails the test then, not at its timeout.
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      assert.deepEqual(JSON.parse(line), {
        triesBeforeStop: 1, tries: 1,
        settled: { code: 'backend_unavailable', message: 'the gateway is stopping; s3 calls are no longer taken' },
      });
      const [code] = (await closed) as [number | null];
      assert.equal(code, 0, 'the process ended by itself: no timer of the backoff was left');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
