import assert from 'node:assert/strict';
import { constants } from 'node:buffer';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gatewayOptionsFromEnv } from '../../mcp/cli.js';
import { MAX_OBJECT_BYTES_LIMIT, bodyLimit, startMcpGateway } from '../../mcp/gateway.js';
import { openSqlClient } from '../../proxy/stores/sql/sql-client.js';
import { createTestSchema, tempDir } from './helpers.js';
import { readChildStdout } from '../helpers/child-stdout.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

describe('ca-a2a mcp-gateway command', () => {
  it('names in --help every variable it reads', async () => {
    const read = new Set<string>();
    const recorder = new Proxy({}, { get: (_target, name) => (typeof name === 'string' && read.add(name), undefined) }) as NodeJS.ProcessEnv;
    gatewayOptionsFromEnv(recorder);
    const { stdout } = await run(process.execPath, [BIN, 'mcp-gateway', '--help']);
    assert.ok(read.size >= 7, [...read].join(' '));
    for (const name of [...read, 'CA_A2A_LISTEN', 'CA_A2A_DATA_DIR']) assert.match(stdout, new RegExp(`\\b${name}\\b`), name);
  });

  it('reads backends from the environment and leaves the embedded defaults when unset', () => {
    assert.deepEqual(gatewayOptionsFromEnv({}).databaseUrl, undefined);
    assert.equal(gatewayOptionsFromEnv({}).s3?.bucket, undefined);
    const o = gatewayOptionsFromEnv({ DATABASE_URL: 'postgres://x/db', CA_A2A_S3_BUCKET: 'b', CA_A2A_S3_ENDPOINT: 'http://minio:9000', CA_A2A_S3_PREFIXES: 'in/, out/' });
    assert.equal(o.databaseUrl, 'postgres://x/db');
    assert.deepEqual(o.s3?.allowedPrefixes, ['in/', 'out/']);
    assert.equal(o.s3?.endpoint, 'http://minio:9000');
  });

  // Any size was taken: one whose upload body (4/3 of it, as base64) no V8 string can hold could
  // never be parsed, and well before that one upload's copies would take the gateway's memory.
  it('reads the object cap from CA_A2A_S3_MAX_OBJECT_BYTES, 1 to 256 MiB, and refuses any other value naming the variable', async () => {
    assert.equal(gatewayOptionsFromEnv({}).s3?.maxObjectBytes, undefined);
    assert.equal(gatewayOptionsFromEnv({ CA_A2A_S3_MAX_OBJECT_BYTES: '268435456' }).s3?.maxObjectBytes, 268435456);
    for (const bad of ['0', '-1', '1.5', 'ten', '1e7', '0x100', '268435457', '1099511627776']) {
      assert.throws(() => gatewayOptionsFromEnv({ CA_A2A_S3_MAX_OBJECT_BYTES: bad }), new RegExp(`^Error: CA_A2A_S3_MAX_OBJECT_BYTES must be an integer from 1 to 268435456, got '${bad}'$`), bad);
    }
    assert.ok(bodyLimit(MAX_OBJECT_BYTES_LIMIT) <= constants.MAX_STRING_LENGTH, 'an upload at the largest cap can still be parsed');
    assert.ok(bodyLimit(2 * MAX_OBJECT_BYTES_LIMIT) > constants.MAX_STRING_LENGTH, 'the cap is the largest power of two that can');
    for (const bad of [0, 1.5, MAX_OBJECT_BYTES_LIMIT + 1]) {
      await assert.rejects(
        startMcpGateway({ port: 0, dataDir: join(tmpdir(), 'never-made'), s3: { maxObjectBytes: bad } }),
        /^Error: s3.maxObjectBytes \(CA_A2A_S3_MAX_OBJECT_BYTES\) must be an integer from 1 to 268435456$/,
        String(bad),
      );
    }
    const { code, stderr } = await run(process.execPath, [BIN, 'mcp-gateway'], { env: { ...process.env, CA_A2A_S3_MAX_OBJECT_BYTES: '1099511627776' } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(code, 2);
    assert.match(stderr, /^ca-a2a mcp-gateway: CA_A2A_S3_MAX_OBJECT_BYTES must be an integer from 1 to 268435456, got '1099511627776'\nusage:/);
  });

  it('reads the per-caller database bound from its flag, else its variable, and names the one that is wrong', () => {
    assert.deepEqual(gatewayOptionsFromEnv({}).perCaller, { maxStatements: undefined, maxWaitMs: undefined, reservedConnections: undefined });
    const env = { CA_A2A_DB_PER_CALLER: '3', CA_A2A_DB_PER_CALLER_WAIT_MS: '250', CA_A2A_DB_RESERVED: '0' };
    assert.deepEqual(gatewayOptionsFromEnv(env).perCaller, { maxStatements: 3, maxWaitMs: 250, reservedConnections: 0 });
    assert.deepEqual(gatewayOptionsFromEnv(env, { 'db-per-caller': '7', 'db-reserved': '4' }).perCaller, { maxStatements: 7, maxWaitMs: 250, reservedConnections: 4 });
    for (const bad of ['0', '-1', '1.5', 'two', '1e3']) {
      assert.throws(() => gatewayOptionsFromEnv({ CA_A2A_DB_PER_CALLER: bad }), /^Error: CA_A2A_DB_PER_CALLER must be a positive integer/, bad);
      assert.throws(() => gatewayOptionsFromEnv(env, { 'db-per-caller-wait-ms': bad }), /^Error: --db-per-caller-wait-ms must be a positive integer/, bad);
      if (bad !== '0') assert.throws(() => gatewayOptionsFromEnv(env, { 'db-reserved': bad }), /^Error: --db-reserved must be a non-negative integer/, bad);
    }
  });

  it('reads the upload timeout in seconds from its flag, else its variable, 1 to 3600, and names the one that is wrong', () => {
    assert.equal(gatewayOptionsFromEnv({}).s3?.uploadTimeoutMs, undefined);
    const env = { CA_A2A_S3_UPLOAD_TIMEOUT_SECONDS: '90' };
    assert.equal(gatewayOptionsFromEnv(env).s3?.uploadTimeoutMs, 90_000);
    assert.equal(gatewayOptionsFromEnv(env, { 's3-upload-timeout-seconds': '3600' }).s3?.uploadTimeoutMs, 3_600_000);
    for (const bad of ['0', '-1', '1.5', 'two', '1e3', '3601']) {
      assert.throws(() => gatewayOptionsFromEnv({ CA_A2A_S3_UPLOAD_TIMEOUT_SECONDS: bad }), new RegExp(`^Error: CA_A2A_S3_UPLOAD_TIMEOUT_SECONDS must be an integer from 1 to 3600, got '${bad}'$`), bad);
      assert.throws(() => gatewayOptionsFromEnv(env, { 's3-upload-timeout-seconds': bad }), /^Error: --s3-upload-timeout-seconds must be an integer from 1 to 3600/, bad);
    }
  });

  it('refuses to keep back the whole pool, which would hold every caller to one call', async () => {
    const dataDir = join(tmpdir(), 'never-made');
    await assert.rejects(
      startMcpGateway({ port: 0, dataDir, pool: { max: 4 }, perCaller: { reservedConnections: 4 } }),
      /^Error: perCaller.reservedConnections \(--db-reserved\) must be less than the pool's 4 connections$/,
    );
    await assert.rejects(startMcpGateway({ port: 0, dataDir, perCaller: { reservedConnections: -1 } }), /^Error: perCaller.reservedConnections must be a non-negative integer$/);
  });

  it('refuses an allowed prefix that is not a folder: uploads would let uploads-private/ through', async () => {
    for (const bad of ['uploads', 'uploads/,archive', '/uploads/', 'a/../b/', 'a//']) {
      assert.throws(() => gatewayOptionsFromEnv({ CA_A2A_S3_PREFIXES: bad }), /CA_A2A_S3_PREFIXES/, bad);
    }
    await assert.rejects(startMcpGateway({ port: 0, dataDir: join(tmpdir(), 'never-made'), s3: { allowedPrefixes: ['uploads'] } }), /must end with \//);
  });

  it('serves until SIGTERM, then closes, writes its last log lines and exits 0', async () => {
    const dataDir = await tempDir();
    const gateway = await gatewayProcess(dataDir);
    try {
      const health = await fetch(`${gateway.url}/health`);
      assert.equal(health.status, 200);
      assert.equal(((await health.json()) as { backends: { postgres: { kind: string } } }).backends.postgres.kind, 'pglite');
      gateway.child.kill('SIGTERM');
      assert.equal(await gateway.exited, 0);
      // Its last lines, still in the log's buffer when it stopped, are written before it exits.
      assert.deepEqual(gateway.lines.slice(-2).map((line) => [line.event_type, line.service]), [['mcp_gateway_stopping', 'mcp-gateway'], ['mcp_gateway_stopped', 'mcp-gateway']]);
    } finally {
      gateway.child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  // Its tries' timers and sockets held the process for the try's bound (here an hour) once the
  // connections were closed, and a try cut off by the closed bucket client was sent again.
  it('exits 0 on SIGTERM with an upload still running on a bucket that never answers, and sends it no other try', async (t) => {
    const dataDir = await tempDir();
    const requests: Socket[] = [];
    let requested: () => void;
    const firstRequest = new Promise<void>((ok) => (requested = ok));
    const silent = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => {
        requests.push(socket);
        requested();
      });
    });
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const gateway = await gatewayProcess(dataDir, {
      env: { CA_A2A_S3_BUCKET: 'documents', CA_A2A_S3_ENDPOINT: endpoint, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' },
      args: ['--s3-upload-timeout-seconds', '3600'],
    });
    // Also when the test times out waiting for the exit: left alive, the child would hold this run.
    t.after(() => gateway.child.kill('SIGKILL'));
    try {
      const caller = new AbortController();
      const upload = fetch(`${gateway.url}/call_tool`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-ca-a2a-client-id': 'admin' },
        body: JSON.stringify({ tool: 's3_put_object', arguments: { key: 'uploads/silent.txt', content_base64: Buffer.from('hello').toString('base64'), content_type: 'text/plain' } }),
        signal: caller.signal,
      });
      upload.catch(() => undefined);
      await firstRequest;
      // The caller gone, nothing is in flight for the drain to wait for: only the try runs on.
      caller.abort();
      gateway.child.kill('SIGTERM');
      assert.equal(await gateway.exited, 0);
      assert.equal(requests.length, 1, 'no try after the stop');
      assert.equal(gateway.lines.at(-1)?.event_type, 'mcp_gateway_stopped');
    } finally {
      for (const socket of requests) socket.destroy();
      silent.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses an embedded database another process holds, and takes over one whose holder died', async () => {
    const dataDir = await tempDir();
    const gateway = await gatewayProcess(dataDir);
    try {
      const pglite = join(dataDir, 'pglite');
      assert.match(await openRefusal(pglite), new RegExp(`${pglite} is in use by process ${gateway.child.pid}`));
      gateway.child.kill('SIGKILL');
      await gateway.exited;
      const db = await openSqlClient({ dataDir: pglite });
      try {
        assert.equal((await db.query<{ n: number }>('SELECT 1 AS n')).rows[0]?.n, 1);
        // One process, one opener too.
        assert.match(await openRefusal(pglite), /in use by process/);
      } finally {
        await db.close();
      }
      await (await openSqlClient({ dataDir: pglite })).close();
      // A lock naming this very pid, which this process never took: a container restarted on a
      // kept volume runs as the same pid (1) as the one that died holding it.
      writeFileSync(`${pglite}.lock`, `${process.pid}\n`);
      await (await openSqlClient({ dataDir: pglite })).close();
    } finally {
      gateway.child.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a gateway whose stdout is not read', () => {
  it('keeps answering, drops the lines past its bound, counts them in ca_a2a_mcp_log_lines_dropped_total, and logs again once read', async () => {
    const dataDir = await tempDir();
    const schema = await createTestSchema();
    const child = spawn(process.execPath, [BIN, 'mcp-gateway', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      env: { ...process.env, DATABASE_URL: schema.urlFor(), CA_A2A_S3_BUCKET: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const stdout = readChildStdout(child);
      const started = await stdout.line<{ url: string }>('mcp_gateway_started');
      const before = await (await fetch(`${started.url}/metrics`)).text();
      assert.match(before, /^ca_a2a_mcp_log_lines_dropped_total 0$/m, 'exported at 0 from the start');
      // The reader stops: once the pipe is full, the gateway's lines stay with it. pino's default
      // stdout had no bound: it kept every line not yet taken, dropping none, until memory ran out.
      child.stdout.pause();

      // Each call is one mcp_tool_call audit line of about 1.3 KB (every caller header at its
      // 256-character cap): 144 batches of 100 are some 18 MiB, past the 16 MiB bound and the pipe's
      // own 64 KiB.
      const headers = {
        'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-03-26',
        'x-ca-a2a-subject': 's'.repeat(256), 'x-ca-a2a-client-id': 'c'.repeat(256), 'x-ca-a2a-roles': 'r'.repeat(256), 'x-ca-a2a-request-id': 'q'.repeat(256),
      };
      const body = JSON.stringify(Array.from({ length: 100 }, (_, id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'no_such_tool', arguments: {} } })));
      // Were its logging ever to block the gateway, each request gives up rather than hang the test.
      const post = async () => (await fetch(`${started.url}/mcp`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) })).status;
      for (let sent = 0; sent < 144; sent += 4) assert.deepEqual(await Promise.all([post(), post(), post(), post()]), [200, 200, 200, 200]);

      assert.equal((await fetch(`${started.url}/health`, { signal: AbortSignal.timeout(10_000) })).status, 200);
      const scraped = await (await fetch(`${started.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      const dropped = Number(/^ca_a2a_mcp_log_lines_dropped_total (\d+)$/m.exec(scraped)?.[1]);
      assert.ok(dropped > 0, `dropped: ${dropped}`);

      // The reader comes back: what was kept comes out, then new lines again.
      child.stdout.resume();
      const send = () => fetch(`${started.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': 'after-the-block' }, body: JSON.stringify({ tool: 'no_such_tool' }) });
      assert.ok(await stdout.sendUntilRead('"request_id":"after-the-block"', send), 'a line logged once stdout is read again comes out');
    } finally {
      child.kill('SIGKILL');
      if (child.exitCode === null) await once(child, 'exit');
      await rm(dataDir, { recursive: true, force: true });
      await schema.drop();
    }
  });
});

/** Why opening the PGlite database in dir was refused ('opened' when it was not). */
function openRefusal(dir: string): Promise<string> {
  return openSqlClient({ dataDir: dir }).then(async (db) => {
    await db.close();
    return 'opened';
  }, (error: Error) => error.message);
}

/**
 * `ca-a2a mcp-gateway` on PGlite in dataDir (its local bucket unless `env` names one, and `args`
 * added), once it has logged its URL; `lines` keeps every line of its stdout.
 */
async function gatewayProcess(dataDir: string, more: { env?: Record<string, string>; args?: string[] } = {}): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null>; lines: LogLine[] }> {
  const script = "import { mcpGatewayCommand } from './mcp/cli.ts'; process.exitCode = await mcpGatewayCommand(process.argv.slice(1));";
  const env = { ...process.env, DATABASE_URL: '', CA_A2A_S3_BUCKET: '', ...more.env };
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...(more.args ?? [])], {
    cwd: new URL('../../', import.meta.url),
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // 'close' comes once stdout has ended too: every line written by then is in `lines`.
  const exited = new Promise<number | null>((ok) => child.on('close', (code) => ok(code)));
  const lines: LogLine[] = [];
  const url = await new Promise<string | undefined>((ok) => {
    createInterface({ input: child.stdout })
      .on('line', (line) => {
        const entry = JSON.parse(line) as LogLine;
        lines.push(entry);
        if (entry.event_type === 'mcp_gateway_started' && entry.url !== undefined) ok(entry.url);
      })
      .on('close', () => ok(undefined));
  });
  if (url !== undefined) return { child, url, exited, lines };
  child.kill('SIGKILL');
  throw new Error('the gateway exited without logging its URL');
}

type LogLine = { event_type?: string; url?: string; service?: string };
