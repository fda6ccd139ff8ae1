import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const LOGGER = fileURLToPath(new URL('../../proxy/observe/logger.ts', import.meta.url));

/**
 * A process that logs one audit-like line through the production logger (stdout, buffered), then
 * stays alive: what a sidecar does between two requests on a quiet service.
 */
function quietProcess(): ReturnType<typeof spawn> {
  const script = [
    `import { createLogger } from ${JSON.stringify(LOGGER)};`,
    "const logger = createLogger({ service: 'quiet' });",
    "logger.info({ event_type: 'authorization', granted: true, token: 'secret-token' }, 'request authorized');",
    'setInterval(() => {}, 60_000);',
  ].join('\n');
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
}

describe('the sidecar logger (buffered stdout)', () => {
  it('delivers a line to stdout while the process is still running, even when nothing else is logged', async () => {
    const child = quietProcess();
    try {
      let output = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
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
});
