import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { callTool } from '../mcp/helpers.js';
import { agentExit, startAgentProcess } from './helpers/agent-process.js';
import { startAgentStack, type AgentStack } from './helpers/agent-stack.js';
import { startDirectRouter } from './helpers/direct-router.js';

// The orchestrator's own settings, apart from the other agents' (cli.test.ts): each file stays
// well inside the runner's per-file timeout on a loaded machine.
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

  it('refuses a step timeout not below nine tenths of the stale window (the step deadline), from the flags, the variables or a default, naming both values', async () => {
    const egress = ['--egress', 'http://127.0.0.1:9'];
    const refusal = (step: string, window: string) => ({
      code: 2,
      stderr: `ca-a2a agent: the step timeout (${step}) must be below nine tenths of the stale window (${window}): a step is cut at that point, so its document is not taken over by another orchestrator while it is being worked on\n`,
    });
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '60', '--stale-after-seconds', '60']), refusal('--step-timeout-seconds 60', '--stale-after-seconds 60'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '600', '--stale-after-seconds', '300']), refusal('--step-timeout-seconds 600', '--stale-after-seconds 300'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_STEP_TIMEOUT_SECONDS: '300', CA_A2A_STALE_AFTER_SECONDS: '200' }), refusal('CA_A2A_STEP_TIMEOUT_SECONDS 300', 'CA_A2A_STALE_AFTER_SECONDS 200'));
    // The flag wins over its variable, and is what the message names.
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--stale-after-seconds', '40'], { CA_A2A_STEP_TIMEOUT_SECONDS: '40', CA_A2A_STALE_AFTER_SECONDS: '600' }), refusal('CA_A2A_STEP_TIMEOUT_SECONDS 40', '--stale-after-seconds 40'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress], { CA_A2A_STEP_TIMEOUT_SECONDS: '120' }), refusal('CA_A2A_STEP_TIMEOUT_SECONDS 120', 'the default 120'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--stale-after-seconds', '90']), refusal('the default 90', '--stale-after-seconds 90'));
    // Below the window but not below the step deadline: the attempt would be cut before its timeout.
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--step-timeout-seconds', '95', '--stale-after-seconds', '100']), refusal('--step-timeout-seconds 95', '--stale-after-seconds 100'));
    assert.deepEqual(await agentExit(['orchestrator', ...egress, '--stale-after-seconds', '100']), refusal('the default 90', '--stale-after-seconds 100'));
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

  it('starts with the defaults when given nothing, a step timeout below nine tenths of the stale window and a busy wait of at most a quarter of a short one', async () => {
    const defaults = await startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9']);
    defaults.child.kill('SIGKILL');
    assert.deepEqual(defaults.settings, { stale_after_seconds: 120, sweep_interval_seconds: 30, sweep_batch: 10, step_attempts: 4, busy_wait_seconds: 30, step_timeout_seconds: 90, tool_timeout_seconds: 30 });
    const short = await startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9'], { CA_A2A_STALE_AFTER_SECONDS: '20', CA_A2A_STEP_TIMEOUT_SECONDS: '17' });
    short.child.kill('SIGKILL');
    assert.deepEqual(short.settings, { stale_after_seconds: 20, sweep_interval_seconds: 30, sweep_batch: 10, step_attempts: 4, busy_wait_seconds: 5, step_timeout_seconds: 17, tool_timeout_seconds: 30 });
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
