import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import pg from 'pg';
import { callTool, metricValue, startTestGateway, waitingOnLock } from './helpers.js';

/** The bytes of a POST of `body` to `path`, as a client sends it. */
function post(path: string, body: unknown, requestId: string): string {
  const text = JSON.stringify(body);
  return (
    `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n` +
    `x-ca-a2a-request-id: ${requestId}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`
  );
}

describe('a client that leaves before its (not streamed) answer is written', () => {
  let started: Awaited<ReturnType<typeof startTestGateway>>;
  let db: pg.Client;
  let documentId = '';
  const applicationName = `ca-a2a-left-${randomBytes(4).toString('hex')}`;

  before(async () => {
    started = await startTestGateway({ pool: { min: 0, max: 2, applicationName } });
    db = new pg.Client({ connectionString: started.databaseUrl });
    await db.connect();
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/left.pdf', size_bytes: 1, sha256: 'e'.repeat(64) };
    documentId = String((await callTool(started.gateway.url, 'documents_create', doc)).body.document_id);
  });
  after(async () => {
    await db.end();
    await started.close();
  });

  const update = { document_id: '', expected_status: ['pending', 'failed'], status: 'failed' };
  const bodies = {
    rest: () => ({ tool: 'documents_update', arguments: { ...update, document_id: documentId } }),
    mcp: () => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'documents_update', arguments: { ...update, document_id: documentId } } }),
  };
  for (const [path, transport] of [['/call_tool', 'rest'], ['/mcp', 'mcp']] as const) {
    it(`counts it (stage answer) and logs it at info on ${path}`, { timeout: 30_000 }, async () => {
      const requestId = `req-left-${transport}`;
      const counted = () => metricValue(started.gateway.url, 'ca_a2a_mcp_client_closed_total', { transport, stage: 'answer' });
      assert.equal(await counted(), 0);
      // The call waits on a row lock of the test's own while its client leaves.
      await db.query('BEGIN');
      await db.query('SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE', [documentId]);
      const socket = connect(started.gateway.port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.write(post(path, bodies[transport](), requestId));
      await waitingOnLock(db, applicationName);
      socket.destroy();
      await db.query('ROLLBACK');
      // Over /call_tool counted once the call ends and its answer finds the connection closed;
      // over /mcp once the connection closes.
      while ((await counted()) === 0) await nextTurn();
      const said = started.lines.filter((l) => l.event_type === 'mcp_client_closed' && l.request_id === requestId);
      assert.deepEqual(said.map((l) => [l.level, l.transport, l.stage]), [[30, transport, 'answer']]);
      assert.equal(await counted(), 1);
    });
  }

  it('counts no client that read its whole answer', async () => {
    const before = await metricValue(started.gateway.url, 'ca_a2a_mcp_client_closed_total', { transport: 'rest', stage: 'answer' });
    for (let i = 0; i < 5; i++) assert.equal((await callTool(started.gateway.url, 'documents_get', { document_id: documentId })).status, 200);
    assert.equal(await metricValue(started.gateway.url, 'ca_a2a_mcp_client_closed_total', { transport: 'rest', stage: 'answer' }), before);
  });
});
