import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { callTool, captureLogger } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack, type RpcAnswer } from './helpers/agent-stack.js';

// Long enough that nothing a test does in between ages a row past it, however loaded the machine:
// a claim or a run is made stale by moving its timestamps back an hour in the database, never by
// waiting (stack.ageDocuments).
const STALE_SECONDS = 60;

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
    await stack.ageDocuments(id);
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
    await stack.ageDocuments(id);
    const outcomes = await stack.agents.get('orchestrator')?.sweep();
    assert.equal(outcomes?.[id]?.status, 'archived');
  });

  // Ten claimed at once and run one after another: the last ones' claims aged while the first ran,
  // and past the stale window another sweep (another replica's) took them over from under this one.
  it('claims each stalled document only as its run starts, not the whole batch up front', async () => {
    const ids = [await stack.uploadSample('meeting-notes.txt', 'text/plain'), await stack.uploadSample('meeting-notes.txt', 'text/plain')];
    for (const id of ids) assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    await stack.ageDocuments(...ids);
    const real = String(stack.agents.get('extractor')?.url);
    const othersDuringFirstRun: unknown[] = [];
    const standIn = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type')) as Record<string, string>;
        const running = (JSON.parse(body) as { params: { document_id: string } }).params.document_id;
        if (running === ids[0] || running === ids[1]) {
          if (othersDuringFirstRun.length === 0) {
            const other = ids.find((id) => id !== running);
            othersDuringFirstRun.push((await callTool(stack.gateway.url, 'documents_get', { document_id: other })).body['claim_count']);
          }
        }
        const answer = await fetch(`${real}/message`, { method: 'POST', body, headers });
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
      })();
    });
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
    stack.routeTo('extractor', `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`);
    let outcomes;
    try {
      outcomes = await stack.agents.get('orchestrator')?.sweep();
    } finally {
      stack.routeTo('extractor', undefined);
      standIn.close();
    }
    assert.deepEqual(othersDuringFirstRun, [1], `the other document was not claimed yet while the first ran: ${JSON.stringify(outcomes)}`);
    for (const id of ids) assert.equal(outcomes?.[id]?.status, 'archived', JSON.stringify(outcomes));
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
    await stack.ageDocuments(stalled);
    for (const id of live) await moveToExtracted(id);
    // The sweep's own call (agents/orchestrator/sweep.ts claimStale): its pick is what is checked here.
    const claimed = await callTool(stack.gateway.url, 'documents_claim_stale', { older_than_seconds: STALE_SECONDS, limit: 1 });
    assert.deepEqual((claimed.body['documents'] as { document_id: string }[]).map((doc) => doc.document_id), [stalled]);
    for (const id of live) assert.equal(await statusOf(id), 'extracted', 'a live run is left alone');
  });

  it('lets process_document take over a stale run itself', async () => {
    const id = await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf');
    await callTool(stack.gateway.url, 'documents_claim', { document_id: id });
    await stack.ageDocuments(id);
    const answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    assert.equal(answer.result?.['status'], 'archived', JSON.stringify(answer));
  });

  // It reads the document stale between steps; a sweep that re-claimed it meanwhile and took it on
  // to the same status has a live run, which the takeover must leave alone.
  it('does not let process_document take over a document re-claimed since it read it stale', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    await callTool(stack.gateway.url, 'documents_claim', { document_id: id });
    assert.equal((await stack.call('extractor', 'extract_document', { document_id: id }, 'orchestrator')).result?.['status'], 'extracted');
    await stack.ageDocuments(id);
    // Just before the orchestrator's claim lands, another worker re-claims the document and extracts it again.
    let raced = false;
    const gatewayStandIn = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const call = JSON.parse(body) as { tool: string; arguments: Record<string, unknown> };
        if (!raced && call.tool === 'documents_claim' && call.arguments['document_id'] === id) {
          raced = true;
          assert.equal((await callTool(stack.gateway.url, 'documents_update', { document_id: id, expected_status: 'extracted', status: 'processing' })).status, 200);
          assert.equal((await callTool(stack.gateway.url, 'documents_update', { document_id: id, expected_status: 'processing', status: 'extracted' })).status, 200);
        }
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type')) as Record<string, string>;
        const answer = await fetch(`${stack.gateway.url}${req.url ?? '/call_tool'}`, { method: 'POST', body, headers });
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
      })();
    });
    await new Promise<void>((resolve) => gatewayStandIn.listen(0, '127.0.0.1', resolve));
    stack.routeGatewayTo(`http://127.0.0.1:${(gatewayStandIn.address() as AddressInfo).port}`);
    let answer;
    try {
      answer = await stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    } finally {
      stack.routeGatewayTo(undefined);
      gatewayStandIn.close();
    }
    assert.ok(raced, 'the other worker re-claimed the document');
    assert.equal(answer.error?.data?.['reason'], 'conflict', JSON.stringify(answer));
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
    assert.equal(doc['claim_count'], 2, 'the other worker\'s claim is still the document\'s');
    assert.equal(doc['status'], 'extracted');
  });
});

/** A step call as the stand-in agent received it. */
interface HeldCall {
  readonly body: string;
  readonly headers: Record<string, string>;
  answer?: Promise<string>;
}

/** What the stand-in saw: both runs' answers, and what the first run's step was answered. */
interface Takeover {
  readonly first: RpcAnswer;
  readonly second: RpcAnswer;
  readonly firstStep: RpcAnswer;
}

const readBody = async (req: IncomingMessage) => {
  let body = '';
  for await (const chunk of req) body += (chunk as Buffer).toString();
  return body;
};

/**
 * Runs process_document on `id` with a stand-in for `service` on the orchestrator's route. The
 * stand-in holds the first run's call to it and has a second process_document take the document
 * over meanwhile (the stack's stale window is zero). When the second run's call arrives, the first
 * run's call is answered with what `answerFirst` gives (`forward` sends a call on to the real agent,
 * once); once the first run has ended, the second run's call is answered by the real agent.
 */
async function takeOver(
  stack: AgentStack, id: string, service: 'extractor' | 'validator',
  answerFirst: (calls: { first: HeldCall; second: HeldCall; forward: (call: HeldCall) => Promise<string> }) => Promise<string>,
): Promise<Takeover> {
  const real = stack.agents.get(service)?.url;
  const forward = (call: HeldCall) => {
    call.answer ??= fetch(`${String(real)}/message`, { method: 'POST', body: call.body, headers: call.headers }).then((res) => res.text());
    return call.answer;
  };
  let firstRun: Promise<RpcAnswer> | undefined;
  let secondRun: Promise<RpcAnswer> | undefined;
  let held: (HeldCall & { res: ServerResponse }) | undefined;
  let firstStep: string | undefined;
  const reply = (res: ServerResponse, body: string) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  const standIn = createServer((req, res) => {
    void (async () => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type')) as Record<string, string>;
      const call: HeldCall = { body: await readBody(req), headers };
      if (held === undefined) {
        held = { ...call, res };
        // A zero window still needs the clock past the claim's (or the last step's) millisecond.
        const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
        const since = Math.max(Date.parse(String(doc['claimed_at'])), Date.parse(String(doc['updated_at'])));
        while (Date.now() <= since) await nextTurn();
        secondRun = stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
        return;
      }
      firstStep = await answerFirst({ first: held, second: call, forward });
      reply(held.res, firstStep);
      await firstRun;
      reply(res, await forward(call));
    })();
  });
  await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
  stack.routeTo(service, `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`);
  try {
    firstRun = stack.call('orchestrator', 'process_document', { document_id: id }, 'lambda');
    const first = await firstRun;
    const second = await secondRun;
    assert.ok(second && firstStep !== undefined, 'the second run took over while the first run\'s step was held');
    return { first, second, firstStep: JSON.parse(firstStep) as RpcAnswer };
  } finally {
    stack.routeTo(service, undefined);
    standIn.close();
  }
}

describe('a run taken over while a step of it is under way', () => {
  let stack: AgentStack;
  const captured = captureLogger();
  // A zero stale window: a second process_document takes over a run in flight at once.
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: 0 }, logger: captured.logger });
  });
  after(async () => {
    await stack.close();
  });

  const ofDoc = (id: string, event: string) => captured.lines.filter((l) => l['event_type'] === event && l['document_id'] === id);
  const logsOf = async (id: string) => {
    const status = await stack.call('orchestrator', 'check_status', { document_id: id }, 'viewer');
    return status.result?.['logs'] as { step: string; status: string; message: string | null }[];
  };
  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;

  it('does not fail the run that took over when the first run fails afterwards: the document ends as the new run leaves it, the first run is interrupted', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    // The second run extracts the document (the real extractor); only then does the first run's
    // extraction fail.
    const { first, second } = await takeOver(stack, id, 'extractor', async ({ first: call, second: other, forward }) => {
      await forward(other);
      return JSON.stringify({ jsonrpc: '2.0', id: (JSON.parse(call.body) as { id: unknown }).id, error: { code: -32023, message: 'the file cannot be read', data: { reason: 'corrupt_document' } } });
    });
    assert.equal(first.result?.['status'], 'extracted', `the document is the second run's: ${JSON.stringify(first)}`);
    assert.equal(first.result?.['error'], null);
    assert.equal(first.result?.['run_outcome'], 'interrupted', 'the answer says this call\'s own run was interrupted');
    assert.equal(second.result?.['status'], 'archived', JSON.stringify(second));
    assert.equal(second.result?.['run_outcome'], 'archived');
    const doc = await documentOf(id);
    assert.equal(doc['status'], 'archived');
    assert.equal(doc['error'], null);
    assert.equal(doc['claim_count'], 2);

    assert.deepEqual(ofDoc(id, 'run_taken_over').map((l) => [l['run_claim_count'], l['current_claim_count']]), [[1, 2]]);
    assert.deepEqual(ofDoc(id, 'pipeline_finished').map((l) => l['status']), ['interrupted', 'archived']);
    const logs = await logsOf(id);
    const skipped = logs.filter((l) => l.step === 'extract' && l.status === 'skipped');
    assert.equal(skipped.length, 1, JSON.stringify(logs));
    assert.match(String(skipped[0]?.message), /^another worker took the document over; not recorded as failed: extract: the file cannot be read/);
    assert.ok(!logs.some((l) => l.status === 'failed'), JSON.stringify(logs));
  });

  it('logs run_taken_over once when the first run\'s step answers conflict after the takeover, as for claim_superseded', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    // A step agent that fences on the status alone (an operator's call, an older agent) answers conflict.
    const { first, second } = await takeOver(stack, id, 'extractor', async ({ first: call, second: other, forward }) => {
      await forward(other);
      const error = { code: -32021, message: `document ${id} is extracted; only a claimed (processing) document is extracted`, data: { reason: 'conflict', current_status: 'extracted' } };
      return JSON.stringify({ jsonrpc: '2.0', id: (JSON.parse(call.body) as { id: unknown }).id, error });
    });
    assert.equal(first.result?.['run_outcome'], 'interrupted', JSON.stringify(first));
    assert.equal(second.result?.['run_outcome'], 'archived', JSON.stringify(second));
    assert.deepEqual(ofDoc(id, 'run_taken_over').map((l) => [l['step'], l['run_claim_count'], l['current_claim_count']]), [['extract', 1, 2]]);
    assert.deepEqual(ofDoc(id, 'pipeline_finished').map((l) => l['status']), ['interrupted', 'archived']);
    const skipped = (await logsOf(id)).filter((l) => l.step === 'extract' && l.status === 'skipped');
    assert.equal(skipped.length, 1);
  });

  it('refuses the first run\'s extraction arriving after the takeover (claim_superseded, nothing written), and the run that took over archives the document', async () => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    // The first run's extraction reaches the real extractor only once the second run holds the claim.
    const { first, second, firstStep } = await takeOver(stack, id, 'extractor', ({ first: call, forward }) => forward(call));
    assert.equal(firstStep.error?.code, -32024, JSON.stringify(firstStep));
    assert.deepEqual(firstStep.error?.data, { reason: 'claim_superseded', current_claim_count: 2, current_status: 'processing' });
    assert.equal(first.result?.['run_outcome'], 'interrupted', JSON.stringify(first));
    assert.equal(first.result?.['failed_step'], 'extract');
    assert.equal(second.result?.['status'], 'archived', JSON.stringify(second));
    assert.equal(second.result?.['run_outcome'], 'archived');
    const doc = await documentOf(id);
    assert.equal(doc['status'], 'archived');
    assert.equal(doc['claim_count'], 2);

    assert.deepEqual(ofDoc(id, 'run_taken_over').map((l) => [l['step'], l['run_claim_count'], l['current_claim_count']]), [['extract', 1, 2]]);
    assert.deepEqual(ofDoc(id, 'pipeline_finished').map((l) => l['status']), ['interrupted', 'archived']);
    const logs = (await logsOf(id)).map((l) => `${l.step}:${l.status}`);
    assert.deepEqual(logs.filter((l) => l.startsWith('extract:')), ['extract:started', 'extract:started', 'extract:skipped', 'extract:succeeded']);
    assert.deepEqual(logs.filter((l) => l.startsWith('archive:')), ['archive:started', 'archive:succeeded'], 'only the run that took over went on');
  });

  for (const sample of [
    { file: 'meeting-notes.txt', type: 'text/plain', verdict: 'validated', end: 'archived' },
    { file: 'invalid-expenses.csv', type: 'text/csv', verdict: 'failed', end: 'failed' },
  ] as const) {
    it(`does not let the first run's verdict land after the takeover (${sample.verdict} verdict): the run that took over ends the document ${sample.end}`, async () => {
      const id = await stack.uploadSample(sample.file, sample.type);
      const { first, second, firstStep } = await takeOver(stack, id, 'validator', ({ first: call, forward }) => forward(call));
      assert.equal(firstStep.error?.data?.['reason'], 'claim_superseded', JSON.stringify(firstStep));
      assert.equal(firstStep.error?.data?.['current_claim_count'], 2);
      assert.equal(first.result?.['run_outcome'], 'interrupted', JSON.stringify(first));
      assert.equal(first.result?.['failed_step'], 'validate');
      assert.equal(second.result?.['status'], sample.end, JSON.stringify(second));
      assert.equal(second.result?.['run_outcome'], sample.end);
      const doc = await documentOf(id);
      assert.equal(doc['status'], sample.end);
      assert.equal(doc['claim_count'], 2);

      assert.deepEqual(ofDoc(id, 'run_taken_over').map((l) => [l['step'], l['run_claim_count'], l['current_claim_count']]), [['validate', 1, 2]]);
      assert.deepEqual(ofDoc(id, 'pipeline_finished').map((l) => l['status']), ['interrupted', sample.end]);
      const logs = (await logsOf(id)).map((l) => `${l.step}:${l.status}`);
      // One verdict recorded, the second run's; the first run's step is skipped, not failed.
      assert.deepEqual(logs.filter((l) => l.startsWith('validate:')), ['validate:started', 'validate:started', 'validate:skipped', sample.verdict === 'validated' ? 'validate:succeeded' : 'validate:failed']);
    });
  }
});

describe('the stale sweep with a batch set (--sweep-batch)', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: STALE_SECONDS, sweepBatch: 2 } });
  });
  after(async () => {
    await stack.close();
  });

  it('takes over at most that many stalled documents per sweep; the next sweep takes the rest', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      ids.push(id);
    }
    await stack.ageDocuments(...ids);
    const first = await stack.agents.get('orchestrator')?.sweep();
    assert.equal(Object.keys(first ?? {}).length, 2, JSON.stringify(first));
    const second = await stack.agents.get('orchestrator')?.sweep();
    assert.deepEqual(Object.keys({ ...first, ...second }).sort(), [...ids].sort(), JSON.stringify(second));
    assert.ok(Object.values({ ...first, ...second }).every((outcome) => outcome.status === 'archived'), JSON.stringify({ first, second }));
  });
});
