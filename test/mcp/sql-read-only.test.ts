import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import pg from 'pg';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { PG_URL, callTool, captureLogger, createTestSchema, metricValue, tempDir } from './helpers.js';

/**
 * A failover: the gateway's pooled connection still reaches the old primary, now a read-only
 * standby, while a new connection reaches the new primary. Played on one server by a login role
 * whose sessions start read-only while the test says so.
 */
/** Ends the gateway's connections and waits until its pool has let go of them. */
async function dropConnections(admin: pg.Client, gatewayUrl: string, applicationName: string): Promise<void> {
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
  while ((await metricValue(gatewayUrl, 'ca_a2a_mcp_pool_clients', { state: 'total' })) !== 0) await nextTurn();
}

describe('a write that meets a read-only server (a pooled connection to a demoted primary)', () => {
  const role = `mcp_ro_${randomBytes(5).toString('hex')}`;
  const state = {} as { gw: McpGateway; admin: pg.Client; lines: Record<string, unknown>[]; doc: string };
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    state.admin = new pg.Client({ connectionString: PG_URL });
    await state.admin.connect();
    cleanups.push(() => state.admin.end());
    await state.admin.query(`CREATE ROLE ${role} LOGIN`);
    cleanups.unshift(() => state.admin.query(`DROP ROLE ${role}`).then(() => undefined));
    const schema = await createTestSchema();
    cleanups.unshift(() => schema.drop());
    await state.admin.query(`ALTER SCHEMA ${schema.schema} OWNER TO ${role}`);
    const url = new URL(schema.urlFor());
    url.username = role;
    const dataDir = await tempDir();
    cleanups.unshift(() => rm(dataDir, { recursive: true, force: true }));
    const captured = captureLogger();
    state.lines = captured.lines;
    state.gw = await startMcpGateway({
      port: 0,
      dataDir,
      databaseUrl: url.toString(),
      // One pooled connection, so the next statement is sure to run on the demoted one.
      pool: { min: 0, max: 1, applicationName: role },
      breaker: { initialDelayMs: 5, maxDelayMs: 20 },
      logger: captured.logger,
    });
    cleanups.unshift(() => state.gw.close());
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: `uploads/${randomUUID()}.pdf`, size_bytes: 1, sha256: 'a'.repeat(64) };
    const created = await callTool(state.gw.url, 'documents_create', doc);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    state.doc = String(created.body.document_id);
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('is sent again on a new connection, which reaches the writable server', async () => {
    const { gw, admin } = state;
    await admin.query(`ALTER ROLE ${role} SET default_transaction_read_only = on`);
    await dropConnections(admin, gw.url, role);
    // A read opens the pool's one connection, read-only, and leaves it idle in the pool.
    assert.equal((await callTool(gw.url, 'documents_get', { document_id: state.doc })).status, 200);
    await admin.query(`ALTER ROLE ${role} RESET default_transaction_read_only`);
    const transientBefore = await metricValue(gw.url, 'ca_a2a_mcp_backend_attempts_total', { backend: 'postgres', result: 'transient' });

    const updated = await callTool(gw.url, 'documents_update', { document_id: state.doc, error: 'after failover' });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.equal(updated.body.error, 'after failover');
    const appended = await callTool(gw.url, 'processing_logs_append', { document_id: state.doc, step: 'extract', status: 'info' });
    assert.equal(appended.status, 200, JSON.stringify(appended.body));
    assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_backend_attempts_total', { backend: 'postgres', result: 'transient' }), transientBefore + 1);
    assert.equal(state.lines.filter((l) => l.event_type === 'mcp_tool_error').length, 0);
  });

  it('answers backend_error, not internal, while every connection reaches a read-only server', async () => {
    const { gw, admin } = state;
    await admin.query(`ALTER ROLE ${role} SET default_transaction_read_only = on`);
    await dropConnections(admin, gw.url, role);
    try {
      const refused = await callTool(gw.url, 'documents_update', { document_id: state.doc, error: 'no primary' });
      assert.equal(refused.status, 502, JSON.stringify(refused.body));
      assert.deepEqual(refused.body.error, { code: 'backend_error', message: 'postgres failed', backend: 'postgres' });
      const logged = state.lines.find((l) => l.event_type === 'mcp_backend_error');
      assert.equal(logged?.err_code, '25006');
      // Reads still work.
      assert.equal((await callTool(gw.url, 'documents_get', { document_id: state.doc })).status, 200);
    } finally {
      await admin.query(`ALTER ROLE ${role} RESET default_transaction_read_only`);
    }
  });
});
