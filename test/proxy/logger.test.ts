import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const LOGGER = fileURLToPath(new URL('../../proxy/observe/logger.ts', import.meta.url));

/**
 * A process that logs audit-like lines through the production logger (stdout, buffered), then
 * runs `then`: stays alive (what a sidecar does between two requests on a quiet service), exits,
 * or dies of an error nobody caught.
 */
function loggingProcess(then: string, lines = 1): ReturnType<typeof spawn> {
  const script = [
    `import { createLogger } from ${JSON.stringify(LOGGER)};`,
    "const logger = createLogger({ service: 'quiet' });",
    `for (let i = 0; i < ${lines}; i++) logger.info({ event_type: 'authorization', granted: true, n: i, subject: 'zoë-漢字', token: 'secret-token' }, 'request authorized');`,
    then,
  ].join('\n');
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Everything the process wrote to stdout, once it has exited, and its exit code. */
async function outputAtExit(child: ReturnType<typeof spawn>): Promise<{ lines: Record<string, unknown>[]; code: number | null }> {
  let output = '';
  // Decoded by the stream: a multi-byte character split between two reads stays whole.
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    output += chunk;
  });
  child.stderr?.resume();
  // 'close' comes after the exit and after stdout has ended.
  const [code] = (await once(child, 'close')) as [number | null];
  return { lines: output.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>), code };
}

describe('the sidecar logger (buffered stdout)', () => {
  it('delivers a line to stdout while the process is still running, even when nothing else is logged', async () => {
    const child = loggingProcess('setInterval(() => {}, 60_000);');
    try {
      let output = '';
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        output += chunk;
      });
      // A 4 KiB buffer alone would hold this line until exit; the periodic flush must deliver it.
      const deadline = Date.now() + 15_000;
      while (!output.includes('\n') && Date.now() < deadline && child.exitCode === null) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(child.exitCode, null, 'the process is still running');
      const line = JSON.parse(output.split('\n')[0] as string) as Record<string, unknown>;
      assert.equal(line.event_type, 'authorization');
      assert.equal(line.service, 'quiet');
      assert.equal(line.token, '[redacted]', 'a token passed by mistake is never written');
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('writes every buffered line when the process exits on purpose', async () => {
    const { lines, code } = await outputAtExit(loggingProcess('process.exit(3);', 3));
    assert.equal(code, 3);
    assert.deepEqual(lines.map((line) => line.n), [0, 1, 2]);
  });

  it('writes every buffered line when the process dies of an uncaught error', async () => {
    const { lines, code } = await outputAtExit(loggingProcess("throw new Error('boom');", 3));
    assert.equal(code, 1);
    assert.deepEqual(lines.map((line) => line.n), [0, 1, 2]);
  });

  it('writes lines in order and whole under load (many batches)', async () => {
    const { lines, code } = await outputAtExit(loggingProcess('', 2000));
    assert.equal(code, 0);
    assert.deepEqual(lines.map((line) => line.n), Array.from({ length: 2000 }, (_, i) => i));
    assert.ok(lines.every((line) => line.subject === 'zoë-漢字'), 'multi-byte characters survive the batching');
  });
});
