import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { startAgent } from '../../agents/registry.js';
import { startAgentStack, type AgentStack, type RpcAnswer } from './helpers/agent-stack.js';
import { startDirectRouter } from './helpers/direct-router.js';

const STEPS = [
  { service: 'extractor', method: 'extract_document', from: 'processing', untouched: 'extracted' },
  { service: 'validator', method: 'validate_document', from: 'extracted', untouched: 'validation' },
  { service: 'archivist', method: 'archive_document', from: 'validated', untouched: 'archive_key' },
] as const;

const readBody = async (req: IncomingMessage) => {
  let body = '';
  for await (const chunk of req) body += (chunk as Buffer).toString();
  return body;
};

describe('a pipeline step called with the claim its run holds', () => {
  let stack: AgentStack;
  // Armed with a document id, the stand-in gateway claims that document again just before the next
  // step reads its object: after the step's own check of the claim, before its write.
  let reclaimBeforeRead: { id: string; status: string } | undefined;
  // Armed with a document id, it holds the first documents_update of that document until a second
  // one comes, and lets the first through before the second: two calls of one step that both read
  // the document before either wrote.
  let pairWrites: { id: string; release?: () => void; first?: Promise<void> } | undefined;
  const gatewayStandIn = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const call = JSON.parse(body) as { tool: string; arguments: { document_id?: string } };
      const pair = pairWrites;
      if (pair !== undefined && call.tool === 'documents_update' && call.arguments.document_id === pair.id) {
        if (pair.release === undefined) {
          let written!: () => void;
          pair.first = new Promise<void>((resolve) => (written = resolve));
          await new Promise<void>((resolve) => (pair.release = resolve));
          res.on('finish', written);
        } else {
          pairWrites = undefined;
          pair.release();
          await pair.first;
        }
      }
      const target = reclaimBeforeRead;
      if (target !== undefined && call.tool === 's3_get_object') {
        reclaimBeforeRead = undefined;
        await callTool(stack.gateway.url, 'documents_update', { document_id: target.id, expected_status: target.status, status: 'processing' });
        if (target.status !== 'processing') await callTool(stack.gateway.url, 'documents_update', { document_id: target.id, status: target.status });
      }
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-ca-a2a-') || k === 'content-type')) as Record<string, string>;
      const answer = await fetch(`${stack.gateway.url}${req.url ?? '/call_tool'}`, { method: 'POST', body, headers });
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
    })();
  });

  before(async () => {
    stack = await startAgentStack({ postgres: true });
    await new Promise<void>((resolve) => gatewayStandIn.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    gatewayStandIn.close();
    await stack.close();
  });

  const documentOf = async (id: string) => (await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body;
  /** A document claimed once (claim_count 1) and taken by the real agents to `status`. */
  const documentIn = async (status: 'processing' | 'extracted' | 'validated') => {
    const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
    assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    if (status !== 'processing') assert.ok((await stack.call('extractor', 'extract_document', { document_id: id }, 'orchestrator')).result);
    if (status === 'validated') assert.ok((await stack.call('validator', 'validate_document', { document_id: id }, 'orchestrator')).result);
    return id;
  };

  for (const step of STEPS) {
    it(`${step.method}: refuses a claim that is not the document's with claim_superseded and writes nothing`, async () => {
      const id = await documentIn(step.from);
      const before = await documentOf(id);
      const answer = await stack.call(step.service, step.method, { document_id: id, claim_count: 2 }, 'orchestrator');
      assert.equal(answer.error?.code, -32024, JSON.stringify(answer));
      assert.deepEqual(answer.error?.data, { reason: 'claim_superseded', current_claim_count: 1, current_status: step.from });
      assert.deepEqual(await documentOf(id), before);
    });

    it(`${step.method}: writes nothing when the document is claimed again between its check and its write (expected_claim_count)`, async () => {
      const id = await documentIn(step.from);
      reclaimBeforeRead = { id, status: step.from };
      stack.routeGatewayTo(`http://127.0.0.1:${(gatewayStandIn.address() as AddressInfo).port}`);
      let answer;
      try {
        answer = await stack.call(step.service, step.method, { document_id: id, claim_count: 1 }, 'orchestrator');
      } finally {
        stack.routeGatewayTo(undefined);
      }
      assert.equal(reclaimBeforeRead, undefined, 'the step read the object');
      assert.equal(answer.error?.data?.['reason'], 'claim_superseded', JSON.stringify(answer));
      assert.equal(answer.error?.data?.['current_claim_count'], 2);
      const doc = await documentOf(id);
      assert.equal(doc['status'], step.from);
      assert.equal(doc['claim_count'], 2);
      assert.equal(doc[step.untouched], null, `${step.untouched} not written`);
      if (step.service === 'archivist') {
        const copy = await callTool(stack.gateway.url, 's3_get_object', { key: `archive/${id}/meeting-notes.txt` });
        assert.equal(copy.status, 404, 'no archive copy made under a superseded claim');
      }
    });

    // Two replicas of the step agent: within one, a second call under the same claim joins the
    // first one's slot (document-admission.test.ts) and reads nothing of its own.
    it(`${step.method}: answers the recorded result when another call under the same claim wrote first (a retry whose first answer was lost, at another replica)`, async () => {
      const id = await documentIn(step.from);
      pairWrites = { id };
      const standIn = `http://127.0.0.1:${(gatewayStandIn.address() as AddressInfo).port}`;
      stack.routeGatewayTo(standIn);
      const router = await startDirectRouter(step.service, { gatewayUrl: () => standIn, agentUrl: () => undefined });
      const replica = await startAgent(step.service, { port: 0, egressUrl: router.url, logger: stack.agents.get(step.service)?.logger });
      const atReplica = async (): Promise<RpcAnswer> => (await (await fetch(`${replica.url}/message`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: step.method, params: { document_id: id, claim_count: 1 } }),
      })).json()) as RpcAnswer;
      let answers;
      try {
        answers = await Promise.all([stack.call(step.service, step.method, { document_id: id, claim_count: 1 }, 'orchestrator'), atReplica()]);
      } finally {
        stack.routeGatewayTo(undefined);
        pairWrites = undefined;
        await replica.close();
        await router.close();
      }
      // Both archive calls copy and write (their final write accepts archived): one archive entry all the same.
      assert.deepEqual(answers.map((a) => a.result?.['reused']).sort(), step.service === 'archivist' ? [false, false] : [false, true], JSON.stringify(answers));
      const doc = await documentOf(id);
      assert.notEqual(doc[step.untouched], null);
      assert.equal(doc['claim_count'], 1);
    });

    it(`${step.method}: does its work under the document's current claim, and without a claim_count`, async () => {
      for (const params of [(id: string) => ({ document_id: id, claim_count: 1 }), (id: string) => ({ document_id: id })]) {
        const id = await documentIn(step.from);
        const answer = await stack.call(step.service, step.method, params(id), 'orchestrator');
        assert.equal(answer.result?.['reused'], false, JSON.stringify(answer));
        assert.notEqual((await documentOf(id))[step.untouched], null);
      }
    });
  }
});
