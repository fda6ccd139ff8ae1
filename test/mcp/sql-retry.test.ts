import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { PG_URL, callTool, captureLogger, createTestSchema, metricValue, tempDir, tieTogether } from './helpers.js';

// ReadyForQuery ('Z', length 5, then the transaction status byte): the server has finished the
// statement and its implicit transaction.
const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5]);
const endsWithReady = (reply: Buffer) => reply.length >= 6 && reply.subarray(-6, -1).equals(READY_FOR_QUERY);

/**
 * A TCP relay to PostgreSQL that, once armed with a piece of SQL, forwards the message carrying
 * it, lets the server run it to the end, then cuts the connection instead of relaying the reply:
 * the statement committed and the client never hears so.
 */
class ReplyCutter {
  port = 0;
  private armed: string | undefined;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(targetPort: number) {
    this.server = createServer((client) => {
      const upstream = connect(targetPort, '127.0.0.1');
      let cutting = false;
      let reply = Buffer.alloc(0);
      tieTogether(this.sockets, client, upstream);
      client.on('data', (chunk: Buffer) => {
        if (this.armed && chunk.toString('latin1').includes(this.armed)) {
          this.armed = undefined;
          cutting = true;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!cutting) return void client.write(chunk);
        reply = Buffer.concat([reply, chunk]);
        if (endsWithReady(reply)) client.destroy();
      });
    });
  }

  /** Cuts the next connection that sends a message containing `sql`, after the server answered it. */
  arm(sql: string): void {
    this.armed = sql;
  }

  async start(): Promise<void> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', () => ok()));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((ok) => this.server.close(() => ok()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

describe('PostgreSQL retries: only what certainly did not run is sent again', () => {
  let gw: McpGateway;
  let cutter: ReplyCutter;
  let db: pg.Client;
  let documentId: string;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    const schema = await createTestSchema();
    cleanups.push(() => schema.drop());
    cutter = new ReplyCutter(Number(new URL(PG_URL).port || 5432));
    await cutter.start();
    cleanups.unshift(() => cutter.stop());
    const dataDir = await tempDir();
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    gw = await startMcpGateway({
      port: 0,
      dataDir,
      databaseUrl: schema.urlFor(`127.0.0.1:${cutter.port}`),
      breaker: { initialDelayMs: 5, maxDelayMs: 20 },
      logger: captureLogger().logger,
    });
    cleanups.unshift(() => gw.close());
    db = new pg.Client({ connectionString: schema.urlFor() });
    await db.connect();
    cleanups.unshift(() => db.end());
    const doc = { filename: 'a.pdf', content_type: 'application/pdf', s3_key: 'uploads/cut.pdf', size_bytes: 1, sha256: 'd'.repeat(64) };
    documentId = String((await callTool(gw.url, 'documents_create', doc)).body.document_id);
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('does not append a log entry twice when the reply is lost: one row and 502 backend_error', async () => {
    cutter.arm('INSERT INTO processing_logs');
    const r = await callTool(gw.url, 'processing_logs_append', { document_id: documentId, step: 'extract', status: 'started' });
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, 'backend_error');
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM processing_logs WHERE document_id = $1', [documentId]);
    assert.equal(rows[0]?.n, 1);
  });

  it('does not report a claim that succeeded as a conflict when the reply is lost', async () => {
    cutter.arm("SET status = 'processing'");
    const r = await callTool(gw.url, 'documents_claim', { document_id: documentId });
    assert.equal(r.body.error?.code, 'backend_error', JSON.stringify(r.body));
    const { rows } = await db.query<{ status: string; claim_count: number }>('SELECT status, claim_count FROM documents WHERE document_id = $1', [documentId]);
    assert.deepEqual(rows[0], { status: 'processing', claim_count: 1 });
  });

  it('retries a read whose reply is lost and answers it', async () => {
    const transient = () => metricValue(gw.url, 'ca_a2a_mcp_backend_attempts_total', { backend: 'postgres', result: 'transient' });
    const before = await transient();
    cutter.arm('FROM processing_logs');
    const r = await callTool(gw.url, 'processing_logs_list', { document_id: documentId });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual((r.body.entries as { step: string }[]).map((e) => e.step), ['extract']);
    assert.equal(await transient(), before + 1, 'the first try was cut');
  });
});
