import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { callTool, captureLogger, metricValue } from '../mcp/helpers.js';
import type { AgentStack } from './helpers/agent-stack.js';
import { startHoldingStack, type HoldingGateway } from './helpers/held-reads.js';

// Long enough that no live run or fresh claim goes stale under a loaded machine: a document is
// made stale by moving its claim back an hour (stack.ageDocuments), never by waiting the window out.
const STALE_SECONDS = 60;

describe("the orchestrator's handling of a busy step agent (real PostgreSQL)", () => {
  let stack: AgentStack;
  let gateway: HoldingGateway;
  let close: () => Promise<void>;
  const captured = captureLogger();
  before(async () => {
    // A busy wait of 0.5 s, shorter than the extractor's retry hint (1 s): a run that honours the
    // hint asks once and defers; one that ignored it would ask again every 10 to 50 ms.
    ({ stack, gateway, close } = await startHoldingStack({
      postgres: true, extractor: { maxPdfs: 1 }, logger: captured.logger,
      orchestrator: { staleAfterSeconds: STALE_SECONDS, busyRetry: { maxWaitMs: 500, initialDelayMs: 10, maxDelayMs: 50 } },
    }));
  });
  after(async () => {
    await close();
  });

  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
  const extractorMetric = (name: string, labels: Record<string, string> = {}) => metricValue(stack.agents.get('extractor')?.url ?? '', name, labels);
  /** A claimed PDF whose extraction holds the extractor's one slot until `release()`. */
  const occupyTheExtractor = async () => {
    const blocker = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: blocker })).status, 200);
    const held = await gateway.holdObjectOf(blocker);
    const extraction = stack.call('extractor', 'extract_document', { document_id: blocker, claim_count: 1 }, 'orchestrator');
    await held.asked;
    return async () => {
      held.release();
      assert.equal((await extraction).result?.['status'], 'extracted');
    };
  };

  it('a step still busy past the busy wait leaves the document in flight, unfailed (deferred, the retry hint honoured); the stale sweep archives it once there is room', async () => {
    const id = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    const release = await occupyTheExtractor();
    const busyBefore = await extractorMetric('ca_a2a_agent_pdf_admissions_total', { admission: 'busy' });
    let answer;
    try {
      answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    } finally {
      await release();
    }
    assert.equal(answer.result?.['run_outcome'], 'deferred', JSON.stringify(answer));
    assert.equal(answer.result?.['failed_step'], 'extract');
    assert.equal(answer.result?.['status'], 'processing');
    assert.equal(answer.result?.['error'], null, 'the document carries no failure');
    assert.equal(await extractorMetric('ca_a2a_agent_pdf_admissions_total', { admission: 'busy' }), (busyBefore ?? 0) + 1, 'asked once: the 1 s hint is past the 0.5 s wait');
    const orchestratorUrl = stack.agents.get('orchestrator')?.url ?? '';
    assert.equal(await metricValue(orchestratorUrl, 'ca_a2a_agent_pipeline_runs_total', { outcome: 'deferred', trigger: 'process_document' }), 1);
    const deferred = captured.lines.filter((line) => line['event_type'] === 'step_deferred');
    assert.deepEqual(deferred.map((line) => [line['document_id'], line['step'], line['attempts']]), [[id, 'extract', 1]]);
    const status = await stack.call('orchestrator', 'check_status', { document_id: id });
    const last = (status.result?.['logs'] as { step: string; status: string; message: string }[]).at(-1);
    assert.equal(`${last?.step}:${last?.status}`, 'extract:skipped');
    assert.match(last?.message ?? '', /^extractor busy for \d+\.\d s \(1 attempt\(s\)\): left in flight for the stale sweep to retake$/);

    await stack.ageDocuments(id);
    const outcomes = await stack.agents.get('orchestrator')?.sweep();
    assert.equal(outcomes?.[id]?.status, 'archived', JSON.stringify(outcomes));
    assert.equal((await documentOf(id))['claim_count'], 2);
  });

  it('a sweep whose run is deferred claims no more stalled documents this tick', async () => {
    const ids = [await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf'), await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf')];
    for (const id of ids) assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    await stack.ageDocuments(...ids);
    // Claimed now: fresh, so the sweep does not take the blocker itself.
    const release = await occupyTheExtractor();
    let outcomes;
    try {
      outcomes = await stack.agents.get('orchestrator')?.sweep();
    } finally {
      await release();
    }
    assert.deepEqual(Object.values(outcomes ?? {}).map((o) => o.status), ['deferred'], JSON.stringify(outcomes));
    const claimCounts = await Promise.all(ids.map(async (id) => (await documentOf(id))['claim_count']));
    assert.deepEqual(claimCounts.sort(), [1, 2], 'one retaken and deferred, the other left for the next tick');
    // The deferred one was claimed again, its stale window started anew: once both are stale
    // again, the next sweep takes both.
    await stack.ageDocuments(...ids);
    const next = await stack.agents.get('orchestrator')?.sweep();
    for (const id of ids) assert.equal(next?.[id]?.status, 'archived', JSON.stringify(next));
  });
});
