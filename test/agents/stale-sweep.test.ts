import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { callTool, captureLogger } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack, type RpcAnswer } from './helpers/agent-stack.js';

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

describe('a run taken over while a step of it is under way', () => {
  let stack: AgentStack;
  const captured = captureLogger();
  // A zero stale window: a second process_document takes over a run in processing at once.
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: 0 }, logger: captured.logger });
  });
  after(async () => {
    await stack.close();
  });

  const readBody = async (req: IncomingMessage) => {
    let body = '';
    for await (const chunk of req) body += (chunk as Buffer).toString();
    return body;
  };
  const answer = (res: ServerResponse, body: string) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);

  it('does not fail the run that took over when the first run fails afterwards: the document ends as the new run leaves it, the first run is interrupted', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    const realExtractor = stack.agents.get('extractor')?.url;
    let firstRun: Promise<RpcAnswer> | undefined;
    let secondRun: Promise<RpcAnswer> | undefined;
    let pendingFirst: { res: ServerResponse; id: unknown } | undefined;
    // The extractor as the first run sees it: while the first run waits on its extraction, another
    // worker takes the document over and its run extracts it (the real extractor); only then does
    // the first run's extraction fail. The second run goes on once the first has finished.
    const extractor = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        if (pendingFirst === undefined) {
          pendingFirst = { res, id: (JSON.parse(body) as { id: unknown }).id };
          // A zero window still needs the clock past the claim's millisecond to call it stale.
          const claimedAt = Date.parse(String((await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body['claimed_at']));
          while (Date.now() <= claimedAt) await nextTurn();
          secondRun = stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
          return;
        }
        const identity = Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type');
        const extracted = await (await fetch(`${String(realExtractor)}/message`, { method: 'POST', body, headers: Object.fromEntries(identity) as Record<string, string> })).text();
        answer(pendingFirst.res, JSON.stringify({ jsonrpc: '2.0', id: pendingFirst.id, error: { code: -32023, message: 'the file cannot be read', data: { reason: 'corrupt_document' } } }));
        await firstRun;
        answer(res, extracted);
      })();
    });
    await new Promise<void>((resolve) => extractor.listen(0, '127.0.0.1', resolve));
    stack.routeTo('extractor', `http://127.0.0.1:${(extractor.address() as AddressInfo).port}`);
    try {
      firstRun = stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
      const first = await firstRun;
      assert.equal(first.result?.['status'], 'extracted', `the document is the second run's: ${JSON.stringify(first)}`);
      assert.equal(first.result?.['error'], null);
      const second = await secondRun;
      assert.equal(second?.result?.['status'], 'archived', JSON.stringify(second));
    } finally {
      stack.routeTo('extractor', undefined);
      extractor.close();
    }
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
    assert.equal(doc['status'], 'archived');
    assert.equal(doc['error'], null);
    assert.equal(doc['claim_count'], 2);

    const ofDoc = (event: string) => captured.lines.filter((l) => l['event_type'] === event && l['document_id'] === id);
    assert.deepEqual(ofDoc('run_taken_over').map((l) => [l['run_claim_count'], l['current_claim_count']]), [[1, 2]]);
    assert.deepEqual(ofDoc('pipeline_finished').map((l) => l['status']), ['interrupted', 'archived']);
    const status = await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer');
    const logs = (status.result?.['logs'] as { step: string; status: string; message: string | null }[]);
    const skipped = logs.filter((l) => l.step === 'extract' && l.status === 'skipped');
    assert.equal(skipped.length, 1, JSON.stringify(logs));
    assert.match(String(skipped[0]?.message), /^another worker took the document over; not recorded as failed: extract: the file cannot be read/);
    assert.ok(!logs.some((l) => l.status === 'failed'), JSON.stringify(logs));
  });
});
