import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { callTool } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';
import { startGatewayStandIn } from './helpers/gateway-stand-in.js';

const BROKEN_PDF = Buffer.from('%PDF-1.7\nthis is not really a PDF\n').toString('base64');

describe('orchestrator: a failure the run could not record says what becomes of the document', () => {
  let stack: AgentStack;
  const lines: Record<string, unknown>[] = [];
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    stack = await startAgentStack({ postgres: true, logger: pino({ level: 'warn' }, sink) });
  });
  after(async () => {
    await stack?.close();
  });

  /**
   * Runs a document whose extraction fails; `meanwhile` acts on the gateway just before the run's
   * failure write reaches it, or answers that write itself (resolving true).
   */
  async function failureNotRecorded(meanwhile: (documentId: string, res: ServerResponse) => Promise<boolean>): Promise<string> {
    const upload = await stack.call('orchestrator', 'upload_document', { filename: 'broken.pdf', content_type: 'application/pdf', content_base64: BROKEN_PDF }, 'lambda');
    const id = String(upload.result?.['document_id']);
    const standIn = await startGatewayStandIn(stack, async (call, _req, res) =>
      call.tool === 'documents_update' && call.arguments['status'] === 'failed' && call.arguments['document_id'] === id && meanwhile(id, res));
    stack.routeGatewayTo(standIn.url);
    try {
      const answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
      assert.equal(answer.result?.['run_outcome'], 'failed_unrecorded', JSON.stringify(answer));
    } finally {
      stack.routeGatewayTo(undefined);
      standIn.close();
    }
    const line = lines.find((l) => l['event_type'] === 'mark_failed_failed' && l['document_id'] === id);
    assert.ok(line, JSON.stringify(lines));
    return String(line['msg']);
  }

  it('deleted meanwhile: nothing is left to retake (not "the stale sweep will retake it")', async () => {
    const msg = await failureNotRecorded(async (id) => {
      assert.equal((await callTool(stack.gateway.url, 'documents_delete', { document_id: id })).status, 200);
      return false;
    });
    assert.equal(msg, 'could not record the failure: the document was deleted meanwhile; nothing is left to retake');
  });

  it('moved on by another worker (archived meanwhile): the stale sweep leaves it', async () => {
    const msg = await failureNotRecorded(async (id) => {
      assert.equal((await callTool(stack.gateway.url, 'documents_update', { document_id: id, status: 'archived' })).status, 200);
      return false;
    });
    assert.equal(msg, 'could not record the failure: the document is archived now, moved on by another worker; the stale sweep leaves it');
  });

  it('gateway unreachable: the document stays in flight, and the stale sweep retakes it', async () => {
    // As a gateway's sidecar answers with the gateway down; the write is not retried (it changes something).
    const msg = await failureNotRecorded(async (_id, res) => {
      res.writeHead(502, { 'content-type': 'application/json' })
        .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32003, message: 'upstream unavailable', data: { reason: 'upstream.unavailable' } } }));
      return true;
    });
    assert.equal(msg, 'could not record the failure; the stale sweep will retake the document');
  });
});
