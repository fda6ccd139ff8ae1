import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { startAgentProcess } from './helpers/agent-process.js';
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

/**
 * Runs `ca-a2a agent ARGS` to its exit: status and stderr. An agent that starts instead of refusing
 * is killed as soon as it logs its start line (code null), so a refusal that regressed fails at once
 * rather than leaving the test waiting on an agent that runs until stopped.
 */
async function agentExit(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.includes('"agent_started"')) child.kill('SIGKILL');
  });
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

describe('ca-a2a agent orchestrator settings', () => {
  let stack: AgentStack;
  before(async () => {
    stack = await startAgentStack({ postgres: true });
  });
  after(async () => {
    await stack.close();
  });

  it('refuses a setting out of range, from the flag or the variable, a busy wait not below the stale window, and the flags on another agent', async () => {
    const egress = ['--egress', 'http://127.0.0.1:9'];
    const refusal = (message: string) => ({ code: 2, stderr: `ca-a2a agent: ${message}\n` });
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--stale-after-seconds', '0']), refusal("--stale-after-seconds must be a whole number from 2 to 86400, not '0'"));
    // A window of 1 s leaves no step timeout below it (the step timeout is at least 1 s).
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '1'], { CA_A2A_STALE_AFTER_SECONDS: '1' }), refusal("CA_A2A_STALE_AFTER_SECONDS must be a whole number from 2 to 86400, not '1'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_SWEEP_INTERVAL_SECONDS: '-1' }), refusal("CA_A2A_SWEEP_INTERVAL_SECONDS must be a whole number from 0 to 86400, not '-1'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-attempts', '21']), refusal("--step-attempts must be a whole number from 1 to 20, not '21'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_STEP_ATTEMPTS: ' 3' }), refusal("CA_A2A_STEP_ATTEMPTS must be a whole number from 1 to 20, not ' 3'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--busy-wait-seconds', '60', '--stale-after-seconds', '60']),
      refusal('the busy wait (--busy-wait-seconds 60) must be below the stale window (--stale-after-seconds 60): a run waiting on a busy agent would be taken over as stalled'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_BUSY_WAIT_SECONDS: '120' }),
      refusal('the busy wait (CA_A2A_BUSY_WAIT_SECONDS 120) must be below the stale window (the default 120): a run waiting on a busy agent would be taken over as stalled'));
    assert.deepEqual(await agentExit(['extractor', ...egress, '--step-attempts', '3']), refusal("--step-attempts is the orchestrator's; extractor runs no pipeline"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--sweep-batch', '0']), refusal("--sweep-batch must be a whole number from 1 to 999999, not '0'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_SWEEP_BATCH: '-5' }), refusal("CA_A2A_SWEEP_BATCH must be a whole number from 1 to 999999, not '-5'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--sweep-batch', '2.5']), refusal("--sweep-batch must be a whole number from 1 to 999999, not '2.5'"));
    assert.deepEqual(await agentExit(['validator', ...egress, '--sweep-batch', '5']), refusal("--sweep-batch is the orchestrator's; validator runs no pipeline"));
    assert.deepEqual(await agentExit(['archivist', ...egress, '--stale-after-seconds', '30']), refusal("--stale-after-seconds is the orchestrator's; archivist runs no pipeline"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '0']), refusal("--step-timeout-seconds must be a whole number from 1 to 86400, not '0'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_STEP_TIMEOUT_SECONDS: '90s' }), refusal("CA_A2A_STEP_TIMEOUT_SECONDS must be a whole number from 1 to 86400, not '90s'"));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '86401']), refusal("--step-timeout-seconds must be a whole number from 1 to 86400, not '86401'"));
    assert.deepEqual(await agentExit(['archivist', ...egress, '--step-timeout-seconds', '600']), refusal("--step-timeout-seconds is the orchestrator's; archivist runs no pipeline"));
  });

  it('refuses a step timeout not below the stale window, from the flags, the variables or a default, naming both values', async () => {
    const egress = ['--egress', 'http://127.0.0.1:9'];
    const refusal = (step: string, window: string) => ({
      code: 2,
      stderr: `ca-a2a agent: the step timeout (${step}) must be below the stale window (${window}): a step still running past the window would have its document taken over by another orchestrator while it is being worked on\n`,
    });
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '60', '--stale-after-seconds', '60']), refusal('--step-timeout-seconds 60', '--stale-after-seconds 60'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '600', '--stale-after-seconds', '300']), refusal('--step-timeout-seconds 600', '--stale-after-seconds 300'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_STEP_TIMEOUT_SECONDS: '300', CA_A2A_STALE_AFTER_SECONDS: '200' }), refusal('CA_A2A_STEP_TIMEOUT_SECONDS 300', 'CA_A2A_STALE_AFTER_SECONDS 200'));
    // The flag wins over its variable, and is what the message names.
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--stale-after-seconds', '40'], { CA_A2A_STEP_TIMEOUT_SECONDS: '40', CA_A2A_STALE_AFTER_SECONDS: '600' }), refusal('CA_A2A_STEP_TIMEOUT_SECONDS 40', '--stale-after-seconds 40'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_STEP_TIMEOUT_SECONDS: '120' }), refusal('CA_A2A_STEP_TIMEOUT_SECONDS 120', 'the default 120'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--stale-after-seconds', '90']), refusal('the default 90', '--stale-after-seconds 90'));
  });

  it('runs with the settings given: its start line says them, and its own sweep timer retakes a stalled document', async () => {
    const router = await startDirectRouter('orchestrator', { gatewayUrl: () => stack.gateway.url, agentUrl: (service) => stack.agents.get(service as 'extractor')?.url });
    let child: ChildProcess | undefined;
    try {
      // A worker claimed the document and died before any step, an hour ago.
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      assert.equal((await callTool(stack.gateway.url, 'documents_claim', { document_id: id })).status, 200);
      await stack.ageDocuments(id);
      const agent = await startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', router.url, '--stale-after-seconds', '60', '--sweep-interval-seconds', '1'], {
        CA_A2A_STEP_ATTEMPTS: '2', CA_A2A_BUSY_WAIT_SECONDS: '0', CA_A2A_SWEEP_BATCH: '3', CA_A2A_STEP_TIMEOUT_SECONDS: '50',
      });
      child = agent.child;
      assert.deepEqual(agent.settings, { stale_after_seconds: 60, sweep_interval_seconds: 1, sweep_batch: 3, step_attempts: 2, busy_wait_seconds: 0, step_timeout_seconds: 50, tool_timeout_seconds: 30 });
      // No call asks for a sweep: only the timer of one second can take it over (the default is 30 s).
      while ((await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body['status'] !== 'archived') await sleep(100);
      assert.equal((await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body['claim_count'], 2);
    } finally {
      child?.kill('SIGKILL');
      await router.close();
    }
  });

  it('starts with the defaults when given nothing, a step timeout below the stale window and a busy wait of at most a quarter of a short one', async () => {
    const defaults = await startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9']);
    defaults.child.kill('SIGKILL');
    assert.deepEqual(defaults.settings, { stale_after_seconds: 120, sweep_interval_seconds: 30, sweep_batch: 10, step_attempts: 4, busy_wait_seconds: 30, step_timeout_seconds: 90, tool_timeout_seconds: 30 });
    const short = await startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9'], { CA_A2A_STALE_AFTER_SECONDS: '20', CA_A2A_STEP_TIMEOUT_SECONDS: '19' });
    short.child.kill('SIGKILL');
    assert.deepEqual(short.settings, { stale_after_seconds: 20, sweep_interval_seconds: 30, sweep_batch: 10, step_attempts: 4, busy_wait_seconds: 5, step_timeout_seconds: 19, tool_timeout_seconds: 30 });
  });

  it('gives up a step that outlasts --step-timeout-seconds: its start line says it, and a run whose archive_document never answers fails naming the hop, after one call', async () => {
    // An archivist, as its sidecar would pass it on, that never answers archive_document.
    let calls = 0;
    const silent = createServer((req) => {
      if (req.url === '/message') calls += 1;
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    // The orchestrator's egress: the real gateway and agents, but the silent archivist.
    const router = await startDirectRouter('orchestrator', {
      gatewayUrl: () => stack.gateway.url,
      agentUrl: (service) => (service === 'archivist' ? `http://127.0.0.1:${(silent.address() as AddressInfo).port}` : stack.agents.get(service as 'extractor')?.url),
    });
    let child: ChildProcess | undefined;
    try {
      const id = await stack.uploadSample('meeting-notes.txt', 'text/plain');
      const agent = await startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', router.url, '--step-attempts', '1'], { CA_A2A_STEP_TIMEOUT_SECONDS: '1' });
      child = agent.child;
      assert.deepEqual(agent.settings, { stale_after_seconds: 120, sweep_interval_seconds: 30, sweep_batch: 10, step_attempts: 1, busy_wait_seconds: 30, step_timeout_seconds: 1, tool_timeout_seconds: 30 });
      const res = await fetch(`${agent.url}/message`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-ca-a2a-client-id': 'admin', 'x-ca-a2a-roles': 'admin', 'x-ca-a2a-request-id': 'req-step-timeout' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'process_document', params: { document_id: id } }),
      });
      const answer = (await res.json()) as { result?: Record<string, unknown> };
      assert.equal(answer.result?.['status'], 'failed', JSON.stringify(answer));
      assert.match(String(answer.result?.['error']), /^archive: archivist unreachable after 1 attempt\(s\) \(.*TimeoutError\)$/);
      assert.equal(calls, 1);
      assert.equal((await callTool(stack.gateway.url, 'documents_get', { document_id: id })).body['status'], 'failed');
    } finally {
      child?.kill('SIGKILL');
      await router.close();
      silent.closeAllConnections();
      silent.close();
    }
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
