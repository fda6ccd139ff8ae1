import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { callTool, metricValue } from '../mcp/helpers.js';
import type { AgentStack } from './helpers/agent-stack.js';
import { startHoldingStack, until, type HoldingGateway } from './helpers/held-reads.js';

const STEPS = [
  { agent: 'extractor', method: 'extract_document', before: [], after: 'extracted' },
  { agent: 'validator', method: 'validate_document', before: ['extractor'], after: 'validated' },
  { agent: 'archivist', method: 'archive_document', before: ['extractor', 'validator'], after: 'archived' },
] as const;

const PRIOR_METHOD = { extractor: 'extract_document', validator: 'validate_document' } as const;

describe('the step agents hold a bounded number of documents (real PostgreSQL)', () => {
  let stack: AgentStack;
  let gateway: HoldingGateway;
  let close: () => Promise<void>;

  before(async () => {
    ({ stack, gateway, close } = await startHoldingStack({ postgres: true, extractor: { maxDocuments: 1 }, validator: { maxDocuments: 1 }, archivist: { maxDocuments: 1 } }));
  });
  after(async () => {
    await close();
  });

  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
  /** A claimed document taken through the steps before `step`'s. */
  const readyFor = async (step: (typeof STEPS)[number]) => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    for (const prior of step.before) {
      const answer = await stack.call(prior, PRIOR_METHOD[prior], { document_id: id, claim_count: 1 }, 'orchestrator');
      assert.ok(answer.result, JSON.stringify(answer));
    }
    return id;
  };

  for (const step of STEPS) {
    it(`${step.agent}: refuses a document past the bound with busy (-32025, retry_after_seconds) and counts it; the same document and claim joins the step under way`, async () => {
      const metric = (name: string, labels: Record<string, string> = {}) => metricValue(stack.agents.get(step.agent)?.url ?? '', name, labels);
      const [first, second] = [await readyFor(step), await readyFor(step)];
      const held = await gateway.holdObjectOf(first);
      const readsBefore = gateway.reads.get(held.key) ?? 0;
      const firstCall = stack.call(step.agent, step.method, { document_id: first, claim_count: 1 }, 'orchestrator');
      await held.asked;

      const refused = await stack.call(step.agent, step.method, { document_id: second, claim_count: 1 }, 'orchestrator');
      assert.equal(refused.error?.code, -32025, JSON.stringify(refused));
      assert.deepEqual(refused.error?.data, { reason: 'busy', max_documents: 1, retry_after_seconds: 1 });
      assert.match(refused.error?.message ?? '', new RegExp(`^the ${step.agent} already holds 1 document\\(s\\); ask again shortly$`));
      assert.equal((await documentOf(second))['claim_count'], 1);
      assert.notEqual((await documentOf(second))['status'], step.after, 'nothing written for the refused one');
      assert.equal(await metric('ca_a2a_agent_document_admissions_total', { admission: 'busy' }), 1);
      assert.equal(await metric('ca_a2a_agent_calls_total', { method: step.method, outcome: 'busy' }), 1);
      assert.equal(await metric('ca_a2a_agent_documents_held'), 1);

      // A retry of the first (its answer lost) while the first still waits for its object.
      const retry = stack.call(step.agent, step.method, { document_id: first, claim_count: 1 }, 'orchestrator');
      await until(async () => (await metric('ca_a2a_agent_document_admissions_total', { admission: 'joined' })) === 1, retry);
      held.release();
      const answers = await Promise.all([firstCall, retry]);
      for (const answer of answers) assert.equal(answer.result?.['status'], step.after, JSON.stringify(answer));
      assert.equal(gateway.reads.get(held.key), readsBefore + 1, 'the object was read once by this step');
      assert.equal((await documentOf(first))['status'], step.after);
      assert.equal(await metric('ca_a2a_agent_documents_held'), 0);

      // The slot is free again; the other methods never take one.
      const now = await stack.call(step.agent, step.method, { document_id: second, claim_count: 1 }, 'orchestrator');
      assert.equal(now.result?.['status'], step.after, JSON.stringify(now));
      assert.equal(await metric('ca_a2a_agent_document_admissions_total', { admission: 'admitted' }), 2);
    });
  }

  it("the extractor's PDFs have a bound of their own: a PDF is read while a text file holds the one document slot", async () => {
    const text = await readyFor(STEPS[0]);
    const held = await gateway.holdObjectOf(text);
    const holding = stack.call('extractor', 'extract_document', { document_id: text, claim_count: 1 }, 'orchestrator');
    await held.asked;
    try {
      const pdf = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: pdf })).status, 200);
      const answer = await stack.call('extractor', 'extract_document', { document_id: pdf, claim_count: 1 }, 'orchestrator');
      assert.equal(answer.result?.['status'], 'extracted', JSON.stringify(answer));
    } finally {
      held.release();
    }
    assert.equal((await holding).result?.['status'], 'extracted');
  });

  it('an archivist holding its bound still serves get_document and list_documents', async () => {
    const step = STEPS[2];
    const id = await readyFor(step);
    const held = await gateway.holdObjectOf(id);
    const archiving = stack.call('archivist', 'archive_document', { document_id: id, claim_count: 1 }, 'orchestrator');
    await held.asked;
    try {
      assert.equal((await stack.call('archivist', 'get_document', { document_id: id })).result?.['document_id'], id);
      assert.ok(Array.isArray((await stack.call('archivist', 'list_documents', { limit: 1 })).result?.documents));
    } finally {
      held.release();
    }
    assert.equal((await archiving).result?.['status'], 'archived');
  });
});
