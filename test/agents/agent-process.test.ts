import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { startAgentProcess } from './helpers/agent-process.js';

describe('the agent test helpers', () => {
  it('startAgentProcess rejects an agent that exits before listening, with its exit code and the tail of its stderr', async () => {
    await assert.rejects(
      startAgentProcess(['orchestrator', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9', '--sweep-batch', '0']),
      (error: Error) => {
        assert.match(error.message, /^ca-a2a agent orchestrator .* exited with code 2 before it listened: /);
        assert.match(error.message, /ca-a2a agent: --sweep-batch must be a whole number from 1 to 999999, not '0'$/);
        return true;
      },
    );
  });

  it('startAgentProcess resolves an agent once it listens, and its start line', async () => {
    const agent = await startAgentProcess(['validator', '--listen', '127.0.0.1:0', '--egress', 'http://127.0.0.1:9']);
    try {
      assert.equal((await fetch(`${agent.url}/health`)).status, 200);
      assert.deepEqual(agent.settings, { max_documents: 8, tool_timeout_seconds: 30 });
    } finally {
      agent.child.kill('SIGKILL');
    }
  });

  // Run in a process of its own: what such a failure leaves open keeps its process from ending.
  it('startAgentStack rejects an agent that cannot start, naming it and why, and leaves nothing open behind it', async () => {
    const script = `
      import { startAgentStack } from './test/agents/helpers/agent-stack.ts';
      try {
        await startAgentStack({ orchestrator: { sweepBatch: 0 } });
        console.log('started');
      } catch (error) {
        console.log(error.message);
      }`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: new URL('../../', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const [code] = (await once(child, 'close')) as [number | null];
    assert.equal(out, 'the agent stack did not start: orchestrator: the sweep batch must be a whole number of at least 1, not 0\n');
    assert.equal(code, 0, 'the process ended by itself: the gateway and the routers were closed');
  });
});
