import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { PG_URL } from '../mcp/helpers.js';
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

  // In a process of its own too, given a temp directory and a database of its own: whatever the
  // stack made there and left is what this test finds, with no other test's schemas in the way.
  it('startAgentStack rejects a gateway that cannot start, naming why, and removes the schema and the directory it made for it', async () => {
    const database = `ca_a2a_test_stack_${randomBytes(5).toString('hex')}`;
    const temp = await mkdtemp(join(tmpdir(), 'ca-a2a-stack-'));
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
      const databaseUrl = new URL(PG_URL);
      databaseUrl.pathname = `/${database}`;
      const script = `
        import { startAgentStack } from './test/agents/helpers/agent-stack.ts';
        try {
          await startAgentStack({ postgres: true, gateway: { perCaller: { maxStatements: 0 } } });
          console.log('started');
        } catch (error) {
          console.log(error.message);
        }`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: new URL('../../', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, TMPDIR: temp, TEST_DATABASE_URL: databaseUrl.toString() },
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const [code] = (await once(child, 'close')) as [number | null];
      assert.equal(out, 'the agent stack did not start: the gateway: perCaller.maxStatements must be a positive integer\n');
      assert.equal(code, 0);
      // tsx keeps its cache there too (tsx-N).
      assert.deepEqual((await readdir(temp)).filter((name) => name.startsWith('ca-a2a-')), [], 'the data directory is removed');
      const schemas = new pg.Client({ connectionString: databaseUrl.toString() });
      await schemas.connect();
      try {
        const left = await schemas.query<{ nspname: string }>("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mcp_test_%'");
        assert.deepEqual(left.rows, [], 'the schema is dropped');
      } finally {
        await schemas.end();
      }
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
      await admin.end();
      await rm(temp, { recursive: true, force: true });
    }
  });
});
