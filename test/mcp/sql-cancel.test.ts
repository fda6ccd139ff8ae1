import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { callTool, startTestGateway } from './helpers.js';

describe('PostgreSQL: a statement the gateway gave up on is cancelled on the server', () => {
  let started: Awaited<ReturnType<typeof startTestGateway>>;
  let db: pg.Client;
  let documentId: string;
  // Unique per run, so pg_stat_activity shows this gateway's connections and no other suite's.
  const applicationName = `ca-a2a-cancel-${randomBytes(4).toString('hex')}`;
  const call = (tool: string, args: object) => callTool(started.gateway.url, tool, args);
  const stillRunning = async (prefix: string) => {
    const { rows } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE $2",
      [applicationName, `${prefix}%`],
    );
    return rows[0]?.n;
  };
  /** Holds `lock` in a transaction of the test's own while `fn` runs, then rolls back. */
  const whileLocked = async (lock: string, params: unknown[], fn: () => Promise<void>) => {
    await db.query('BEGIN');
    await db.query(lock, params);
    try {
      await fn();
    } finally {
      await db.query('ROLLBACK');
    }
  };

  before(async () => {
    started = await startTestGateway({
      // One connection: a statement left running would hold it, and the next call could not run.
      // statement_timeout far past the per-try timeout, so only a cancellation can end it.
      pool: { min: 0, max: 1, statementTimeoutMs: 120_000, applicationName },
      breaker: { timeoutMs: 1_000, initialDelayMs: 5, maxDelayMs: 20 },
    });
    db = new pg.Client({ connectionString: started.databaseUrl });
    await db.connect();
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/slow.pdf', size_bytes: 1, sha256: 'e'.repeat(64) };
    documentId = String((await call('documents_create', doc)).body.document_id);
  });
  after(async () => {
    await db.end();
    await started.close();
  });

  it('cancels a timed-out update: 502, the connection serves the next call, the update never applies', async () => {
    await whileLocked('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [documentId], async () => {
      const r = await call('documents_update', { document_id: documentId, status: 'failed' });
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, 'backend_error');
      // A plain read is not blocked by the row lock; it needs the pool's only connection.
      const read = await call('documents_get', { document_id: documentId });
      assert.equal(read.status, 200, JSON.stringify(read.body));
      assert.equal(await stillRunning('UPDATE documents'), 0, 'the update still runs on the server');
    });
    const { rows } = await db.query<{ status: string }>('SELECT status FROM documents WHERE document_id = $1', [documentId]);
    assert.equal(rows[0]?.status, 'pending');
  });

  it('cancels every timed-out try of a read, retries included', async () => {
    await whileLocked('LOCK TABLE processing_logs IN ACCESS EXCLUSIVE MODE', [], async () => {
      const r = await call('processing_logs_list', { document_id: documentId });
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, 'backend_error');
      // documents is not locked: this runs once the pool's connection is free again.
      const read = await call('documents_get', { document_id: documentId });
      assert.equal(read.status, 200, JSON.stringify(read.body));
      assert.equal(await stillRunning('SELECT'), 0, 'a timed-out read still runs on the server');
    });
  });
});
