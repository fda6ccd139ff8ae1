import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { callTool, captureLogger, createTestSchema, tempDir } from './helpers.js';

/**
 * A database whose sessions do not speak ISO dates: DateStyle and TimeZone are the server's,
 * the database's or the role's to set (a parameter group, ALTER DATABASE … SET), and a driver
 * that reads timestamps in ISO gets nothing it can parse. Set here through the URL's options.
 */
describe('documents and logs on a database whose DateStyle is SQL, DMY and TimeZone Asia/Kolkata', () => {
  const state = {} as { gw: McpGateway; iso: pg.Client; close(): Promise<void> };
  before(async () => {
    const schema = await createTestSchema();
    const url = new URL(schema.urlFor());
    url.searchParams.set('options', `-c search_path=${schema.schema} -c DateStyle=SQL,DMY -c TimeZone=Asia/Kolkata`);
    const dataDir = await tempDir();
    state.gw = await startMcpGateway({ port: 0, dataDir, databaseUrl: url.toString(), logger: captureLogger().logger });
    // A session in PostgreSQL's default ISO style, to read what the rows hold.
    state.iso = new pg.Client({ connectionString: schema.urlFor() });
    await state.iso.connect();
    state.close = async () => {
      await state.iso.end();
      await state.gw.close();
      await schema.drop();
      await rm(dataDir, { recursive: true, force: true });
    };
  });
  after(() => state.close());

  it('answers every timestamp in ISO 8601 UTC, as the rows hold it', async () => {
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: `uploads/${randomUUID()}.pdf`, size_bytes: 1, sha256: 'a'.repeat(64) };
    const created = await callTool(state.gw.url, 'documents_create', doc);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = String(created.body.document_id);
    const claimed = await callTool(state.gw.url, 'documents_claim', { document_id: id });
    assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
    const logged = await callTool(state.gw.url, 'processing_logs_append', { document_id: id, step: 'extract', status: 'started' });
    assert.equal(logged.status, 200, JSON.stringify(logged.body));

    const { rows } = await state.iso.query<{ claimed_at: Date; created_at: Date; updated_at: Date; logged_at: Date }>(
      'SELECT d.claimed_at, d.created_at, d.updated_at, l.created_at AS logged_at FROM documents d JOIN processing_logs l USING (document_id) WHERE document_id = $1',
      [id],
    );
    const row = rows[0]!;
    assert.equal(claimed.body.claimed_at, row.claimed_at.toISOString());
    assert.equal(claimed.body.created_at, row.created_at.toISOString());
    assert.equal(claimed.body.updated_at, row.updated_at.toISOString());
    assert.equal(logged.body.created_at, row.logged_at.toISOString());
    const entries = await callTool(state.gw.url, 'processing_logs_list', { document_id: id });
    assert.equal((entries.body.entries as { created_at: string }[])[0]?.created_at, row.logged_at.toISOString());
  });

  it('pages through documents with the cursor it issued', async () => {
    for (let i = 0; i < 3; i++) {
      const doc = { filename: `p${i}.pdf`, content_type: 'application/pdf', s3_key: `uploads/${randomUUID()}.pdf`, size_bytes: 1, sha256: 'b'.repeat(64) };
      assert.equal((await callTool(state.gw.url, 'documents_create', doc)).status, 200);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await callTool(state.gw.url, 'documents_list', { limit: 2, ...(cursor ? { cursor } : {}) });
      assert.equal(page.status, 200, JSON.stringify(page.body));
      seen.push(...(page.body.documents as { document_id: string }[]).map((d) => d.document_id));
      cursor = page.body.next_cursor as string | undefined;
    } while (cursor);
    const { rows } = await state.iso.query<{ id: string }>('SELECT document_id::text AS id FROM documents ORDER BY created_at, document_id');
    assert.deepEqual(seen, rows.map((r) => r.id));
  });
});
