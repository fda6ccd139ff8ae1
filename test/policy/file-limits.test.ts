import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { MAX_POLICY_FILE_BYTES, MAX_POLICY_NESTING } from '../../proxy/policy/yaml-source.js';
import { DOC_ID, minimalPolicy, rpc, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { CLEAN_RBAC, CLEAN_SERVICE, policyDir } from './fixtures.js';

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

/** The text followed by a comment that brings it to exactly `bytes` bytes. */
function paddedTo(text: string, bytes: number): string {
  return `${text}#${'x'.repeat(bytes - Buffer.byteLength(text) - 2)}\n`;
}

/** A schema nested `levels` deep in flow style, valid for ajv: allOf inside allOf. */
function deepSchema(levels: number): string {
  const pairs = Math.ceil(levels / 2);
  return `${'{ allOf: [ '.repeat(pairs)}{ type: object }${' ] }'.repeat(pairs)}`;
}

const ROLE_ARGUMENTS = /( {8}s3_get_object:\n)[\s\S]*$/;

async function check(dir: string): Promise<{ status: number; stdout: string }> {
  const io = bufferIo();
  const status = await policyCommand(['check', dir], io);
  return { status, stdout: io.stdout };
}

describe('policy check: file size and nesting limits', () => {
  it(`refuses an rbac file over ${MAX_POLICY_FILE_BYTES} bytes, where the service names it and at its own start`, async () => {
    const dir = policyDir({ rbac: paddedTo(CLEAN_RBAC, MAX_POLICY_FILE_BYTES + 1) });
    const { status, stdout } = await check(dir);
    assert.equal(status, 1);
    assert.match(stdout, /services\/docs\.yaml:2:7: error file-limit: file too large: .*rbac\.yaml is over 1 MiB/);
    assert.match(stdout, /rbac\.yaml:1:1: error file-limit: file too large/);
  });

  it('accepts a file of exactly the limit', async () => {
    const { status, stdout } = await check(policyDir({ rbac: paddedTo(CLEAN_RBAC, MAX_POLICY_FILE_BYTES) }));
    assert.equal(status, 0, stdout);
  });

  it('refuses a $ref schema over the limit at the $ref', async () => {
    const service = CLEAN_SERVICE.replace('get_document: { params: { type: object } }', 'get_document: { params: { $ref: ../schemas/doc.json } }');
    const dir = policyDir({ service, extra: { 'schemas/doc.json': paddedTo('{ "type": "object" }\n', MAX_POLICY_FILE_BYTES + 1) } });
    const { status, stdout } = await check(dir);
    assert.equal(status, 1);
    assert.match(stdout, /services\/docs\.yaml:10:35: error file-limit: file too large: .*schemas\/doc\.json/);
  });

  it(`refuses a file nested more than ${MAX_POLICY_NESTING} levels deep, at the level that goes over, and accepts one a little shallower`, async () => {
    const rbac = (levels: number): string => CLEAN_RBAC.replace(ROLE_ARGUMENTS, `$1          ${deepSchema(levels)}\n`);
    const deep = await check(policyDir({ rbac: rbac(MAX_POLICY_NESTING) }));
    assert.equal(deep.status, 1);
    assert.match(deep.stdout, new RegExp(`rbac\\.yaml:13:\\d+: error file-limit: nested more than ${MAX_POLICY_NESTING} levels deep`));
    const shallower = await check(policyDir({ rbac: rbac(MAX_POLICY_NESTING - 12) }));
    assert.equal(shallower.status, 0, shallower.stdout);
  });

  it('refuses an rbac file that is not UTF-8 at its first bad byte, and accepts U+FFFD written as UTF-8', async () => {
    const rbac = CLEAN_RBAC.replace('  viewer:', '  viewer:\n    description: "Lecteurs, accès en lecture"');
    const refused = await check(policyDir({ rbac: latin1(rbac) }));
    assert.equal(refused.status, 1);
    assert.match(refused.stdout, /rbac\.yaml:7:32: error yaml-syntax: .*rbac\.yaml is not UTF-8 \(byte 0xe8\): save it as UTF-8/);
    const accepted = await check(policyDir({ rbac: rbac.replace('accès', 'acc\uFFFDs') }));
    assert.equal(accepted.status, 0, accepted.stdout);
  });

  it('loading a deeply nested file again and again does not abort the process', () => {
    // Before the nesting limit, V8 aborted (exit 134, "RegExpCompiler Allocation failed") on a
    // later load of this 20 KB file: no sidecar reload could have kept the old policy.
    const file = writePolicy(`${minimalPolicy('deep')}notes:\n  ${'- '.repeat(10_000)}x\n`);
    const script = `const { loadPolicy } = await import(${JSON.stringify(new URL('../../proxy/policy/load.ts', import.meta.url).pathname)});
      for (let i = 0; i < 10; i++) { try { loadPolicy(${JSON.stringify(file)}); } catch (error) { if (i === 9) console.log(error.message); } }`;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr.slice(0, 500));
    assert.match(child.stdout, new RegExp(`service\\.yaml:8:\\d+ nested more than ${MAX_POLICY_NESTING} levels deep`));
  });
});

describe('sidecar reload: file size and nesting limits', () => {
  let h: Harness;
  let file: string;
  const base = minimalPolicy('limits-test');
  before(async () => {
    file = writePolicy(base);
    h = await startHarness({ policyFile: file });
  });
  after(() => h.close());

  const edits: { name: string; text: () => string | Buffer; problem: RegExp }[] = [
    { name: 'a policy file over the limit', text: () => paddedTo(`${base}  list_documents: {}\n`, MAX_POLICY_FILE_BYTES + 1), problem: /service\.yaml:1:1 file too large/ },
    { name: 'a policy file nested too deep', text: () => `${base}  list_documents: { params: ${deepSchema(MAX_POLICY_NESTING)} }\n`, problem: /service\.yaml:7:\d+ nested more than 64 levels deep/ },
    {
      name: 'an alias expansion bomb',
      text: () => `${base}  list_documents: { params: { type: object, x-bomb: *b3 } }\nanchors:\n  a: &b0 [1, 1, 1, 1, 1, 1, 1, 1]\n  b: &b1 [*b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0]\n  c: &b2 [*b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1]\n  d: &b3 [*b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2]\n`,
      problem: /service\.yaml:\d+:\d+ .*alias/i,
    },
    {
      name: 'a policy file not in UTF-8 (a Latin-1 é in a description)',
      text: () => latin1(`${base}  list_documents: { description: "Opérateurs" }\n`),
      problem: new RegExp(`service\\.yaml:${base.split('\n').length}:37 .*service\\.yaml is not UTF-8 \\(byte 0xe9\\): save it as UTF-8`),
    },
    { name: 'a policy file in UTF-16', text: () => Buffer.from(`\uFEFF${base}  list_documents: {}\n`, 'utf16le'), problem: /service\.yaml:1:1 .*service\.yaml is UTF-16 \(it starts with a byte order mark\): save it as UTF-8/ },
  ];
  for (const edit of edits) {
    it(`keeps the policy in force on ${edit.name}, counts the failure and logs why`, async () => {
      const version = h.sidecar.policy().version;
      const failures = await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' });
      writeFileSync(file, edit.text());
      assert.equal(await h.sidecar.reload(), version);
      assert.equal(await h.metric('ca_a2a_policy_reloads_total', { result: 'failure' }), failures + 1);
      const problems = h.audit.events('policy_reload_failed').at(-1)?.problems as string[];
      assert.ok(problems.some((problem) => edit.problem.test(problem)), problems.join('\n'));
      assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token: await h.issuer.sign() })).status, 200);
      writeFileSync(file, base);
    });
  }
});
