import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { policyCommand } from '../../proxy/policy/cli.js';
import { bufferIo } from '../../proxy/policy/tooling/io.js';
import { CLEAN_SERVICE, policyDir } from './fixtures.js';

describe('ca-a2a policy explain (command)', () => {
  const explain = async (dir: string, method: string) => {
    const io = bufferIo();
    const status = await policyCommand(['explain', '--policy', join(dir, 'services', 'docs.yaml'), '--roles', 'viewer', '--method', method], io);
    return { status, out: io.stdout, err: io.stderr };
  };

  it('exits 0 on an allow and 1 on a refusal, naming the rule and its line', async () => {
    const dir = policyDir();
    const allowed = await explain(dir, 'get_document');
    assert.equal(allowed.status, 0);
    assert.match(allowed.out, /^ALLOW\n[\s\S]*rule {4}allow 'get_document' of role 'viewer'\n {2}at {6}.*rbac\.yaml:7:13\n/);
    const refused = await explain(dir, 'delete_document');
    assert.equal(refused.status, 1);
    assert.match(refused.out, /^DENY 403 authz\.method_unknown/);
  });

  it('says so when --policy names the rbac file, in one line rather than six about a service policy', async () => {
    const dir = policyDir();
    const io = bufferIo();
    assert.equal(await policyCommand(['explain', '--policy', join(dir, 'rbac.yaml'), '--roles', 'viewer', '--method', 'get_document'], io), 2);
    assert.equal(io.stderr, `ca-a2a policy explain: policy invalid (run policy check):\n${join(dir, 'rbac.yaml')}:1:1 this is an rbac file (roles:), not a service policy: give the service policy whose rbac: names it\n`);
  });

  it('exits 2, not 1, when the policy does not load: a script asserting a refusal must not pass on a broken file', async () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('audience:', 'audiense:') });
    const result = await explain(dir, 'delete_document');
    assert.equal(result.status, 2);
    assert.equal(result.out, '');
    assert.match(result.err, /policy invalid \(run policy check\):\n[\s\S]*docs\.yaml:4:51 \/auth: unknown key 'audiense'/);
  });

  it('says when the service is in dry-run: the sidecar forwards the call it refuses', async () => {
    const dir = policyDir({ service: CLEAN_SERVICE.replace('service: docs\n', 'service: docs\nmode: dry-run\n') });
    const refused = await explain(dir, 'delete_document');
    assert.equal(refused.status, 1);
    assert.match(refused.out, /^ {2}mode {4}dry-run: the sidecar forwards this call all the same \(counted and logged as would_deny\)$/m);
    const io = bufferIo();
    await policyCommand(['explain', '--policy', join(dir, 'services', 'docs.yaml'), '--roles', 'viewer', '--method', 'delete_document', '--format', 'json'], io);
    assert.equal((JSON.parse(io.stdout) as { mode: string }).mode, 'dry-run');
    const enforced = await explain(policyDir(), 'delete_document');
    assert.doesNotMatch(enforced.out, /dry-run/);
  });

  it('refuses --params that is not a structured value (JSON-RPC 2.0 §4.2) with exit 2, saying what it got', async () => {
    const file = join(policyDir(), 'services', 'docs.yaml');
    for (const [params, got] of [['42', 'number'], ['"x"', 'string'], ['null', 'null'], ['true', 'boolean']]) {
      const io = bufferIo();
      assert.equal(await policyCommand(['explain', '--policy', file, '--roles', 'viewer', '--method', 'get_document', '--params', params as string], io), 2, params);
      assert.equal(io.stdout, '');
      assert.match(io.stderr, new RegExp(`^ca-a2a policy explain: --params must be a JSON object or array \\(JSON-RPC 2\\.0 §4\\.2\\), got ${got}\n`));
    }
    for (const params of ['{}', '[]']) {
      const io = bufferIo();
      assert.notEqual(await policyCommand(['explain', '--policy', file, '--roles', 'viewer', '--method', 'get_document', '--params', params], io), 2, `${params}: ${io.stderr}`);
    }
  });

  // An array was taken as the tool's arguments and judged (authz.arguments_denied), though MCP
  // tools/call arguments are an object: no client can send such a call.
  it('refuses an array --params with --tool with exit 2, naming --params, and reads an object as the arguments or the params', async () => {
    const call = ['explain', '--service', 'mcp', '--roles', 'validator', '--tool', 's3_get_object', '--params'];
    for (const params of ['[]', '["archive/x.pdf"]', '[{"key":"archive/x.pdf"}]']) {
      const io = bufferIo();
      assert.equal(await policyCommand([...call, params], io), 2, params);
      assert.equal(io.stdout, '');
      assert.match(io.stderr, /^ca-a2a policy explain: --params with --tool must be a JSON object \(the tool's arguments, or the tools\/call params \{"name", "arguments"\}\), got an array\n/);
    }
    for (const params of ['{"key":"archive/x.pdf"}', '{"name":"s3_get_object","arguments":{"key":"archive/x.pdf"}}']) {
      const io = bufferIo();
      assert.equal(await policyCommand([...call, params], io), 1, `${params}: ${io.stderr}`);
      assert.match(io.stdout, /^DENY 403 authz\.arguments_denied/);
    }
  });

  // A "name" other than --tool was dropped without a word, and '{"arguments": null}' was judged as
  // the arguments {"arguments": null}: each an answer about a call nobody sends.
  it('refuses tools/call params with --tool whose "name" is another tool or whose "arguments" is no object, with exit 2 naming --params', async () => {
    const call = ['explain', '--service', 'mcp', '--roles', 'validator', '--tool', 's3_get_object', '--params'];
    const cases: [string, RegExp][] = [
      ['{"name":"s3_put_object","arguments":{"key":"uploads/x.pdf"}}', /^ca-a2a policy explain: --params "name" is "s3_put_object" but --tool is 's3_get_object': leave "name" out or give the same tool\n/],
      ['{"name":42,"arguments":{"key":"uploads/x.pdf"}}', /^ca-a2a policy explain: --params "name" is 42 but --tool is 's3_get_object'/],
      ['{"arguments":null}', /^ca-a2a policy explain: --params "arguments" must be a JSON object \(MCP tools\/call\), got null\n/],
      ['{"name":"s3_get_object","arguments":["uploads/x.pdf"]}', /^ca-a2a policy explain: --params "arguments" must be a JSON object \(MCP tools\/call\), got an array\n/],
      ['{"arguments":"uploads/x.pdf"}', /^ca-a2a policy explain: --params "arguments" must be a JSON object \(MCP tools\/call\), got string\n/],
    ];
    for (const [params, message] of cases) {
      const io = bufferIo();
      assert.equal(await policyCommand([...call, params], io), 2, params);
      assert.equal(io.stdout, '');
      assert.match(io.stderr, message);
    }
    const decided: [string, number, RegExp][] = [
      ['{"key":"uploads/x.pdf"}', 0, /^ALLOW\n/],
      ['{"arguments":{"key":"uploads/x.pdf"}}', 0, /^ALLOW\n/],
      ['{"name":"s3_get_object","arguments":{"key":"uploads/x.pdf"},"_meta":{}}', 0, /^ALLOW\n/],
      // Read as the params, the keys beside "arguments" meet the tools/call params schema, as in the sidecar.
      ['{"arguments":{"key":"uploads/x.pdf"},"stray":1}', 1, /^DENY 400 params\.invalid[\s\S]*params of 'tools\/call'/],
      ['{"arguments":{"key":"archive/x.pdf"}}', 1, /^DENY 403 authz\.arguments_denied/],
    ];
    for (const [params, status, output] of decided) {
      const io = bufferIo();
      assert.equal(await policyCommand([...call, params], io), status, `${params}: ${io.stderr}`);
      assert.match(io.stdout, output);
    }
  });

  it('refuses a stray argument with exit 2, naming it, whether it is read as a path or cannot be one', async () => {
    const dir = policyDir();
    const call = ['--roles', 'viewer', '--method', 'get_document'];
    const cases: [string[], RegExp][] = [
      [['--policy', join(dir, 'services', 'docs.yaml'), ...call, 'stray'], /^ca-a2a policy explain: --policy FILE is the policy read: unexpected argument 'stray'/],
      [[...call, 'stray'], /^ca-a2a policy explain: DIR\|FILE arguments go with --service NAME: unexpected argument 'stray'/],
      [['--service', 'archivist', ...call, 'stray'], /^ca-a2a policy explain: .*stray: no such file or directory$/m],
      [['--service', 'archivist', '--policy', join(dir, 'services', 'docs.yaml'), ...call], /^ca-a2a policy explain: give --service NAME or --policy FILE, not both/],
    ];
    for (const [args, message] of cases) {
      const io = bufferIo();
      assert.equal(await policyCommand(['explain', ...args], io), 2, args.join(' '));
      assert.equal(io.stdout, '');
      assert.match(io.stderr, message);
    }
  });

  it('with DIR and --service NAME, explains the policy under DIR serving NAME, never the shipped one in its place', async () => {
    const dir = policyDir({ extra: { 'services/archive.yaml': CLEAN_SERVICE.replace('service: docs', 'service: archivist') } });
    const io = bufferIo();
    assert.equal(await policyCommand(['explain', dir, '--service', 'archivist', '--roles', 'viewer', '--method', 'get_document'], io), 0, io.stderr);
    assert.match(io.stdout, /^ {2}service archivist \(.*services\/archive\.yaml, version/m);
    const missing = bufferIo();
    assert.equal(await policyCommand(['explain', policyDir(), '--service', 'archivist', '--roles', 'viewer', '--method', 'get_document'], missing), 2);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /^ca-a2a policy explain: no policy under .* serves 'archivist' \(they serve: docs, mcp\)\n$/);
  });
});
