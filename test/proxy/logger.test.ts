import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { shippedPolicyFile } from '../../proxy/services.js';
import { readChildStdout } from '../helpers/child-stdout.js';
import { tempDirSync } from '../helpers/temp-dir.js';

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

/**
 * A process that logs `batches` MiB of filler lines through the production logger, one MiB per
 * turn of the event loop, to a stdout the test does not read yet; then reports on stderr how many
 * lines were dropped and how much buffer memory it holds, and goes on logging an `after` line
 * every 50 ms.
 */
function blockedLoggingProcess(batches: number): ReturnType<typeof spawn> {
  const script = [
    `import { createLogger, STDOUT_BUFFER_MAX_BYTES } from ${JSON.stringify(LOGGER)};`,
    'let dropped = 0;',
    "const logger = createLogger({ service: 'blocked', onDrop: () => dropped++ });",
    "const filler = 'x'.repeat(1000);",
    'const settled = async () => { globalThis.gc(); await new Promise((resolve) => setTimeout(resolve, 100)); globalThis.gc(); return process.memoryUsage().arrayBuffers; };',
    'const before = await settled();',
    'let lines = 0;',
    `for (let batch = 0; batch < ${batches}; batch++) {`,
    "  for (let i = 0; i < 1024; i++) logger.info({ event_type: 'filler', n: lines++, filler }, 'filler');",
    '  await new Promise((resolve) => setTimeout(resolve, 5));',
    '}',
    'const held = (await settled()) - before;',
    "process.stderr.write(JSON.stringify({ lines, dropped, held, bound: STDOUT_BUFFER_MAX_BYTES }) + '\\n');",
    "setInterval(() => logger.info({ event_type: 'after' }, 'after'), 50);",
  ].join('\n');
  return spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
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

  it('holds at most its bound of lines while stdout is not read, drops and counts whole lines past it, and logs again once stdout is read', async () => {
    // 80 MiB of lines, five times the bound, to a pipe nobody reads.
    const child = blockedLoggingProcess(80);
    try {
      let report = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        report += chunk;
      });
      while (!report.includes('\n') && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 50));
      const { lines, dropped, held, bound } = JSON.parse(report) as { lines: number; dropped: number; held: number; bound: number };
      assert.equal(bound, 16 * 1024 * 1024);
      assert.ok(lines * 1000 > 4 * bound, 'written: well past the bound');
      assert.ok(held < 2 * bound, `buffer memory held: ${held} bytes, bound ${bound}`);
      assert.ok(dropped > lines / 2, `dropped ${dropped} of ${lines} lines`);

      // The reader comes back: the lines kept come out whole, and new lines get through again.
      let output = '';
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        output += chunk;
      });
      const deadline = Date.now() + 30_000;
      while (!output.includes('"event_type":"after"') && Date.now() < deadline && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 50));
      const parsed = output.slice(0, output.lastIndexOf('\n')).split('\n').map((line) => JSON.parse(line) as { event_type: string; n?: number });
      const kept = parsed.filter((line) => line.event_type === 'filler').map((line) => line.n as number);
      assert.ok(parsed.some((line) => line.event_type === 'after'), 'logging works again');
      assert.equal(kept.length + dropped, lines, 'each line was written whole or counted as dropped');
      assert.ok(kept.every((n, i) => i === 0 || n > (kept[i - 1] as number)), 'in order, none twice');
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
});

describe('a sidecar whose stdout is not read', () => {
  it('counts the log lines it drops in ca_a2a_log_lines_dropped_total, and logs again once stdout is read', async () => {
    const child = spawn(process.execPath, ['bin/ca-a2a.js', 'sidecar', '--policy', shippedPolicyFile('archivist'), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:1', '--issuer', 'http://127.0.0.1:1/realms/test', '--no-watch'], {
      env: { ...process.env, CA_A2A_DATA_DIR: tempDirSync('blocked-stdout') },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let pool: Pool | undefined;
    try {
      const stdout = readChildStdout(child);
      const started = await stdout.line<{ listen: string; admin: string }>('sidecar_started');
      // The reader stops: once the pipe is full, the sidecar's lines stay with it.
      child.stdout.pause();

      // 2000 refusals, each logged with its 12 KB path: about 24 MiB of audit lines, past the 16 MiB bound.
      pool = new Pool(started.listen, { connections: 4 });
      const long = `/${'a'.repeat(12_000)}`;
      for (let sent = 0; sent < 2000; sent += 50) {
        await Promise.all(Array.from({ length: 50 }, async () => (await pool?.request({ method: 'GET', path: long }))?.body.text()));
      }
      const scraped = await (await fetch(`${started.admin}/metrics`)).text();
      const dropped = Number(/^ca_a2a_log_lines_dropped_total\{service="archivist"\} (\d+)$/m.exec(scraped)?.[1]);
      assert.ok(dropped > 0, `dropped: ${dropped}`);

      // The reader comes back: what was kept comes out, then new lines again.
      child.stdout.resume();
      const send = () => (pool as Pool).request({ method: 'GET', path: '/after-the-block' }).then((answer) => answer.body.text());
      assert.ok(await stdout.sendUntilRead('"path":"/after-the-block"', send), 'a line logged once stdout is read again comes out');
    } finally {
      await pool?.close();
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
});

describe('a sidecar whose stdout is not read, stopping', () => {
  it('exits on SIGTERM with its normal code, its last lines given up on once the flush bound passes', { timeout: 60_000 }, async () => {
    const child = spawn(process.execPath, ['bin/ca-a2a.js', 'sidecar', '--policy', shippedPolicyFile('archivist'), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:1', '--issuer', 'http://127.0.0.1:1/realms/test', '--no-watch'], {
      env: { ...process.env, CA_A2A_DATA_DIR: tempDirSync('stuck-stdout-stop') },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    let pool: Pool | undefined;
    try {
      const stdout = readChildStdout(child);
      const started = await stdout.line<{ listen: string }>('sidecar_started');
      // The reader stops: once the pipe is full, the sidecar's writes to stdout never complete.
      child.stdout.pause();
      // 400 refusals, each logged with its 12 KB path: about 5 MB of audit lines, far past what the pipe holds.
      pool = new Pool(started.listen, { connections: 4 });
      const long = `/${'a'.repeat(12_000)}`;
      for (let sent = 0; sent < 400; sent += 50) {
        await Promise.all(Array.from({ length: 50 }, async () => (await pool?.request({ method: 'GET', path: long }))?.body.text()));
      }
      await pool.close();
      pool = undefined;
      // Past its periodic flush: a write to the full pipe is under way, and never completes.
      await new Promise((resolve) => setTimeout(resolve, 1_500));

      child.kill('SIGTERM');
      // Generous: the bound is 2 s. Without it the process waited for stdout until it was killed.
      const outcome = await Promise.race([exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 20_000))]);
      assert.deepEqual(outcome, [0, null], 'exited by itself, with the exit code of a clean stop');
    } finally {
      await pool?.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
  });
});
