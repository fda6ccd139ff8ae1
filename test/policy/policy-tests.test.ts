import assert from 'node:assert/strict';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { runPolicyTests } from '../../proxy/policy/tooling/test-runner.js';
import { policyDir } from './fixtures.js';

describe('policies/tests (ca-a2a policy test)', () => {
  it('every case passes and every seed role is covered on every shipped service', () => {
    const run = runPolicyTests(['policies/tests']);
    assert.deepEqual(run.errors, []);
    assert.deepEqual(run.results.filter((result) => !result.passed).map((result) => `${result.file}:${result.line} ${result.title}: expected ${result.expected}, got ${result.actual}`), []);
    assert.deepEqual(Object.fromEntries([...run.uncovered].map(([service, byRole]) => [service, Object.fromEntries(byRole)])), {});
    const services = new Set(run.results.map((result) => result.service));
    assert.deepEqual([...services].sort(), ['admin', 'archivist', 'extractor', 'mcp', 'orchestrator', 'validator']);
  });

  it('reports a wrong expectation with the case position, and exits 1', async () => {
    const dir = policyDir({ extra: { 'tests/docs.yaml': 'service: docs\ncases:\n  - { roles: [viewer], method: get_document, expect: allow }\n  - { roles: [viewer], method: list_documents, expect: deny, code: authz.method_denied }\n' } });
    const io = bufferIo();
    assert.equal(await policyCommand(['test', join(dir, 'tests')], io), 1);
    assert.match(io.stdout, /FAIL {2}.*tests\/docs\.yaml:4:5: docs: \[viewer\] list_documents: expected deny authz\.method_denied, got allow/);
    assert.match(io.stdout, /FAIL: 2 cases on 1 services, 1 failed/);
  });

  it('refuses cases that cannot test what they seem to, and a path that does not exist', () => {
    const dir = policyDir({ extra: { 'tests/vague.yaml': [
      'service: docs',
      'cases:',
      '  - { roles: [viewer], expect: deny }',
      '  - { roles: [viewer], method: delet_document, expect: deny }',
      '  - { roles: [viewer], method: get_document, tool: s3_get_object, expect: allow }',
      '  - { roles: [viewer], method: delet_document, expect: deny, code: authz.method_unknown }',
      '',
    ].join('\n') } });
    const run = runPolicyTests([join(dir, 'tests'), join(dir, 'no-such-tests')]);
    assert.deepEqual(run.errors.map((e) => `${e.rule} ${e.line} ${e.message.slice(0, 40)}`), [
      'test-file 1 no such file or directory',
      'test-case 3 a case names a method or a tool',
      "test-case 4 service docs serves no method 'delet_doc",
      "test-case 5 tool 's3_get_object' is only read by too",
    ]);
    assert.equal(run.results.length, 1, 'the case that states its expected code runs');
    assert.equal(run.results[0]?.passed, true);
  });

  it('decides a tool case given by params on what the sidecar reads from them: params.name and params.arguments', () => {
    const dir = policyDir({ extra: { 'tests/mcp.yaml': [
      'service: mcp',
      'cases:',
      '  - { roles: [tooler], tool: s3_get_object, params: { name: s3_get_object, arguments: { key: archive/a.pdf } }, expect: deny, code: authz.arguments_denied }',
      '  - { roles: [tooler], tool: s3_get_object, params: { name: s3_get_object, arguments: { key: uploads/a.pdf } }, expect: allow }',
      '  - { roles: [tooler], method: tools/call, params: { name: s3_get_object, arguments: { key: archive/a.pdf } }, expect: deny, code: authz.arguments_denied }',
      '  - { roles: [tooler], tool: s3_get_object, params: { name: s3_put_object }, expect: deny }',
      '  - { roles: [tooler], tool: s3_get_object, arguments: { key: uploads/a.pdf }, params: { name: s3_get_object }, expect: allow }',
      '',
    ].join('\n') } });
    const run = runPolicyTests([join(dir, 'tests')]);
    assert.deepEqual(run.results.map((result) => `${result.line} ${result.passed ? 'pass' : `${result.actual}`}`), ['3 pass', '4 pass', '5 pass']);
    assert.deepEqual(run.errors.map((e) => `${e.rule} ${e.line} ${e.message}`), [
      'test-case 6 params.name is the tool the sidecar decides on: it is "s3_put_object", not \'s3_get_object\'',
      'test-case 7 a tool case gives arguments or params (the whole tools/call params), not both',
    ]);
  });

  it('walks a tests directory holding a link back up and a dangling link without dying', async () => {
    const dir = policyDir({ extra: { 'tests/docs.yaml': 'service: docs\ncases:\n  - { roles: [viewer], method: get_document, expect: allow }\n' } });
    symlinkSync('..', join(dir, 'tests', 'all'));
    symlinkSync(join(dir, 'gone.yaml'), join(dir, 'tests', 'gone.yaml'));
    const run = runPolicyTests([join(dir, 'tests')]);
    assert.deepEqual(run.results.map((result) => result.passed), [true]);
    assert.deepEqual(run.errors.map((e) => `${e.file.slice(dir.length + 1)} ${e.message}`), [`tests/gone.yaml file not found: ${join(dir, 'tests', 'gone.yaml')}`]);
  });

  it('says why a directory without test files fails', async () => {
    const dir = policyDir({ extra: { 'tests/README.md': 'cases go here\n' } });
    const io = bufferIo();
    assert.equal(await policyCommand(['test', join(dir, 'tests')], io), 1);
    assert.match(io.stdout, /tests:1:1: error test-file: no test file \(\*\.yaml\) in this directory\n/);
    assert.match(io.stdout, /FAIL: 0 cases on 0 services, 0 failed, 1 file errors/);
  });

  it('refuses a malformed test file with its position', async () => {
    const dir = policyDir();
    writeFileSync(join(dir, 'bad.yaml'), 'service: docs\ncases:\n  - { roles: [viewer], method: get_document, expected: allow }\n');
    const run = runPolicyTests([join(dir, 'bad.yaml')]);
    assert.equal(run.errors.length, 2);
    assert.equal(run.errors[0]?.line, 3);
  });

  it('refuses a misspelt role in a case expected to be denied for no stated reason, and a code on an allow', async () => {
    const dir = policyDir({ extra: { 'tests/roles.yaml': [
      'service: docs',
      'cases:',
      '  - { roles: [viewr], method: get_document, expect: deny }',
      '  - { roles: [admin, viewr], method: get_document, expect: deny }',
      '  - { roles: [viewer], method: get_document, expect: allow, code: authz.method_denied }',
      '  - { roles: [root], method: get_document, expect: deny, code: authz.no_roles }',
      '',
    ].join('\n') } });
    const run = runPolicyTests([join(dir, 'tests')]);
    assert.deepEqual(run.errors.map((e) => `${e.rule} ${e.line} ${e.message.slice(0, 44)}`), [
      "test-case 3 the rbac file of docs defines no role 'viewr",
      "test-case 4 the rbac file of docs defines no role 'viewr",
      'test-case 5 code is the refusal a deny expects: say expe',
    ]);
    assert.deepEqual(run.results.map((result) => `${result.line} ${result.passed}`), ['6 true'], 'a case that states the refusal of unknown roles runs');
    const io = bufferIo();
    assert.equal(await policyCommand(['test', join(dir, 'tests')], io), 1);
  });
});
