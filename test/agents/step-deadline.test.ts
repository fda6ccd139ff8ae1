import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { callTool, captureLogger } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

/** A stand-in for the extractor that counts the calls it gets and answers each as `answer` says. */
async function startStandIn(): Promise<{ url: string; calls: number; answer: (res: ServerResponse, id: unknown) => void; close(): Promise<void> }> {
  const standIn = {
    url: '',
    calls: 0,
    answer: (_res: ServerResponse, _id: unknown): void => undefined,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      standIn.calls++;
      standIn.answer(res, (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown }).id);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return standIn;
}

// A stale window of 3 s: a step has 2.7 s of it from the run's claim. Each setting below would keep
// a step going past the window on its own: an attempt that may last 600 s, retries 5 s apart, and a
// busy wait of 2.9 s. Nothing is timed: the tests count the calls the extractor got.
const STALE_SECONDS = 3;

describe("a step's deadline: all its attempts and waits end before its claim can go stale (real PostgreSQL)", () => {
  let stack: AgentStack;
  let standIn: Awaited<ReturnType<typeof startStandIn>>;
  const captured = captureLogger();
  before(async () => {
    stack = await startAgentStack({
      postgres: true, logger: captured.logger, stepTimeoutMs: 600_000,
      orchestrator: {
        staleAfterSeconds: STALE_SECONDS, retry: { attempts: 4, initialDelayMs: 5_000, maxDelayMs: 5_000 },
        busyRetry: { maxWaitMs: 2_900, initialDelayMs: 10, maxDelayMs: 50 },
      },
    });
    standIn = await startStandIn();
    stack.routeTo('extractor', standIn.url);
  });
  after(async () => {
    await standIn.close();
    await stack.close();
  });

  const run = async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    standIn.calls = 0;
    const answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
    const status = await stack.call('orchestrator', 'check_status', { document_id: id });
    const last = (status.result?.['logs'] as { step: string; status: string; message: string }[]).at(-1);
    return { id, answer, doc, last: `${last?.step}:${last?.status}: ${last?.message}` };
  };

  it('defers a step whose busy agent asks for a wait that would end past the deadline: asked once, though the busy wait allows the wait', async () => {
    // 2.8 s: within the 2.9 s busy wait, past the 2.7 s the step has from the claim.
    standIn.answer = (res, id) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
      jsonrpc: '2.0', id, error: { code: -32025, message: 'busy', data: { reason: 'busy', retry_after_seconds: 2.8 } },
    }));
    const { id, answer, doc, last } = await run();
    assert.equal(standIn.calls, 1, 'no ask after the deadline');
    assert.equal(answer.result?.['run_outcome'], 'deferred', JSON.stringify(answer));
    assert.equal(doc['status'], 'processing', 'left in flight for the stale sweep');
    assert.equal(doc['error'], null);
    assert.match(last, /^extract:skipped: extractor busy for \d+\.\d s \(1 attempt\(s\)\), no time for another ask before the claim would go stale: left in flight for the stale sweep to retake$/);
    const deferred = captured.lines.filter((line) => line['event_type'] === 'step_deferred' && line['document_id'] === id);
    assert.deepEqual(deferred.map((line) => [line['attempts'], line['out_of_time']]), [[1, true]]);
  });

  it('fails a step whose agent never answers: its one attempt is cut at the deadline, not at the 600 s step timeout, and no retry follows', async () => {
    standIn.answer = () => undefined;
    const { answer, doc, last } = await run();
    assert.equal(standIn.calls, 1);
    assert.equal(answer.result?.['run_outcome'], 'failed', JSON.stringify(answer));
    assert.equal(doc['status'], 'failed');
    assert.match(String(doc['error']), /^extract: extractor unreachable after 1 attempt\(s\), all the time before the claim would go stale allowed \(.*TimeoutError\)$/);
    assert.match(last, /^extract:failed: /);
  });

  it('fails a step whose hop fails at once without a retry whose backoff (5 s) would end past the deadline', async () => {
    standIn.answer = (res) => res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({
      jsonrpc: '2.0', id: null, error: { code: -32050, message: 'upstream unavailable', data: { reason: 'upstream.unavailable' } },
    }));
    const { answer, doc } = await run();
    assert.equal(standIn.calls, 1, 'not 4 attempts');
    assert.equal(answer.result?.['run_outcome'], 'failed', JSON.stringify(answer));
    assert.match(String(doc['error']), /^extract: extractor unreachable after 1 attempt\(s\), all the time before the claim would go stale allowed \(upstream unavailable\)$/);
  });

  it('fails a step whose hop is rate limited without waiting a Retry-After (3 s) that would end past the deadline', async () => {
    standIn.answer = (res) => res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '3' }).end(JSON.stringify({
      jsonrpc: '2.0', id: null, error: { code: -32029, message: 'rate limit exceeded', data: { reason: 'ratelimit.exceeded' } },
    }));
    const { answer, doc } = await run();
    assert.equal(standIn.calls, 1, 'not asked again after the wait');
    assert.equal(answer.result?.['run_outcome'], 'failed', JSON.stringify(answer));
    assert.equal(doc['error'], "extract: rate limit exceeded (retry after 3 s, past the call's deadline)");
  });
});

describe('a step with no time left when it is to start', () => {
  let stack: AgentStack;
  let standIn: Awaited<ReturnType<typeof startStandIn>>;
  before(async () => {
    // A window of 0.1 ms: gone before the first step starts, since the run's processing-log
    // writes before it (two round trips to the gateway and its database) take longer.
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: 0.0001 } });
    standIn = await startStandIn();
    stack.routeTo('extractor', standIn.url);
  });
  after(async () => {
    await standIn.close();
    await stack.close();
  });

  it('is deferred without asking its agent', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    const answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    assert.equal(standIn.calls, 0);
    assert.equal(answer.result?.['run_outcome'], 'deferred', JSON.stringify(answer));
    assert.equal(answer.result?.['status'], 'processing');
    assert.equal(answer.result?.['error'], null);
    const status = await stack.call('orchestrator', 'check_status', { document_id: id });
    const last = (status.result?.['logs'] as { step: string; status: string; message: string }[]).at(-1);
    assert.equal(`${last?.step}:${last?.status}: ${last?.message}`, 'extract:skipped: no time left to ask extractor before the claim would go stale: left in flight for the stale sweep to retake');
  });
});
