import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { agentExit, startAgentProcess } from './helpers/agent-process.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';
import { startDirectRouter } from './helpers/direct-router.js';
import { startHoldingGateway } from './helpers/held-reads.js';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

describe('ca-a2a agent command', () => {
  it('logs through its buffered stdout while serving, and writes its last lines before it exits on SIGTERM', async () => {
    const child = spawn(process.execPath, [BIN, 'agent', 'extractor', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const lines: { event_type?: string; service?: string; url?: string }[] = [];
      const started = new Promise<string | undefined>((resolve) => {
        createInterface({ input: child.stdout })
          .on('line', (line) => {
            const entry = JSON.parse(line) as { event_type?: string; service?: string; url?: string };
            lines.push(entry);
            if (entry.event_type === 'agent_started') resolve(entry.url);
          })
          .on('close', () => resolve(undefined));
      });
      const url = await started;
      assert.ok(url !== undefined, 'the agent logged its URL');
      assert.equal((await fetch(`${url}/health`)).status, 200);
      // 'close' comes once stdout has ended too: every line written by then has been read.
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      assert.deepEqual(await closed, [0, null]);
      assert.deepEqual(lines.map((line) => [line.event_type, line.service]), [['agent_started', 'extractor'], ['agent_stopping', 'extractor']]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('ca-a2a agent extractor --max-pdfs', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack();
  });
  after(async () => {
    await stack.close();
  });

  it('refuses a bound that is not a whole number of at least 1, from the flag or the variable, and the flag on another agent', async () => {
    const egress = ['--egress', 'http://127.0.0.1:9'];
    assert.deepEqual(await agentExit(['extractor', ...egress, '--max-pdfs', '0']), { code: 2, stderr: "ca-a2a agent: --max-pdfs must be a whole number from 1 to 999999, not '0'\n" });
    assert.deepEqual(await agentExit(['extractor', ...egress], { CA_A2A_MAX_PDFS: '2.5' }), { code: 2, stderr: "ca-a2a agent: CA_A2A_MAX_PDFS must be a whole number from 1 to 999999, not '2.5'\n" });
    assert.deepEqual(await agentExit(['validator', ...egress, '--max-pdfs', '3']), { code: 2, stderr: "ca-a2a agent: --max-pdfs is the extractor's; validator reads no PDFs\n" });
  });

  it('holds at most that many PDFs: past it, extract_document answers busy', async () => {
    const answers = await pastTheBound(stack, 'extractor', ['--max-pdfs', '1'], {}, 'extract_document', async (id) => {
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
    }, 'invoice-2024-001.pdf', 'application/pdf');
    assert.deepEqual(answers.refused.error?.data, { reason: 'busy', max_pdfs: 1, retry_after_seconds: 1 });
    assert.equal(answers.first.result?.['status'], 'extracted');
  });
});

type Answer = { result?: Record<string, unknown>; error?: { data?: Record<string, unknown> } };

/**
 * Starts `ca-a2a agent NAME` with a bound of one, calls `method` on two documents made ready by
 * `prepare`, the first one's stored file read held at a stand-in gateway so that it keeps its slot:
 * resolves the second one's answer, then the first's once its read is let through.
 */
async function pastTheBound(stack: AgentStack, name: string, args: string[], env: NodeJS.ProcessEnv, method: string, prepare: (id: string) => Promise<void>, sample: string, type: string): Promise<{ first: Answer; refused: Answer }> {
  const gateway = await startHoldingGateway(stack);
  const held = gateway.hold();
  const router = await startDirectRouter(name, { gatewayUrl: () => gateway.url, agentUrl: () => undefined });
  let child: ChildProcess | undefined;
  try {
    const agent = await startAgentProcess([name, '--listen', '127.0.0.1:0', '--egress', router.url, ...args], env);
    child = agent.child;
    const ids = [await stack.uploadSample(sample, type), await stack.uploadSample(sample, type)];
    for (const id of ids) await prepare(id);
    const call = async (id: string | undefined) => (await fetch(`${agent.url}/message`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { document_id: id } }),
    }).then((res) => res.json())) as Answer;
    const first = call(ids[0]);
    await held.asked;
    const refused = await call(ids[1]);
    held.release();
    return { first: await first, refused };
  } finally {
    held.release();
    child?.kill('SIGKILL');
    await router.close();
    gateway.close();
  }
}

describe('ca-a2a agent extractor|validator|archivist --max-documents', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack();
  });
  after(async () => {
    await stack.close();
  });

  it('refuses a bound that is not a whole number from 1 to 999999, from the flag or the variable, and the flag on another agent', async () => {
    const egress = ['--egress', 'http://127.0.0.1:9'];
    assert.deepEqual(await agentExit(['validator', ...egress, '--max-documents', '0']), { code: 2, stderr: "ca-a2a agent: --max-documents must be a whole number from 1 to 999999, not '0'\n" });
    assert.deepEqual(await agentExit(['archivist', ...egress], { CA_A2A_MAX_DOCUMENTS: '1e3' }), { code: 2, stderr: "ca-a2a agent: CA_A2A_MAX_DOCUMENTS must be a whole number from 1 to 999999, not '1e3'\n" });
    assert.deepEqual(await agentExit(['archivist', ...egress, '--max-documents', '1000000']), { code: 2, stderr: "ca-a2a agent: --max-documents must be a whole number from 1 to 999999, not '1000000'\n" });
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--max-documents', '3']), { code: 2, stderr: "ca-a2a agent: --max-documents is the step agents'; orchestrator holds no stored file\n" });
  });

  it('a validator started with CA_A2A_MAX_DOCUMENTS=1 holds one document: past it, validate_document answers busy', async () => {
    const answers = await pastTheBound(stack, 'validator', [], { CA_A2A_MAX_DOCUMENTS: '1' }, 'validate_document', async (id) => {
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      assert.equal((await stack.call('extractor', 'extract_document', { document_id: id }, 'orchestrator')).result?.['status'], 'extracted');
    }, 'meeting-notes.txt', 'text/plain');
    assert.deepEqual(answers.refused.error?.data, { reason: 'busy', max_documents: 1, retry_after_seconds: 1 });
    assert.equal(answers.first.result?.['status'], 'validated');
  });
});

describe('ca-a2a agent --tool-timeout-seconds', () => {
  it('refuses a timeout that is not a whole number of seconds from 1 to 86400, from the flag or the variable', async () => {
    const egress = ['--egress', 'http://127.0.0.1:9'];
    const refusal = (message: string) => ({ code: 2, stderr: `ca-a2a agent: ${message}\n` });
    assert.deepEqual(await agentExit(['archivist', ...egress, '--tool-timeout-seconds', '0']), refusal("--tool-timeout-seconds must be a whole number from 1 to 86400, not '0'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_TOOL_TIMEOUT_SECONDS: '1.5' }), refusal("CA_A2A_TOOL_TIMEOUT_SECONDS must be a whole number from 1 to 86400, not '1.5'"));
    assert.deepEqual(await agentExit(['extractor', ...egress, '--tool-timeout-seconds', '86401']), refusal("--tool-timeout-seconds must be a whole number from 1 to 86400, not '86401'"));
  });

  it('gives up a tool call that outlasts it: its start line says the timeout, and each try is closed by the agent, then answered dependency_failed', async () => {
    // A gateway, as the agent's sidecar would pass it on, that never answers a tool call.
    const tries: Promise<unknown>[] = [];
    const silent = createServer((req) => {
      if (req.url === '/mcp/call_tool') tries.push(once(req.socket, 'close'));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    let child: ChildProcess | undefined;
    try {
      const agent = await startAgentProcess(['archivist', '--listen', '127.0.0.1:0', '--egress', `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, '--tool-timeout-seconds', '1']);
      child = agent.child;
      assert.deepEqual(agent.settings, { max_documents: 8, tool_timeout_seconds: 1 });
      const res = await fetch(`${agent.url}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-ca-a2a-client-id': 'admin', 'x-ca-a2a-roles': 'admin', 'x-ca-a2a-request-id': 'req-tool-timeout' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'get_document', params: { document_id: '00000000-0000-4000-8000-000000000000' } }),
      });
      const answer = (await res.json()) as { error?: { message: string; data?: Record<string, unknown> } };
      assert.equal(answer.error?.data?.['reason'], 'dependency_failed', JSON.stringify(answer));
      assert.equal(answer.error?.data?.['dependency_reason'], 'unreachable');
      assert.match(String(answer.error?.message), /TimeoutError/);
      // documents_get is read-only: asked 3 times, each given up by the agent.
      assert.equal(tries.length, 3);
      await Promise.all(tries);
    } finally {
      child?.kill('SIGKILL');
      silent.closeAllConnections();
      silent.close();
    }
  });
});
