import assert from 'node:assert/strict';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startMcpGateway, type McpGateway } from '../../mcp/gateway.js';
import { callTool, captureLogger, tempDir } from './helpers.js';

/** Group and other bits of a path's mode: 0 when only its owner may enter or read it. */
async function openToOthers(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o077).toString(8);
}

describe('the embedded stores in a data directory others may enter', () => {
  let root: string;
  let dataDir: string;
  let gw: McpGateway;

  before(async () => {
    root = await tempDir();
    // As `--data-dir .` or a directory made beforehand: the gateway keeps its mode.
    dataDir = join(root, 'shared');
    await mkdir(dataDir);
    await chmod(dataDir, 0o755);
    gw = await startMcpGateway({ port: 0, dataDir, logger: captureLogger().logger });
  });

  after(async () => {
    await gw.close();
    await rm(root, { recursive: true, force: true });
  });

  it('keeps the PGlite database and the local bucket to the gateway\'s user (0700)', async () => {
    const put = await callTool(gw.url, 's3_put_object', { key: 'uploads/a.txt', content_base64: Buffer.from('secret').toString('base64'), content_type: 'text/plain' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(await openToOthers(dataDir), '55', 'the data directory itself is left as it was');
    assert.equal(await openToOthers(join(dataDir, 'pglite')), '0', 'pglite: its files are 0666');
    assert.equal(await openToOthers(join(dataDir, 'bucket')), '0', 'bucket: the documents');
  });
});
