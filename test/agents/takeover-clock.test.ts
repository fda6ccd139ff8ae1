import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import type { AgentStack, RpcAnswer } from './helpers/agent-stack.js';
import { startAgentStack } from './helpers/agent-stack.js';
import { startGatewayStandIn } from './helpers/gateway-stand-in.js';

// Long enough that nothing a test does in between ages a row past it, however loaded the machine:
// a claim or a run is made stale by moving its timestamps back an hour in the database, never by
// waiting (stack.ageDocuments).
const WINDOW_SECONDS = 60;
const HOUR_MS = 3_600_000;

/**
 * process_document on `id` while the orchestrator's clock is `skewMs` off the database's: its read
 * of the document (documents_get) carries the database's timestamps as they look from that clock,
 * shifted by the opposite amount. `meanwhile` runs once that read is made, before the orchestrator
 * has it. Everything else passes on to the real gateway unchanged.
 */
async function processWithSkew(stack: AgentStack, id: string, skewMs: number, meanwhile?: () => Promise<void>): Promise<RpcAnswer> {
  let shifted = false;
  const standIn = await startGatewayStandIn(stack, async (call, _req, res) => {
    if (shifted || call.tool !== 'documents_get' || call.arguments['document_id'] !== id) return false;
    shifted = true;
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
    await meanwhile?.();
    const shift = (stamp: unknown) => (typeof stamp === 'string' ? new Date(Date.parse(stamp) - skewMs).toISOString() : stamp);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...doc, claimed_at: shift(doc['claimed_at']), updated_at: shift(doc['updated_at']) }));
    return true;
  });
  stack.routeGatewayTo(standIn.url);
  try {
    return await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
  } finally {
    stack.routeGatewayTo(undefined);
    standIn.close();
  }
}

describe('process_document decides whether a run is stale by the database\'s clock (PostgreSQL)', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: WINDOW_SECONDS } });
  });
  after(async () => {
    await stack.close();
  });

  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;

  describe('a stale claim', () => {
    it('takes over a claim stale by the database\'s clock although the orchestrator\'s clock, an hour behind, calls it fresh', async () => {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      // A worker claimed the document an hour ago and died before any step.
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      await stack.ageDocuments(id);
      const answer = await processWithSkew(stack, id, -HOUR_MS);
      assert.equal(answer.result?.['status'], 'archived', JSON.stringify(answer));
      assert.equal((await documentOf(id))['claim_count'], 2);
    });

    it('leaves a claim fresh by the database\'s clock to its holder although the orchestrator\'s clock, an hour ahead, calls it stale', async () => {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      const answer = await processWithSkew(stack, id, HOUR_MS);
      assert.equal(answer.error?.data?.['reason'], 'conflict', JSON.stringify(answer));
      assert.match(String(answer.error?.message), /is being processed/);
      const doc = await documentOf(id);
      assert.deepEqual([doc['status'], doc['claim_count']], ['processing', 1]);
    });
  });

  describe('a run stalled between steps', () => {
    /** A document whose run (claim 1) moved it on to `status`; with `idle`, its last change an hour ago by the database's clock. */
    const leftIn = async (status: 'extracted' | 'validated', idle = false): Promise<string> => {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      const steps = [{ status: 'extracted', extracted: { text: 'notes' } }, { status: 'validated', validation: { score: 1 } }];
      for (const step of steps.slice(0, status === 'extracted' ? 1 : 2)) {
        const moved = await callTool(stack.gateway.url, 'documents_update', { document_id: id, expected_claim_count: 1, ...step });
        assert.equal(moved.status, 200, JSON.stringify(moved.body));
      }
      if (idle) await stack.ageDocuments(id);
      return id;
    };

    it('takes over a validated run stalled by the database\'s clock although the orchestrator\'s clock, an hour behind, calls it live', async () => {
      const id = await leftIn('validated', true);
      const answer = await processWithSkew(stack, id, -HOUR_MS);
      assert.equal(answer.result?.['status'], 'archived', JSON.stringify(answer));
      assert.equal((await documentOf(id))['claim_count'], 2);
    });

    it('leaves an extracted run live by the database\'s clock to its holder although the orchestrator\'s clock, an hour ahead, calls it stale', async () => {
      const id = await leftIn('extracted');
      const answer = await processWithSkew(stack, id, HOUR_MS);
      assert.equal(answer.error?.data?.['reason'], 'conflict', JSON.stringify(answer));
      assert.match(String(answer.error?.message), /is being processed \(extracted at /);
      const doc = await documentOf(id);
      assert.deepEqual([doc['status'], doc['claim_count']], ['extracted', 1]);
    });

    // The archivist's claim re-check writes the row under its claim without changing the status:
    // made after the orchestrator read the document as stale, it is progress the takeover must see.
    it('leaves a validated run to its archivist whose claim re-check lands after the orchestrator read the run as stalled', async () => {
      const id = await leftIn('validated', true);
      const recheck = async () => {
        const written = await callTool(stack.gateway.url, 'documents_update', { document_id: id, expected_status: ['validated', 'archived'], expected_claim_count: 1, error: null });
        assert.equal(written.status, 200, JSON.stringify(written.body));
      };
      const answer = await processWithSkew(stack, id, 0, recheck);
      assert.equal(answer.error?.data?.['reason'], 'conflict', JSON.stringify(answer));
      const doc = await documentOf(id);
      assert.deepEqual([doc['status'], doc['claim_count']], ['validated', 1]);
    });
  });
});
