import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import pg from 'pg';
import type { McpGateway } from '../../mcp/gateway.js';
import { callTool, metricValue, startTestGateway, waitingOnLock } from './helpers.js';

const FLOODER = { 'x-ca-a2a-client-id': 'agent-flood', 'x-ca-a2a-subject': 'svc-flood', 'x-ca-a2a-request-id': 'req-flood' };
const OTHER = { 'x-ca-a2a-client-id': 'agent-other' };

/** A gateway on a pool of `poolMax` (2), a document whose row another session holds, and an observer of who waits on it. */
function lockedDocumentSuite(perCaller: { maxWaitMs?: number }, poolMax = 2) {
  const applicationName = `mcp-caller-${randomUUID().slice(0, 8)}`;
  const state = {} as { gw: McpGateway; lines: Record<string, unknown>[]; holder: pg.Client; observer: pg.Client; locked: string; free: string };
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    const started = await startTestGateway({
      // The pool's connection wait is short, so a caller starved of connections fails fast.
      pool: { min: 0, max: poolMax, connectionTimeoutMs: 300, applicationName },
      breaker: { initialDelayMs: 5, maxDelayMs: 20 },
      perCaller,
    });
    cleanups.push(() => started.close());
    state.gw = started.gateway;
    state.lines = started.lines;
    state.holder = new pg.Client({ connectionString: started.databaseUrl });
    state.observer = new pg.Client({ connectionString: started.databaseUrl });
    await state.holder.connect();
    await state.observer.connect();
    cleanups.unshift(() => state.holder.end(), () => state.observer.end());
    const create = async (name: string) => {
      const doc = { filename: `${name}.pdf`, content_type: 'application/pdf', s3_key: `uploads/${name}-${randomUUID()}.pdf`, size_bytes: 1, sha256: 'c'.repeat(64) };
      const r = await callTool(state.gw.url, 'documents_create', doc);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return String(r.body.document_id);
    };
    state.locked = await create('locked');
    state.free = await create('free');
  });
  after(async () => {
    for (const c of cleanups) await c();
  });
  return { state, applicationName };
}

describe('per-caller bound on database calls: one caller flooding long statements', () => {
  // Defaults: half the pool of 2 (one statement per caller), waiting at most the pool's connection timeout.
  const { state, applicationName } = lockedDocumentSuite({});

  it('refuses the flooding caller with 429 caller_busy, counted and logged, while other callers are served', async () => {
    const { gw, holder, observer, lines } = state;
    const big = { text: 'x'.repeat(256 * 1024) };
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [state.locked]);
    const held = callTool(gw.url, 'documents_update', { document_id: state.locked, extracted: big }, FLOODER);
    await waitingOnLock(observer, applicationName);

    const flood = Promise.all(Array.from({ length: 10 }, () => callTool(gw.url, 'documents_update', { document_id: state.locked, extracted: big }, FLOODER)));
    const during = await Promise.all([
      callTool(gw.url, 'documents_get', { document_id: state.free }, OTHER),
      callTool(gw.url, 'documents_update', { document_id: state.free, error: 'other caller' }, OTHER),
      callTool(gw.url, 'documents_list', { limit: 5 }),
    ]);
    const refused = await flood;
    // The flood is over; its first statement still holds a connection, waiting on the lock.
    const afterwards = await Promise.all([
      callTool(gw.url, 'documents_get', { document_id: state.free }, OTHER),
      callTool(gw.url, 'processing_logs_append', { document_id: state.free, step: 'extract', status: 'info' }),
    ]);
    for (const r of [...during, ...afterwards]) assert.equal(r.status, 200, JSON.stringify(r.body));

    for (const r of refused) {
      assert.equal(r.status, 429, JSON.stringify(r.body));
      assert.deepEqual(r.body.error, {
        code: 'caller_busy',
        message: "this caller's bound of 1 concurrent postgres calls is reached; ask again once one has ended",
        backend: 'postgres',
        retry_after_seconds: 1,
      });
      assert.equal(r.retryAfter, '1');
    }
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_caller_limited_total', { backend: 'postgres' }), 10);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_tool_calls_total', { tool: 'documents_update', outcome: 'caller_busy' }), 10);
    const limited = lines.filter((l) => l.event_type === 'mcp_caller_limited');
    assert.equal(limited.length, 10);
    assert.deepEqual(limited[0]?.caller, { subject: 'svc-flood', client_id: 'agent-flood' });
    assert.equal(limited[0]?.request_id, 'req-flood');
    assert.equal(limited[0]?.max_concurrent, 1);
    assert.equal(lines.filter((l) => l.event_type === 'mcp_backend_error').length, 0, 'no caller met a pool wait');

    await holder.query('ROLLBACK');
    assert.equal((await held).status, 200);
    // Its slot is free again.
    assert.equal((await callTool(gw.url, 'documents_get', { document_id: state.locked }, FLOODER)).status, 200);
  });
});

describe('per-caller bound on database calls: a call over the bound waits for its caller\'s own', () => {
  const { state, applicationName } = lockedDocumentSuite({ maxWaitMs: 120_000 });

  it('runs it, first come first served, once the caller\'s running call ends', async () => {
    const { gw, holder, observer } = state;
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [state.locked]);
    const held = callTool(gw.url, 'documents_update', { document_id: state.locked, error: 'first' }, FLOODER);
    await waitingOnLock(observer, applicationName);
    const queued = callTool(gw.url, 'documents_update', { document_id: state.locked, error: 'second' }, FLOODER);
    while ((await metricValue(gw.url, 'ca_a2a_mcp_caller_waiting', { backend: 'postgres' })) !== 1) await nextTurn();
    // Another caller is not behind the queued one.
    assert.equal((await callTool(gw.url, 'documents_get', { document_id: state.free }, OTHER)).status, 200);
    await holder.query('ROLLBACK');
    assert.equal((await held).status, 200);
    const second = await queued;
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.error, 'second');
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_caller_limited_total', { backend: 'postgres' }), 0);
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_caller_waiting', { backend: 'postgres' }), 0);
  });
});

/** Resolves once `count` sessions tagged `applicationName` wait for a lock. */
async function sessionsOnLock(observer: pg.Client, applicationName: string, count: number): Promise<void> {
  for (;;) {
    const { rows } = await observer.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
      [applicationName],
    );
    if (rows[0]?.n === count) return;
    await nextTurn();
  }
}

describe('pool sharing: two callers flooding long statements at once', () => {
  // Defaults on the seed's pool of 10: 5 per caller, 2 connections kept for callers with nothing in flight.
  const { state, applicationName } = lockedDocumentSuite({}, 10);

  it('leaves two connections to other callers, whose calls run while both flooders wait on a lock', async () => {
    const { gw, holder, observer, lines } = state;
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [state.locked]);
    const flood = (clientId: string) =>
      Array.from({ length: 10 }, (_, i) => callTool(gw.url, 'documents_update', { document_id: state.locked, error: `${clientId} ${i}` }, { 'x-ca-a2a-client-id': clientId }));
    const flooding = Promise.all([...flood('agent-flood-a'), ...flood('agent-flood-b')]);
    // Eight of the pool's ten connections wait on the lock; the flooders' other calls wait in the gateway.
    await sessionsOnLock(observer, applicationName, 8);

    const others = await Promise.all([
      callTool(gw.url, 'documents_get', { document_id: state.free }, { 'x-ca-a2a-client-id': 'agent-third' }),
      callTool(gw.url, 'documents_update', { document_id: state.free, error: 'fourth' }, { 'x-ca-a2a-client-id': 'agent-fourth' }),
    ]);
    for (const r of others) assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(lines.filter((l) => l.event_type === 'mcp_backend_error').length, 0, 'no caller met a pool wait');

    // The twelve flooding calls held back run out their wait (the pool's 300 ms) before the lock goes.
    while ((await metricValue(gw.url, 'ca_a2a_mcp_caller_limited_total', { backend: 'postgres' })) !== 12) await nextTurn();
    await sessionsOnLock(observer, applicationName, 8);
    await holder.query('ROLLBACK');
    const results = await flooding;
    assert.equal(results.filter((r) => r.status === 200).length, 8);
    const refused = results.filter((r) => r.status === 429);
    assert.equal(refused.length, 12);
    for (const r of refused) {
      assert.equal(r.body.error?.code, 'caller_busy');
      assert.match(
        r.body.error?.message ?? '',
        /^(this caller's bound of 5 concurrent postgres calls is reached|this caller already runs [1-4] postgres calls and the rest of the pool is kept for other callers); ask again once one has ended$/,
      );
    }
    const limited = lines.filter((l) => l.event_type === 'mcp_caller_limited');
    assert.equal(limited.length, 12);
    // Each flooder held one to five calls, eight in all.
    const held = new Map(limited.map((l) => [(l.caller as { client_id: string }).client_id, l.held as number]));
    assert.equal((held.get('agent-flood-a') ?? 0) + (held.get('agent-flood-b') ?? 0), 8);
    for (const l of limited) assert.ok(l.reason === 'caller_bound' || l.reason === 'pool_share', String(l.reason));
  });
});
