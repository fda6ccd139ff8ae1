import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestSchema } from '../mcp/helpers.js';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

/** Runs `ca-a2a ...args` to its end; never rejects. */
function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // A command that does not end after its error counts as failed (killed: code -1).
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

type Run = Awaited<ReturnType<typeof run>>;

/** One line naming the cause, no stack trace. A failure quotes the exit code and stdout's tail: why it ended otherwise. */
function assertOneLine({ code, stdout, stderr }: Run, pattern: RegExp): void {
  const context = `exit ${code}; stderr: ${JSON.stringify(stderr)}; stdout ends: ${JSON.stringify(stdout.slice(-2000))}`;
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, context);
  assert.match(lines[0] ?? '', pattern, context);
  assert.doesNotMatch(stderr, /^\s+at /m, context);
}

describe('a command that cannot start says why in one line and exits 1', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ca-a2a-start-errors-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('ca-a2a up with a data directory that is a file, or whose log file is a directory', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const notADirectory = await run(['up', '--ephemeral-ports', '--no-samples', '--data-dir', file]);
    assert.equal(notADirectory.code, 1, notADirectory.stderr || notADirectory.stdout.slice(-2000));
    assertOneLine(notADirectory, /^ca-a2a up: cannot write the log file in the data directory: ENOTDIR/);

    const logIsADirectory = join(dir, 'log-is-a-dir');
    mkdirSync(join(logIsADirectory, 'logs', 'ca-a2a.log'), { recursive: true });
    const eisdir = await run(['up', '--ephemeral-ports', '--no-samples', '--data-dir', logIsADirectory]);
    assert.equal(eisdir.code, 1, eisdir.stderr || eisdir.stdout.slice(-2000));
    assertOneLine(eisdir, /^ca-a2a up: cannot write the log file in the data directory: EISDIR/);
  });

  it('ca-a2a up on a port in use (a second npm start) names it and says how to run beside it', async () => {
    // A port from the system that an offset can reach: the issuer's, 8080 + offset (offset 0 to 50 000).
    let taken: Server | undefined;
    let port = 0;
    for (let tries = 0; tries < 50 && taken === undefined; tries += 1) {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as { port: number }).port;
      if (port >= 8080 && port <= 58_080) taken = server;
      else server.close();
    }
    assert.ok(taken !== undefined, 'no free port between 8080 and 58080');
    try {
      const inUse = await run(['up', '--port-offset', String(port - 8080), '--no-samples', '--data-dir', join(dir, 'second-stack')]);
      assert.equal(inUse.code, 1, inUse.stderr || inUse.stdout.slice(-2000));
      assertOneLine(inUse, new RegExp(`^ca-a2a up: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port} \\(another ca-a2a up\\? stop it, or run this one beside it with --port-offset 200 and a --data-dir of its own\\)$`));
    } finally {
      taken.close();
    }
  });

  it('ca-a2a mcp-gateway on a port in use (PGlite, PostgreSQL), or with a database it cannot reach (its password not printed)', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const schema = await createTestSchema();
    try {
      const port = (taken.address() as { port: number }).port;
      const inUse = await run(['mcp-gateway', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'gateway')], { DATABASE_URL: '' });
      assert.equal(inUse.code, 1, inUse.stderr || inUse.stdout.slice(-2000));
      assertOneLine(inUse, /^ca-a2a mcp-gateway: cannot start: listen EADDRINUSE/);
      // The pool it had opened is closed again, so the process ends.
      const onPostgres = await run(['mcp-gateway', '--listen', `127.0.0.1:${port}`], { DATABASE_URL: schema.urlFor() });
      assert.equal(onPostgres.code, 1, onPostgres.stderr || onPostgres.stdout.slice(-2000));
      assertOneLine(onPostgres, /^ca-a2a mcp-gateway: cannot start: listen EADDRINUSE/);
    } finally {
      taken.close();
      await schema.drop();
    }
    const unreachable = await run(['mcp-gateway', '--listen', '127.0.0.1:0'], { DATABASE_URL: 'postgres://gateway:s3cret-pw@localhost:1/db' });
    assert.equal(unreachable.code, 1, unreachable.stderr || unreachable.stdout.slice(-2000));
    assertOneLine(unreachable, /^ca-a2a mcp-gateway: cannot start: connect ECONNREFUSED/);
    assert.doesNotMatch(unreachable.stderr + unreachable.stdout, /s3cret-pw/);
  });
});

describe('a usage error says why in one line and exits 2, before anything starts', () => {
  it('ca-a2a admin-api with a listen address that is not HOST:PORT, or not loopback', async () => {
    const noPort = await run(['admin-api', '--listen', 'nope'], { DATABASE_URL: '', REDIS_URL: '' });
    assert.equal(noPort.code, 2, noPort.stderr);
    assertOneLine(noPort, /^ca-a2a admin-api: --listen 'nope' is not HOST:PORT/);
    const open = await run(['admin-api', '--listen', '0.0.0.0:0'], { DATABASE_URL: '', REDIS_URL: '' });
    assert.equal(open.code, 2, open.stderr);
    assertOneLine(open, /^ca-a2a admin-api: --listen must be a loopback address, not '0\.0\.0\.0:0'/);
  });
});
