import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';

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
