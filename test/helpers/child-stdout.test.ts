import assert from 'node:assert/strict';
import { spawn, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { readChildStdout } from './child-stdout.js';

const node = (script: string, stdio: StdioOptions = ['ignore', 'pipe', 'pipe']) => spawn(process.execPath, ['-e', script], { stdio });

describe('readChildStdout', () => {
  it('line() rejects a child that exits before logging the event, with its exit code and the tail of its stderr', async () => {
    // Far more than the tail on stderr: the last lines say why, the first ones are left out.
    const child = node("process.stderr.write('x'.repeat(10000) + '\\nca-a2a agent: --sweep-batch must be a whole number\\n'); process.exitCode = 2;");
    const stdout = readChildStdout(child);
    await assert.rejects(stdout.line('agent_started'), (error: Error) => {
      assert.match(error.message, /^the process exited with code 2 before logging agent_started: x+\nca-a2a agent: --sweep-batch must be a whole number$/);
      assert.ok(error.message.length < 2200, `only the tail: ${error.message.length} characters`);
      return true;
    });
  });

  it('line() rejects a child killed before logging the event, naming the signal', async () => {
    const child = node('setInterval(() => {}, 1000);');
    const stdout = readChildStdout(child);
    const logged = stdout.line('agent_started');
    child.kill('SIGKILL');
    await assert.rejects(logged, /^Error: the process exited on SIGKILL before logging agent_started: \(nothing on stderr\)$/);
  });

  it('line() says so when the child\'s stderr is not piped to the test', async () => {
    const child = node('process.exitCode = 3;', ['ignore', 'pipe', 'ignore']);
    await assert.rejects(readChildStdout(child).line('agent_started'), /^Error: the process exited with code 3 before logging agent_started: \(its stderr is not piped to the test\)$/);
  });

  it('line() resolves a line the child logged just before it exited, even once it has exited', async () => {
    const child = node("process.stdout.write(JSON.stringify({ event_type: 'agent_started', url: 'http://127.0.0.1:1' }) + '\\n'); process.stderr.write('bye\\n');");
    const stdout = readChildStdout(child);
    await once(child, 'exit');
    assert.deepEqual(await stdout.line('agent_started'), { event_type: 'agent_started', url: 'http://127.0.0.1:1' });
  });
});
