import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { callTool, metricValue } from '../mcp/helpers.js';
import type { AgentStack, RpcAnswer } from './helpers/agent-stack.js';
import { startHoldingStack, until, type HoldingGateway } from './helpers/held-reads.js';

const readBody = async (req: IncomingMessage) => {
  let body = '';
  for await (const chunk of req) body += (chunk as Buffer).toString();
  return body;
};

const urlOf = (server: Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

describe('the extractor holds a bounded number of PDFs', () => {
  let stack: AgentStack;
  let gateway: HoldingGateway;
  let close: () => Promise<void>;

  before(async () => {
    ({ stack, gateway, close } = await startHoldingStack({ extractor: { maxPdfs: 1 } }));
  });
  after(async () => {
    await close();
  });

  const extractorMetric = (name: string, labels: Record<string, string> = {}) => metricValue(stack.agents.get('extractor')?.url ?? '', name, labels);
  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
  const claimedPdf = async () => {
    const id = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    return id;
  };

  it('refuses a PDF past the bound with busy (-32025) and counts it; the same document and claim joins the read under way', async () => {
    const [first, second] = [await claimedPdf(), await claimedPdf()];
    const held = await gateway.holdObjectOf(first);
    const firstCall = stack.call('extractor', 'extract_document', { document_id: first, claim_count: 1 }, 'orchestrator');
    await held.asked;

    const refused = await stack.call('extractor', 'extract_document', { document_id: second, claim_count: 1 }, 'orchestrator');
    assert.equal(refused.error?.code, -32025, JSON.stringify(refused));
    assert.deepEqual(refused.error?.data, { reason: 'busy', max_pdfs: 1, retry_after_seconds: 1 });
    assert.equal((await documentOf(second))['status'], 'processing', 'nothing written for the refused one');
    assert.equal(await extractorMetric('ca_a2a_agent_pdf_admissions_total', { admission: 'busy' }), 1);
    assert.equal(await extractorMetric('ca_a2a_agent_calls_total', { method: 'extract_document', outcome: 'busy' }), 1);
    assert.equal(await extractorMetric('ca_a2a_agent_pdfs_held'), 1);

    // A retry of the first (its answer lost) while the first still waits for its object.
    const retry = stack.call('extractor', 'extract_document', { document_id: first, claim_count: 1 }, 'orchestrator');
    await until(async () => (await extractorMetric('ca_a2a_agent_pdf_admissions_total', { admission: 'joined' })) === 1, retry);
    held.release();
    const answers = await Promise.all([firstCall, retry]);
    assert.deepEqual(answers.map((a) => a.result?.['reused']).sort(), [false, true], JSON.stringify(answers));
    assert.equal(gateway.reads.get(held.key), 1, 'the PDF was fetched and read once');
    assert.equal((await documentOf(first))['status'], 'extracted');
    assert.equal(await extractorMetric('ca_a2a_agent_pdfs_held'), 0);

    // The slot is free again.
    const now = await stack.call('extractor', 'extract_document', { document_id: second, claim_count: 1 }, 'orchestrator');
    assert.equal(now.result?.['status'], 'extracted', JSON.stringify(now));
    assert.equal(await extractorMetric('ca_a2a_agent_pdf_admissions_total', { admission: 'admitted' }), 2);
  });

  it("the orchestrator asks a busy extractor again: the document is archived", async () => {
    const blocker = await claimedPdf();
    const id = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    const held = await gateway.holdObjectOf(blocker);
    const blockerCall = stack.call('extractor', 'extract_document', { document_id: blocker, claim_count: 1 }, 'orchestrator');
    await held.asked;
    // Between the orchestrator and the extractor: the extractor's first busy answer is passed on
    // only once the PDF that held the slot is read, so the orchestrator's retry finds it free.
    let busyAnswers = 0;
    const extractorStandIn = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const answer = await fetch(`${stack.agents.get('extractor')?.url ?? ''}/message`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        const text = await answer.text();
        if ((JSON.parse(text) as RpcAnswer).error?.data?.['reason'] === 'busy') {
          busyAnswers++;
          held.release();
          await blockerCall;
        }
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(text);
      })();
    });
    await new Promise<void>((resolve) => extractorStandIn.listen(0, '127.0.0.1', resolve));
    stack.routeTo('extractor', urlOf(extractorStandIn));
    try {
      const answer = await stack.call('orchestrator', 'process_document', { document_id: id });
      assert.equal(busyAnswers, 1);
      assert.equal(answer.result?.['run_outcome'], 'archived', JSON.stringify(answer));
    } finally {
      stack.routeTo('extractor', undefined);
      extractorStandIn.close();
    }
  });
});
