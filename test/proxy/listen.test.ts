import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { parseListen } from '../../proxy/listen.js';

const BIN = new URL('../../bin/ca-a2a.js', import.meta.url).pathname;

function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (error, _stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr });
    });
  });
}

describe('listen addresses', () => {
  it('parses HOST:PORT, IPv6 in brackets, port 0, and refuses anything else, naming the flag', () => {
    assert.deepEqual(parseListen('127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListen('localhost:65535'), { host: 'localhost', port: 65535 });
    for (const bad of ['9000', 'host:', 'host:70000', ':80', '::1:80', '127.0.0.1:123456']) {
      assert.throws(() => parseListen(bad, '--listen'), new RegExp(`^Error: --listen '${bad.replaceAll('.', '\\.')}' is not HOST:PORT`), bad);
    }
  });

  it('is refused the same way, exit 2, by every command that listens', async () => {
    for (const command of [['issuer'], ['mcp-gateway'], ['agent', 'extractor', '--egress', 'http://127.0.0.1:1'], ['admin-api'], ['sidecar', '--service', 'archivist']]) {
      const { code, stderr } = await run([...command, '--listen', '127.0.0.1:70000']);
      assert.equal(code, 2, `${command[0]}: ${stderr}`);
      assert.match(stderr, /--listen '127\.0\.0\.1:70000' is not HOST:PORT \(IPv6 in brackets, port 0 to 65535\)/, command[0]);
    }
  });
});
