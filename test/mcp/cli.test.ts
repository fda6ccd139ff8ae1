import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gatewayOptionsFromEnv } from '../../mcp/cli.js';
import { startMcpGateway } from '../../mcp/gateway.js';
import { openSqlClient } from '../../proxy/stores/sql/sql-client.js';
import { tempDir } from './helpers.js';

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
    assert.throws(() => gatewayOptionsFromEnv({ CA_A2A_S3_MAX_OBJECT_BYTES: '-1' }), /positive integer/);
  });

  it('refuses an allowed prefix that is not a folder: uploads would let uploads-private/ through', async () => {
    for (const bad of ['uploads', 'uploads/,archive', '/uploads/', 'a/../b/', 'a//']) {
      assert.throws(() => gatewayOptionsFromEnv({ CA_A2A_S3_PREFIXES: bad }), /CA_A2A_S3_PREFIXES/, bad);
    }
    await assert.rejects(startMcpGateway({ port: 0, dataDir: join(tmpdir(), 'never-made'), s3: { allowedPrefixes: ['uploads'] } }), /must end with \//);
  });

  it('serves until SIGTERM, then closes and exits 0', async () => {
    const dataDir = await tempDir();
    const gateway = await gatewayProcess(dataDir);
    try {
      const health = await fetch(`${gateway.url}/health`);
      assert.equal(health.status, 200);
      assert.equal(((await health.json()) as { backends: { postgres: { kind: string } } }).backends.postgres.kind, 'pglite');
      gateway.child.kill('SIGTERM');
      assert.equal(await gateway.exited, 0);
    } finally {
      gateway.child.kill('SIGKILL');
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

/** Why opening the PGlite database in dir was refused ('opened' when it was not). */
function openRefusal(dir: string): Promise<string> {
  return openSqlClient({ dataDir: dir }).then(async (db) => {
    await db.close();
    return 'opened';
  }, (error: Error) => error.message);
}

/** `ca-a2a mcp-gateway` on PGlite in dataDir, once it has logged its URL. */
async function gatewayProcess(dataDir: string): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null> }> {
  const script = "import { mcpGatewayCommand } from './mcp/cli.ts'; process.exitCode = await mcpGatewayCommand(process.argv.slice(1));";
  const env = { ...process.env, DATABASE_URL: '', CA_A2A_S3_BUCKET: '' };
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    cwd: new URL('../../', import.meta.url),
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  for await (const line of createInterface({ input: child.stdout })) {
    const entry = JSON.parse(line) as { event_type?: string; url?: string };
    if (entry.event_type === 'mcp_gateway_started' && entry.url !== undefined) return { child, url: entry.url, exited };
  }
  child.kill('SIGKILL');
  throw new Error('the gateway exited without logging its URL');
}
