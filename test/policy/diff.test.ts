import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { diffServices, loadSide } from '../../proxy/policy/tooling/diff.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { tempDirSync } from '../helpers/temp-dir.js';

const SHIPPED = new URL('../../policies/', import.meta.url).pathname;

/** Two real versions of the shipped policy directory: as shipped, and with the edits applied. */
function versions(edit: (rbac: string) => string): { before: string; after: string } {
  const root = tempDirSync('diff');
  const before = join(root, 'before');
  const after = join(root, 'after');
  cpSync(SHIPPED, before, { recursive: true });
  cpSync(SHIPPED, after, { recursive: true });
  const rbac = readFileSync(join(after, 'rbac.yaml'), 'utf8');
  const edited = edit(rbac);
  assert.notEqual(edited, rbac, 'the edit must apply');
  writeFileSync(join(after, 'rbac.yaml'), edited);
  return { before, after };
}

// The viewer gains delete_document; lambda loses process_document; the validator's tool deny of
// s3_delete_object goes (still not granted: a change, not a gain).
const edit = (rbac: string): string => rbac
  .replace('allow: [list_documents, get_document, check_status]', 'allow: [list_documents, get_document, check_status, delete_document]')
  .replace('allow: [upload_document, process_document]', 'allow: [upload_document]')
  .replace('deny: [s3_put_object, s3_delete_object]', 'deny: [s3_put_object]');

describe('policy diff', () => {
  it('lists exactly the changed grants between two directories', () => {
    const { before, after } = versions(edit);
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new}`);
    assert.deepEqual(changes.sort(), [
      'changed mcp validator tool s3_delete_object deny→none',
      'gained archivist viewer method delete_document none→allow',
      'lost orchestrator lambda method process_document allow→none',
    ]);
  });

  it('reports a loosened argument restriction, though the cell stays allow-args', () => {
    const { before, after } = versions((rbac) => rbac.replace('key: { type: string, pattern: "^uploads/" }\n        documents_create:', 'key: { type: string }\n        documents_create:'));
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.name} ${c.old}→${c.new} ${'detail' in c ? c.detail ?? '' : ''}`);
    assert.deepEqual(changes, ['changed mcp orchestrator tool s3_put_object allow-args→allow-args arguments']);
  });

  it('says the same for two rbac files, decided against the services that use the new one', () => {
    const { before, after } = versions(edit);
    const afterServices = loadSide(join(after, 'rbac.yaml'));
    assert.equal(afterServices.length, 6);
    const changes = diffServices(loadSide(join(before, 'rbac.yaml'), afterServices), afterServices);
    assert.equal(changes.length, 3);
  });

  it('prints an aligned table with a summary, and --exit-code fails on changes', async () => {
    const { before, after } = versions(edit);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1);
    assert.match(io.stdout, /^\+ +archivist +viewer +method delete_document +- → allow$/m);
    assert.match(io.stdout, /^- +orchestrator +lambda +method process_document +allow → -$/m);
    assert.match(io.stdout, /3 changes: 1 gained, 1 lost, 1 changed/);
    const same = bufferIo();
    assert.equal(await policyCommand(['diff', before, before, '--exit-code'], same), 0);
    assert.equal(same.stdout, 'no access changes\n');
  });

  it('reports a switch to dry-run as a gain for every role (what was refused is forwarded), and back as a loss', async () => {
    const { before, after } = versions((rbac) => `${rbac}\n`);
    const service = join(after, 'services', 'archivist.yaml');
    writeFileSync(service, readFileSync(service, 'utf8').replace('mode: enforce', 'mode: dry-run'));
    const changes = diffServices(loadSide(before), loadSide(after)).map((c) => `${c.change} ${c.service} ${c.role} ${c.kind} ${c.old}→${c.new}`);
    assert.deepEqual(changes, ['gained archivist * mode enforce→dry-run']);
    const io = bufferIo();
    assert.equal(await policyCommand(['diff', before, after, '--exit-code'], io), 1, 'a switch to dry-run fails --exit-code');
    assert.match(io.stdout, /^\+ +archivist +every role +mode +enforce → dry-run$/m);
    assert.match(io.stdout, /1 change: 1 gained, 0 lost, 0 changed/);
    assert.deepEqual(diffServices(loadSide(after), loadSide(before)).map((c) => `${c.change} ${c.kind} ${c.old}→${c.new}`), ['lost mode dry-run→enforce']);
  });

  it('reads a side at a git revision (REV:path)', async () => {
    const io = bufferIo();
    const status = await policyCommand(['diff', 'HEAD:policies', 'HEAD:policies', '--format', 'json'], io);
    assert.equal(status, 0, io.stderr);
    assert.deepEqual(JSON.parse(io.stdout), []);
  });
});
