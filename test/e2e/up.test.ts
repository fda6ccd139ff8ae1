import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { loadClientSecrets } from '../../deploy/dev-issuer/clients.js';
import { createServiceClient } from '../../proxy/client/call.js';
import type { RpcClient } from '../../proxy/up/rpc-client.js';
import type { UpResult } from '../../proxy/up/up.js';
import { AuditCapture } from '../helpers/audit-capture.js';
import { accepts } from '../helpers/raw-http.js';
import { clientFor, startUp, tempDataDir } from './helpers.js';

const EXPECTED: Record<string, string> = {
  'invoice-2024-001.pdf': 'archived',
  'transactions.csv': 'archived',
  'meeting-notes.txt': 'archived',
  'invalid-expenses.csv': 'failed',
};

/**
 * Runs a command line as typed in another shell, in another directory, with none of the stack's
 * settings in its environment; `npx ca-a2a` is this checkout's bin/ca-a2a.js. Rejects on a non-zero exit.
 */
async function shell(command: string): Promise<{ stdout: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE: process.execPath, BIN: new URL('../../bin/ca-a2a.js', import.meta.url).pathname };
  for (const name of ['CA_A2A_DATA_DIR', 'CA_A2A_ISSUER', 'CA_A2A_CLIENT_SECRET']) delete env[name];
  const elsewhere = await tempDataDir();
  try {
    return await promisify(execFile)('/bin/sh', ['-c', command.replace(/^npx ca-a2a /, '"$NODE" "$BIN" ')], { cwd: elsewhere.dir, env });
  } finally {
    await elsewhere.remove();
  }
}

describe('ca-a2a up: the whole system through sidecars and the development issuer', () => {
  let data: Awaited<ReturnType<typeof tempDataDir>>;
  let result: UpResult;
  const logs = new AuditCapture();
  before(async () => {
    data = await tempDataDir();
    result = await startUp(data.dir, [], {}, logs);
  });
  after(async () => {
    await result?.stack.close();
    await data?.remove();
  });

  it('takes every sample to its right final state and prints a summary with a refused call', () => {
    const states = Object.fromEntries(result.outcomes.map((o) => [o.filename, o.status]));
    assert.deepEqual(states, EXPECTED);
    assert.equal(result.refusal?.status, 403);
    assert.equal(result.refusal?.who, 'viewer');
    assert.match(result.summary, /invoice-2024-001\.pdf\s+archived\s+score 1\.00/);
    assert.match(result.summary, /viewer → process_document: 403/);
  });

  it('prints a call command that works against this stack from another terminal', async () => {
    const line = result.summary.split('\n').find((l) => l.startsWith('Try: npx ca-a2a call '));
    assert.ok(line !== undefined, result.summary);
    const { stdout } = await shell(line.slice('Try: '.length));
    assert.ok(Array.isArray(JSON.parse(stdout).result.documents), stdout);
  });

  it('ca-a2a call speaks MCP to the gateway through its sidecar (tools/list at /mcp)', async () => {
    const { issuer, dataDir, sidecars } = result.stack;
    const { stdout } = await shell(`npx ca-a2a call --client admin --url ${sidecars.mcp ?? ''}/mcp --issuer ${issuer} --data-dir ${dataDir} --method tools/list`);
    const tools = (JSON.parse(stdout).result.tools as { name: string }[]).map((t) => t.name);
    assert.ok(tools.includes('s3_put_object'), stdout);
  });

  it('lets the viewer list and get documents but not process them', async () => {
    const viewer = await clientFor(result, 'viewer');
    const listed = await viewer.call(result.stack.sidecars.archivist ?? '', 'list_documents', {});
    assert.equal(listed.status, 200);
    const id = String((listed.result?.['documents'] as { document_id: string }[])[0]?.document_id);
    assert.equal((await viewer.call(result.stack.sidecars.archivist ?? '', 'get_document', { document_id: id })).status, 200);
    const refused = await viewer.call(result.stack.sidecars.orchestrator ?? '', 'process_document', { document_id: id });
    assert.equal(refused.status, 403);
    assert.equal(refused.error?.code, -32011);
  });

  it('refuses delete_document to the orchestrator identity (explicit deny) at the archivist sidecar', async () => {
    const orchestrator = await clientFor(result, 'orchestrator');
    const refused = await orchestrator.call(result.stack.sidecars.archivist ?? '', 'delete_document', { document_id: crypto.randomUUID() });
    assert.equal(refused.status, 403);
  });

  it('serves the agent cards publicly through each sidecar, pointing at the sidecar', async () => {
    for (const name of ['orchestrator', 'extractor', 'validator', 'archivist'] as const) {
      const sidecar = result.stack.sidecars[name] ?? '';
      const res = await fetch(`${sidecar}/.well-known/agent-card.json`);
      assert.equal(res.status, 200, name);
      const card = (await res.json()) as { url: string; skills: unknown[] };
      assert.equal(card.url, `${sidecar}/message`);
      assert.ok(card.skills.length > 0);
    }
  });

  it('binds the agents to 127.0.0.1 only', async () => {
    // Another loopback address is always there: an agent bound to every interface accepts on it.
    const external = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && i.family === 'IPv4' && !i.internal);
    for (const agent of result.stack.agents.values()) {
      assert.equal(new URL(agent.url).hostname, '127.0.0.1');
      assert.equal(await accepts('127.0.0.1', agent.port), true);
      assert.equal(await accepts('127.0.0.2', agent.port), false, `${agent.name} on 127.0.0.2`);
      if (external !== undefined) assert.equal(await accepts(external.address, agent.port), false, `${agent.name} on ${external.address}`);
    }
  });

  /** Uploads a small text document as the lambda identity, through the orchestrator's sidecar. */
  async function uploadAsLambda(filename: string): Promise<{ lambda: RpcClient; orchestrator: string; id: string }> {
    const lambda = await clientFor(result, 'lambda');
    const orchestrator = result.stack.sidecars.orchestrator ?? '';
    const uploaded = await lambda.call(orchestrator, 'upload_document', {
      filename, content_type: 'text/plain', content_base64: Buffer.from('Owner: e2e\nDate: 2024-05-01\n').toString('base64'),
    });
    return { lambda, orchestrator, id: String(uploaded.result?.['document_id']) };
  }

  it('lets a document finish after the extractor was killed mid-run and started again', async () => {
    const { lambda, orchestrator, id } = await uploadAsLambda('late.txt');
    await result.stack.stopAgent('extractor');
    const running = lambda.call(orchestrator, 'process_document', { document_id: id });
    await sleep(200);
    await result.stack.startAgent('extractor');
    let answer = await running;
    // Within the retry window the same call finishes; past it the document is failed, and visible
    // as such, and processing it again finishes it.
    if (answer.result?.['status'] === 'failed') {
      assert.match(String(answer.result['error']), /^extract: extractor unreachable/);
      answer = await lambda.call(orchestrator, 'process_document', { document_id: id });
    }
    assert.equal(answer.result?.['status'], 'archived', JSON.stringify(answer));
  });

  it('follows one call across every hop: each sidecar, agent, egress and gateway line of a process_document has the caller\'s trace id', async () => {
    const { lambda, orchestrator, id } = await uploadAsLambda('traced.txt');
    const seen = logs.lines.length;
    assert.equal((await lambda.call(orchestrator, 'process_document', { document_id: id })).result?.['status'], 'archived');
    const lines = logs.lines.slice(seen);
    const entry = lines.find((line) => line['service'] === 'orchestrator' && line['event_type'] === 'authorization' && line['method'] === 'process_document');
    const traceId = String(entry?.['trace_id']);
    assert.match(traceId, /^[0-9a-f]{32}$/);
    const traced = lines.filter((line) => line['trace_id'] === traceId);
    const where = new Set(traced.map((line) => `${String(line['service'])} ${String(line['event_type'])}`));
    for (const hop of ['extractor', 'validator', 'archivist', 'mcp']) assert.ok(where.has(`${hop} authorization`), `${hop}'s sidecar: ${[...where].join(', ')}`);
    for (const agent of ['orchestrator', 'extractor', 'validator', 'archivist']) assert.ok(where.has(`${agent} agent_call`), `${agent}: ${[...where].join(', ')}`);
    assert.ok(where.has('orchestrator egress_call'), [...where].join(', '));
    assert.ok(where.has('mcp-gateway mcp_tool_call'), [...where].join(', '));
    // One trace, many hops: each line of a sidecar names a request of its own.
    const requests = traced.filter((line) => line['event_type'] === 'authorization').map((line) => line['request_id']);
    assert.equal(new Set(requests).size, requests.length);
    assert.ok(requests.length >= 5, String(requests.length));
  });

  // A document costs the orchestrator identity 13 gateway calls (upload 3, process_document 10):
  // on the default 300 a minute the pipeline stopped at about 23 documents a minute, each further
  // upload refused with dependency_failed (ratelimit.exceeded) and runs cut short mid-step.
  it('gives the agents\' identities a gateway budget a busy pipeline needs: 400 calls in a row are served', async () => {
    const { issuer, dataDir, sidecars } = result.stack;
    const secrets = await loadClientSecrets(dataDir);
    const orchestrator = await createServiceClient({ issuer, clientId: 'orchestrator', clientSecret: secrets['orchestrator'] ?? '' });
    const statuses = new Set<number>();
    for (let i = 0; i < 400; i++) statuses.add((await orchestrator.call(`${sidecars.mcp ?? ''}/mcp`, 'ping', {})).status);
    assert.deepEqual([...statuses], [200]);
  });

  it('adds no document when started a second time on the same data directory', async () => {
    const admin = await clientFor(result, 'admin');
    const count = async (archivist: string) => ((await admin.call(archivist, 'list_documents', { limit: 100 })).result?.['documents'] as unknown[]).length;
    const before = await count(result.stack.sidecars.archivist ?? '');
    await result.stack.close();
    result = await startUp(data.dir);
    assert.ok(result.outcomes.every((o) => o.reused), JSON.stringify(result.outcomes));
    const adminAgain = await clientFor(result, 'admin');
    const after = ((await adminAgain.call(result.stack.sidecars.archivist ?? '', 'list_documents', { limit: 100 })).result?.['documents'] as unknown[]).length;
    assert.equal(after, before);
  });
});
