import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { callTool } from '../mcp/helpers.js';
import type { AgentStack, RpcAnswer } from './helpers/agent-stack.js';
import { startAgentStack } from './helpers/agent-stack.js';
import { startGatewayStandIn } from './helpers/gateway-stand-in.js';

const STALE_SECONDS = 1;
const HOUR_MS = 3_600_000;

/**
 * process_document on `id` while the orchestrator's clock is `skewMs` off the database's: its read
 * of the document (documents_get) carries the database's timestamps as they look from that clock,
 * shifted by the opposite amount. Everything else passes on to the real gateway unchanged.
 */
async function processWithSkew(stack: AgentStack, id: string, skewMs: number): Promise<RpcAnswer> {
  let shifted = false;
  const standIn = await startGatewayStandIn(stack, async (call, _req, res) => {
    if (shifted || call.tool !== 'documents_get' || call.arguments['document_id'] !== id) return false;
    shifted = true;
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
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

describe('process_document takes over a stale claim by the database\'s clock (PostgreSQL)', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: STALE_SECONDS } });
  });
  after(async () => {
    await stack.close();
  });

  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;

  it('takes over a claim stale by the database\'s clock although the orchestrator\'s clock, an hour behind, calls it fresh', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    // A worker claimed the document and died before any step.
    assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    await sleep(STALE_SECONDS * 1000 + 200);
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
