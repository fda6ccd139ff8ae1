import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DOC_ID, RBAC_FILE, rpc, startHarness, writePolicy, type Harness } from '../../helpers/harness.js';

describe('jsonrpc layer', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({ service: 'archivist' });
    token = await h.issuer.sign({ realm_access: { roles: ['admin'] } });
  });
  after(() => h.close());

  async function refused(body: string, reason: string, code: number): Promise<void> {
    const count = h.upstream.requests.length;
    const res = await h.call(body, { token });
    assert.equal(res.status, 400, `${body.slice(0, 80)} → ${JSON.stringify(res.json)}`);
    assert.equal(res.json.error?.data?.reason, reason);
    assert.equal(res.json.error?.code, code);
    assert.equal(h.upstream.requests.length, count, 'never forwarded');
  }

  it('forwards a valid single request and a valid batch', async () => {
    assert.equal((await h.call(rpc('get_document', { document_id: DOC_ID }), { token })).status, 200);
    const batch = [rpc('get_document', { document_id: DOC_ID }, 1), rpc('list_documents', {}, 2)];
    assert.equal((await h.call(batch, { token })).status, 200);
  });

  it('refuses malformed JSON with -32700', async () => {
    await refused('{"jsonrpc": "2.0", "method": ', 'jsonrpc.parse_error', -32700);
    await refused('{"a":1} trailing', 'jsonrpc.parse_error', -32700);
    await refused('', 'jsonrpc.parse_error', -32700);
    // RFC 8259 §8.1: no byte order mark; forwarded as it came, the agent's JSON.parse would fail on it.
    await refused(`\ufeff${JSON.stringify(rpc('get_document', { document_id: DOC_ID }))}`, 'jsonrpc.parse_error', -32700);
  });

  it('refuses duplicate method keys', async () => {
    await refused(`{"jsonrpc":"2.0","id":1,"method":"get_document","method":"delete_document","params":{"document_id":"${DOC_ID}"}}`, 'jsonrpc.duplicate_key', -32600);
  });

  it('refuses duplicate keys written with escapes', async () => {
    await refused(`{"jsonrpc":"2.0","id":1,"method":"get_document","\\u006dethod":"delete_document"}`, 'jsonrpc.duplicate_key', -32600);
  });

  it('refuses __proto__, constructor and prototype keys anywhere', async () => {
    await refused(`{"jsonrpc":"2.0","id":1,"method":"get_document","params":{"document_id":"${DOC_ID}","__proto__":{"admin":true}}}`, 'jsonrpc.forbidden_key', -32600);
    await refused(`{"jsonrpc":"2.0","id":1,"method":"list_documents","params":{"x":{"constructor":{"prototype":1}}}}`, 'jsonrpc.forbidden_key', -32600);
    await refused(`{"jsonrpc":"2.0","id":1,"method":"list_documents","params":{"__pro\\u0074o__":1}}`, 'jsonrpc.forbidden_key', -32600);
  });

  it('refuses 5000-deep nesting', async () => {
    await refused(`{"jsonrpc":"2.0","id":1,"method":"list_documents","params":{"a":${'['.repeat(5000)}${']'.repeat(5000)}}}`, 'jsonrpc.too_deep', -32600);
  });

  it('refuses envelopes that are not JSON-RPC 2.0', async () => {
    await refused('{"jsonrpc":"1.0","id":1,"method":"list_documents"}', 'jsonrpc.invalid_request', -32600);
    await refused('{"jsonrpc":"2.0","id":1}', 'jsonrpc.invalid_request', -32600);
    await refused('{"jsonrpc":"2.0","id":{},"method":"list_documents"}', 'jsonrpc.invalid_request', -32600);
    await refused('{"jsonrpc":"2.0","id":1,"method":"list_documents","params":"x"}', 'jsonrpc.invalid_request', -32600);
    await refused('{"jsonrpc":"2.0","id":1,"method":"list_documents","extra":1}', 'jsonrpc.invalid_request', -32600);
    await refused('{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}', 'jsonrpc.invalid_request', -32600);
    await refused('[]', 'jsonrpc.invalid_request', -32600);
    await refused('"just a string"', 'jsonrpc.invalid_request', -32600);
  });

  it('names the bad element of a batch', async () => {
    const res = await h.call([rpc('list_documents', {}, 1), { jsonrpc: '2.0', id: 2 }], { token });
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.data?.element, 1);
    assert.equal(res.json.id, null);
  });

  it('refuses a batch over the limit', async () => {
    const batch = Array.from({ length: 21 }, (_, i) => rpc('list_documents', {}, i));
    const res = await h.call(batch, { token });
    assert.equal(res.json.error?.data?.reason, 'jsonrpc.batch_too_large');
  });

  it('answers a refusal with the request id', async () => {
    const res = await h.call(rpc('get_document', { document_id: 'nope' }, 'abc-7'), { token });
    assert.equal(res.json.id, 'abc-7');
  });

  it('refuses invalid UTF-8', async () => {
    // The bytes themselves: a string body would be sent UTF-8 encoded, hence valid.
    const envelope = Buffer.from(`{"jsonrpc":"2.0","id":1,"method":"get_document","params":{"document_id":"${DOC_ID}","x":"?"}}`);
    envelope[envelope.lastIndexOf('?')] = 0xff;
    const count = h.upstream.requests.length;
    const res = await h.call(envelope, { token });
    assert.equal(res.status, 400, JSON.stringify(res.json));
    assert.equal(res.json.error?.code, -32700);
    assert.equal(res.json.error?.data?.reason, 'jsonrpc.parse_error');
    assert.equal(h.upstream.requests.length, count, 'never forwarded');
  });
});

describe('jsonrpc layer: tool names', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({ service: 'mcp' });
    token = await h.issuer.sign({ realm_access: { roles: ['admin'] } });
  });
  after(() => h.close());

  // A name is echoed into the answer and written to the audit line (tool, reason): unbounded, one
  // caller's 14 MiB body made lines of tens of MB that log pipelines split or drop (CloudWatch
  // takes 256 KB per event), so the record of the refusal was lost.
  it('refuses a tool name over 128 characters, on /mcp and /call_tool, with a short answer and audit line', async () => {
    const name = 'x'.repeat(100_000);
    for (const [path, body] of [
      ['/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: {} } }],
      ['/call_tool', { tool: name, arguments: {} }],
    ] as const) {
      const lines = h.audit.lines.length;
      const res = await h.call(body, { token, path });
      assert.equal(res.status, 400, path);
      assert.equal(res.json.error?.data?.reason, 'jsonrpc.invalid_request', path);
      assert.ok(JSON.stringify(res.json).length < 1_000, path);
      const logged = h.audit.lines.slice(lines);
      assert.equal(logged.length, 1, path);
      assert.ok(JSON.stringify(logged[0]).length < 2_000, path);
    }
    const allowed = await h.call({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 's3_list_objects', arguments: { prefix: 'uploads/' } } }, { token, path: '/mcp' });
    assert.equal(allowed.status, 200, 'a served tool still passes');
  });
});

// The sidecar authorised params.name and checked params.arguments; an MCP server on Go's
// encoding/json (mcp-go) matches keys case-insensitively, with Unicode folding, and keeps the last,
// so {"name":"s3_get_object","Name":"s3_delete_object"} ran the tool the validator is denied,
// wherever a policy's tools/call has no params schema to refuse the extra member.
const NO_PARAMS_SCHEMA = `service: respelled-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
integrity: { dpop: off }
methods:
  tools/call: { access: per_tool }
tools:
  s3_get_object: {}
  s3_delete_object: {}
`;

describe('jsonrpc layer: tools/call params spelled twice', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(NO_PARAMS_SCHEMA) });
  });
  after(() => h.close());

  it('refuses a second spelling of name, arguments or _meta, single or in a batch, never forwarded', async () => {
    const token = await h.issuer.sign({ realm_access: { roles: ['validator'] } });
    const allowed = { name: 's3_get_object', arguments: { key: 'uploads/a' } };
    const count = h.upstream.requests.length;
    for (const params of [
      { ...allowed, Name: 's3_delete_object' },
      { ...allowed, NAME: 's3_delete_object' },
      { ...allowed, ARGUMENTS: { key: 'archive/b' } },
      { ...allowed, 'argument\u017f': { key: 'archive/b' } },
      { ...allowed, _META: {} },
    ]) {
      for (const body of [rpc('tools/call', params), [rpc('tools/call', allowed, 1), rpc('tools/call', params, 2)]]) {
        const res = await h.call(body, { token });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.json.error?.data?.reason, 'jsonrpc.invalid_request');
        assert.match(res.json.error?.message ?? '', /another spelling/);
      }
    }
    assert.equal(h.upstream.requests.length, count, 'never forwarded');
    assert.equal((await h.call(rpc('tools/call', { ...allowed, _meta: { progressToken: 1 }, other: 1 }), { token })).status, 200, 'other members pass to the schema, if any');
  });
});
