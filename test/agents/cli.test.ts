import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';
import { startDirectRouter } from './helpers/direct-router.js';
import { startGatewayStandIn } from './helpers/gateway-stand-in.js';

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

/** Runs `ca-a2a agent ARGS` to its exit: status and stderr. */
async function agentExit(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'agent', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr };
}

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
    // The first PDF's object read is held at the gateway: its slot stays taken.
    let reached!: () => void;
    let release!: () => void;
    const asked = new Promise<void>((resolve) => (reached = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    const gateway = await startGatewayStandIn(stack, async (call) => {
      if (call.tool === 's3_get_object') {
        reached();
        await released;
      }
      return false;
    });
    const router = await startDirectRouter('extractor', { gatewayUrl: () => gateway.url, agentUrl: () => undefined });
    const child = spawn(process.execPath, [BIN, 'agent', 'extractor', '--listen', '127.0.0.1:0', '--egress', router.url, '--max-pdfs', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const url = await new Promise<string | undefined>((resolve) => {
        createInterface({ input: child.stdout })
          .on('line', (line) => {
            const entry = JSON.parse(line) as { event_type?: string; url?: string };
            if (entry.event_type === 'agent_started') resolve(entry.url);
          })
          .on('close', () => resolve(undefined));
      });
      assert.ok(url !== undefined);
      const ids = [await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf'), await stack.uploadSample('invoice-2024-001.pdf', 'application/pdf')];
      for (const id of ids) assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      const extract = async (id: string | undefined) => (await fetch(`${url}/message`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'extract_document', params: { document_id: id } }),
      }).then((res) => res.json())) as { result?: Record<string, unknown>; error?: { data?: Record<string, unknown> } };
      const first = extract(ids[0]);
      await asked;
      assert.deepEqual((await extract(ids[1])).error?.data, { reason: 'busy', max_pdfs: 1 });
      release();
      assert.equal((await first).result?.['status'], 'extracted');
    } finally {
      release();
      child.kill('SIGKILL');
      await router.close();
      gateway.close();
    }
  });
});
