import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { CLEAN_SERVICE, policyDir } from './fixtures.js';

async function matrix(...args: string[]): Promise<{ status: number; services: string[]; stderr: string }> {
  const io = bufferIo();
  const status = await policyCommand(['matrix', ...args, '--format', 'json'], io);
  const services = io.stdout === '' ? [] : (JSON.parse(io.stdout) as { service: string; methods: Record<string, unknown> }[]).map((m) => `${m.service}:${Object.keys(m.methods).join(',')}`);
  return { status, services, stderr: io.stderr };
}

describe('ca-a2a policy matrix (command)', () => {
  it('with DIR|FILE arguments and --service NAME, shows every policy under them serving NAME, whatever its file name', async () => {
    const first = policyDir({ extra: { 'services/docs-eu.yaml': CLEAN_SERVICE.replace('  list_documents: { params: { type: object } }\n', '') } });
    const second = policyDir({ service: CLEAN_SERVICE.replace('  get_document: { params: { type: object } }\n', '') });
    assert.deepEqual(await matrix(first, second, '--service', 'docs'), { status: 0, services: ['docs:get_document', 'docs:get_document,list_documents', 'docs:list_documents'], stderr: '' });
    // A FILE argument too: the policy it holds, not services/NAME.yaml under it.
    assert.deepEqual((await matrix(join(second, 'services', 'docs.yaml'), '--service', 'docs')).services, ['docs:list_documents']);
  });

  it('exits 1 when no policy under the paths serves NAME (not the shipped one in its place), or a path holds none', async () => {
    const dir = policyDir();
    const elsewhere = await matrix(dir, '--service', 'archivist');
    assert.equal(elsewhere.status, 1);
    assert.deepEqual(elsewhere.services, []);
    assert.match(elsewhere.stderr, /^ca-a2a policy matrix: no policy under .* serves 'archivist' \(they serve: docs, mcp\)\n$/);
    const missing = await matrix(join(dir, 'nope'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^ca-a2a policy matrix: .*nope: no such file or directory\n$/);
  });

  it('refuses DIR|FILE arguments with --policy FILE, and --service with --policy, with exit 2', async () => {
    const dir = policyDir();
    const stray = await matrix(dir, '--policy', join(dir, 'services', 'docs.yaml'));
    assert.equal(stray.status, 2);
    assert.match(stray.stderr, /^ca-a2a policy matrix: --policy FILE is the policy read: unexpected argument '.*'/);
    const both = await matrix('--service', 'docs', '--policy', join(dir, 'services', 'docs.yaml'));
    assert.equal(both.status, 2);
    assert.match(both.stderr, /^ca-a2a policy matrix: give --service NAME or --policy FILE, not both/);
  });
});
