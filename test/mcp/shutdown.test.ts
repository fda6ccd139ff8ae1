import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setImmediate } from 'node:timers/promises';
import { describe, it } from 'node:test';
import pg from 'pg';
import { callTool, metricValue, startTestGateway, waitingOnLock } from './helpers.js';

/** A test gateway with `options`, one document of it, and a client of the database holding that row locked in an open transaction. */
async function lockedDocument(options: Pick<Parameters<typeof startTestGateway>[0] & object, 'perCaller' | 'breaker'>, statementTimeoutMs?: number) {
  const applicationName = `ca-a2a-drain-${randomBytes(4).toString('hex')}`;
  const started = await startTestGateway({ ...options, pool: { applicationName, ...(statementTimeoutMs ? { statementTimeoutMs } : {}) } });
  const db = new pg.Client({ connectionString: started.databaseUrl });
  await db.connect();
  const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/drain.pdf', size_bytes: 1, sha256: 'f'.repeat(64) };
  const id = String((await callTool(started.gateway.url, 'documents_create', doc)).body.document_id);
  await db.query('BEGIN');
  await db.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [id]);
  return { started, applicationName, db, id };
}

describe('graceful shutdown: close() lets a call in flight finish', () => {
  it('answers a call that was running when close() began, then refuses new connections', async () => {
    const { started, applicationName, db, id } = await lockedDocument({});
    try {
      const inFlight = callTool(started.gateway.url, 'documents_update', { document_id: id, status: 'failed' });
      await waitingOnLock(db, applicationName);
      const closed = started.gateway.close();
      await db.query('ROLLBACK');
      const r = await inFlight;
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, 'failed');
      await closed;
      await assert.rejects(fetch(`${started.gateway.url}/health`));
    } finally {
      await db.end();
      await started.close();
    }
  });
});

describe('graceful shutdown: a call still waiting for its caller\'s slot', () => {
  it('is refused backend_unavailable once the drain is over, not left to wait out its time nor run on the closed pool', async () => {
    const { started, applicationName, db, id } = await lockedDocument({ perCaller: { maxStatements: 1, maxWaitMs: 600_000 } });
    try {
      const caller = { 'x-ca-a2a-client-id': 'flooder' };
      const aborts = [new AbortController(), new AbortController()];
      const calls = [
        { tool: 'documents_update', arguments: { document_id: id, status: 'failed' }, 'x-ca-a2a-request-id': 'req-running' },
        { tool: 'documents_get', arguments: { document_id: id }, 'x-ca-a2a-request-id': 'req-waiting' },
      ];
      const sent = calls.map(({ tool, arguments: args, 'x-ca-a2a-request-id': requestId }, i) => {
        const answer = fetch(`${started.gateway.url}/call_tool`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...caller, 'x-ca-a2a-request-id': requestId },
          body: JSON.stringify({ tool, arguments: args }),
          signal: aborts[i]?.signal,
        });
        answer.catch(() => undefined);
        return answer;
      });
      await waitingOnLock(db, applicationName);
      while ((await metricValue(started.gateway.url, 'ca_a2a_mcp_caller_waiting', { backend: 'postgres' })) < 1) await setImmediate();
      // Both clients gone: nothing is in flight for the drain to wait for, and close() goes on.
      for (const a of aborts) a.abort();
      await Promise.allSettled(sent);
      const closed = started.gateway.close();
      const waitingLine = () => started.lines.find((l) => l.event_type === 'mcp_tool_call' && l.request_id === 'req-waiting');
      while (!waitingLine()) await setImmediate();
      assert.equal(waitingLine()?.outcome, 'backend_unavailable');
      await db.query('ROLLBACK');
      await closed;
    } finally {
      await db.end();
      await started.close();
    }
  });
});

describe('graceful shutdown: the connections still open once the drain is over', () => {
  it('are closed by the gateway, and no client is counted as having left', { timeout: 60_000 }, async () => {
    // A try bound past the drain: the call still runs when the gateway cuts its connection.
    const { started, applicationName, db, id } = await lockedDocument({ breaker: { timeoutMs: 60_000 } }, 60_000);
    try {
      const rest = callTool(started.gateway.url, 'documents_update', { document_id: id, status: 'failed' }, { 'x-ca-a2a-request-id': 'req-cut' });
      rest.catch(() => undefined);
      await waitingOnLock(db, applicationName);
      // The client waits for its answer through the drain (10 s); then the gateway cuts it.
      await started.gateway.close();
      const [answer] = await Promise.allSettled([rest]);
      assert.equal(answer?.status, 'rejected', 'no answer: the connection was cut');
      assert.ok(started.lines.some((l) => l.event_type === 'mcp_tool_call' && l.request_id === 'req-cut'), 'the call ended');
      assert.deepEqual(started.lines.filter((l) => l.event_type === 'mcp_client_closed'), []);
    } finally {
      await db.query('ROLLBACK');
      await db.end();
      await started.close();
    }
  });
});
