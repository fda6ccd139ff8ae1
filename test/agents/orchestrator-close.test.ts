import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';

// Long enough that the run the sweep starts never goes stale under a loaded machine: the two
// documents are made stale by moving their claims back an hour (stack.ageDocuments), not by waiting.
const STALE_SECONDS = 60;

describe('an orchestrator that is stopped while its sweep runs (PostgreSQL)', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true, orchestrator: { staleAfterSeconds: STALE_SECONDS } });
  });
  after(async () => {
    await stack.close();
  });

  // close() only cleared the timer: the sweep under way went on claiming stalled documents (up to
  // ten) for an agent that had stopped, racing the orchestrator started in its place.
  it('finishes the run it is in and claims no other stalled document', async () => {
    const ids = [await stack.uploadSample('meeting-notes.txt', 'text/plain'), await stack.uploadSample('meeting-notes.txt', 'text/plain')];
    for (const id of ids) assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    await stack.ageDocuments(...ids);
    // The first run's extraction waits until the orchestrator has been stopped.
    let reached!: () => void;
    let release!: () => void;
    const extracting = new Promise<void>((resolve) => (reached = resolve));
    const stopped = new Promise<void>((resolve) => (release = resolve));
    const real = String(stack.agents.get('extractor')?.url);
    const standIn = createServer((req, res) => {
      void (async () => {
        let body = '';
        for await (const chunk of req) body += (chunk as Buffer).toString();
        reached();
        await stopped;
        const answer = await fetch(`${real}/message`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
      })();
    });
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
    stack.routeTo('extractor', `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`);
    let outcomes;
    try {
      const orchestrator = stack.agents.get('orchestrator');
      const sweeping = orchestrator?.sweep();
      // A sweep that found nothing stalled ends without reaching the extractor.
      const first = await Promise.race([extracting.then(() => 'extracting'), sweeping]);
      assert.equal(first, 'extracting', `the sweep ended without taking a stalled document over: ${JSON.stringify(first)}`);
      await stack.stopAgent('orchestrator');
      release();
      outcomes = await sweeping;
    } finally {
      stack.routeTo('extractor', undefined);
      standIn.close();
    }
    const taken = Object.keys(outcomes ?? {});
    assert.equal(taken.length, 1, JSON.stringify(outcomes));
    assert.equal(outcomes?.[taken[0] as string]?.status, 'archived', 'the run under way finished');
    const other = ids.find((id) => id !== taken[0]);
    const doc = (await callTool(stack.gateway.url, 'documents_get', { document_id: other })).body;
    assert.equal(doc['claim_count'], 1, 'the other stalled document was not claimed');
    assert.equal(doc['status'], 'processing');
  });
});
