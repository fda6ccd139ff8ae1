import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { callTool, startTestGateway, waitingOnLock } from './helpers.js';

describe('graceful shutdown: close() lets a call in flight finish', () => {
  it('answers a call that was running when close() began, then refuses new connections', async () => {
    const applicationName = `ca-a2a-drain-${randomBytes(4).toString('hex')}`;
    const started = await startTestGateway({ pool: { applicationName } });
    const db = new pg.Client({ connectionString: started.databaseUrl });
    await db.connect();
    try {
      const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/drain.pdf', size_bytes: 1, sha256: 'f'.repeat(64) };
      const id = String((await callTool(started.gateway.url, 'documents_create', doc)).body.document_id);
      await db.query('BEGIN');
      await db.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [id]);
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
