import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { callTool } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

// A one-second stale window: long enough for a live step, short enough to wait out in a test.
const STALE_SECONDS = 1;

describe('the stale-claim sweep', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: STALE_SECONDS } });
  });
  after(async () => {
    await stack.close();
  });

  const statusOf = async (id: string) => String((await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body['status']);

  it('retakes a document left in processing by a worker that died, and finishes it', async () => {
    const id = await stack.uploadSample('transactions.csv', 'text/csv');
    // A worker claims the document and dies before any step.
    assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    const early = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    assert.equal(early.error?.data?.['reason'], 'conflict', 'a fresh claim is respected');
    await sleep(STALE_SECONDS * 1000 + 200);
    const outcomes = await stack.agents.get('orchestrator')?.sweep();
    assert.equal(outcomes?.[id]?.status, 'archived');
    assert.equal(await statusOf(id), 'archived');
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
    assert.equal(doc['claim_count'], 2);
  });

  it('retakes a document stuck between steps (extracted) and finishes it', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    await callTool(stack.gateway.url, 'documents_claim', { document_id: id });
    const extracted = await stack.call('extractor', 'extract_document', { document_id: id }, 'orchestrator');
    assert.equal(extracted.result?.['status'], 'extracted');
    await sleep(STALE_SECONDS * 1000 + 200);
    const outcomes = await stack.agents.get('orchestrator')?.sweep();
    assert.equal(outcomes?.[id]?.status, 'archived');
  });

  it('finds a stalled run behind any number of live ones: the gateway picks the stalled documents, not the oldest in each status', async () => {
    const moveToExtracted = async (id: string) => {
      await callTool(stack.gateway.url, 'documents_claim', { document_id: id });
      await callTool(stack.gateway.url, 'documents_update', { document_id: id, expected_status: 'processing', status: 'extracted', extracted: { text: '' } });
    };
    // Ten runs uploaded first but live (extracted a moment ago), one uploaded last and stalled.
    const live = [];
    for (let i = 0; i < 10; i++) live.push(await stack.uploadSample('meeting-notes.txt', 'text/plain'));
    const stalled = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    await moveToExtracted(stalled);
    await sleep(STALE_SECONDS * 1000 + 200);
    for (const id of live) await moveToExtracted(id);
    const outcomes = await stack.agents.get('orchestrator')?.sweep();
    assert.deepEqual(Object.keys(outcomes ?? {}), [stalled]);
    assert.equal(outcomes?.[stalled]?.status, 'archived');
    for (const id of live) assert.equal(await statusOf(id), 'extracted', 'a live run is left alone');
  });

  it('lets process_document take over a stale run itself', async () => {
    const id = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    await callTool(stack.gateway.url, 'documents_claim', { document_id: id });
    await sleep(STALE_SECONDS * 1000 + 200);
    const answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    assert.equal(answer.result?.['status'], 'archived', JSON.stringify(answer));
  });
});
