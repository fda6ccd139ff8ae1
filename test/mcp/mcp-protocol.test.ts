import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { TOOL_DEFINITIONS } from '../../mcp/tools/tool-definitions.js';
import { callTool, startTestGateway } from './helpers.js';

const identity = {
  'x-ca-a2a-subject': 'svc-extractor',
  'x-ca-a2a-client-id': 'extractor',
  'x-ca-a2a-roles': 'extractor,viewer',
  'x-ca-a2a-request-id': 'req-123',
};

describe('MCP over Streamable HTTP, /call_tool and /health', () => {
  let gw: McpGateway;
  let lines: Record<string, unknown>[];
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    const started = await startTestGateway();
    cleanups.push(started.close);
    gw = started.gateway;
    lines = started.lines;
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('lets the SDK Client initialize, list tools and call one', async () => {
    const client = new Client({ name: 'test-client', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: identity } });
    await client.connect(transport);
    try {
      assert.equal(client.getServerVersion()?.name, 'ca-a2a-mcp-gateway');
      assert.ok(client.getServerCapabilities()?.tools);
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name), TOOL_DEFINITIONS.map((d) => d.name));
      assert.deepEqual(tools.find((t) => t.name === 's3_put_object')?.inputSchema.required, ['key', 'content_base64', 'content_type']);
      // Tool annotations, as the SDK reads them: which tools only read, which overwrite.
      const readOnly = tools.filter((t) => t.annotations?.readOnlyHint === true).map((t) => t.name).sort();
      assert.deepEqual(readOnly, ['documents_get', 'documents_list', 'processing_logs_list', 's3_get_object', 's3_list_objects']);
      assert.deepEqual(tools.find((t) => t.name === 's3_delete_object')?.annotations, { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false });
      assert.equal(tools.find((t) => t.name === 'documents_update')?.annotations?.idempotentHint, false);
      assert.ok(tools.every((t) => t.annotations?.openWorldHint === false));

      const put = await client.callTool({ name: 's3_put_object', arguments: { key: 'uploads/mcp.txt', content_base64: Buffer.from('hi').toString('base64'), content_type: 'text/plain' } });
      assert.notEqual(put.isError, true);
      assert.equal((put.structuredContent as { size: number }).size, 2);
      const got = await client.callTool({ name: 's3_get_object', arguments: { key: 'uploads/mcp.txt' } });
      const content = got.content as { type: string; text: string }[];
      assert.equal(Buffer.from((JSON.parse(content[0]?.text ?? '{}') as { content_base64: string }).content_base64, 'base64').toString(), 'hi');

      const refused = await client.callTool({ name: 's3_get_object', arguments: { key: '../etc/passwd' } });
      assert.equal(refused.isError, true);
      assert.equal((refused.structuredContent as { error: { code: string } }).error.code, 'invalid_key');

      await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }), /no tool named/);
    } finally {
      await client.close();
    }
  });

  it('gives each tools/call of a batch its own arguments, under shared ids too, and refuses a malformed one as invalid params (-32602)', async () => {
    const put = (id: number | string, key: string, text: string) => ({
      jsonrpc: '2.0', id, method: 'tools/call',
      params: { name: 's3_put_object', arguments: { key, content_base64: Buffer.from(text).toString('base64'), content_type: 'text/plain' } },
    });
    const res = await fetch(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify([
        put('a', 'uploads/batch-a.txt', 'one'),
        put(2, 'uploads/batch-2.txt', 'two'),
        put(2, 'uploads/batch-2b.txt', 'three'),
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'documents_list', arguments: [1, 2] } },
        { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { arguments: {} } },
      ]),
    });
    assert.equal(res.status, 200);
    const answers = (await res.json()) as { id: unknown; result?: { isError?: boolean }; error?: { code: number; message: string } }[];
    // The caller's mistakes: invalid params naming the field, not an internal error.
    for (const [id, field] of [[3, 'arguments'], [4, 'name']] as const) {
      const error = answers.find((a) => a.id === id)?.error;
      assert.equal(error?.code, -32602, JSON.stringify(error));
      assert.match(error?.message ?? '', /^MCP error -32602: Invalid tools\/call request: /);
      assert.ok(error?.message.includes(`"${field}"`), error?.message);
    }
    assert.equal(answers.find((a) => a.id === 'a')?.result?.isError, undefined);
    // Two answers under one id are one to the SDK's transport, which may answer before the second
    // call ends: each object is waited for, then read.
    for (const [key, text] of [['uploads/batch-a.txt', 'one'], ['uploads/batch-2.txt', 'two'], ['uploads/batch-2b.txt', 'three']] as const) {
      let got = await callTool(gw.url, 's3_get_object', { key });
      while (got.status === 404) got = await callTool(gw.url, 's3_get_object', { key });
      assert.equal(got.status, 200, key);
      assert.equal(Buffer.from(String(got.body.content_base64), 'base64').toString(), text, key);
    }
  });

  // The SDK answered nothing for a request its batch cancelled, and the transport waited for that
  // answer: the POST was never answered.
  it('answers every request of a batch that also cancels them, the cancellation before or after', { timeout: 60_000 }, async () => {
    const cancel = (requestId: number) => ({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'test' } });
    const batches: [number, object[]][] = [
      [1, [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'documents_list', arguments: { limit: 1 } } }, cancel(1)]],
      [2, [cancel(2), { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }]],
    ];
    for (const [id, batch] of batches) {
      const res = await fetch(`${gw.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify(batch),
      });
      assert.equal(res.status, 200);
      // The SDK answers a batch of one request with that answer alone, not in an array.
      const answer = (await res.json()) as { id: number; result?: object };
      assert.deepEqual([answer.id, typeof answer.result], [id, 'object'], JSON.stringify(answer));
    }
    // A cancellation alone is a notification like any other.
    const alone = await fetch(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify([cancel(3)]),
    });
    assert.equal(alone.status, 202);
  });

  it('answers tools/list as a JSON body (not SSE), without a session id', async () => {
    const res = await fetch(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list', params: {} }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('mcp-session-id'), null);
    const body = (await res.json()) as { id: number; result: { tools: { name: string }[] } };
    assert.equal(body.id, 7);
    assert.equal(body.result.tools.length, TOOL_DEFINITIONS.length);
  });

  it('answers a batch of object reads past the result budget: whole objects first, too_large after, each object once', async () => {
    // Two 5 MiB objects as base64 (7 M characters each) fit in one request's results; a third does not.
    const size = 5 * 1024 * 1024;
    const put = await callTool(gw.url, 's3_put_object', { key: 'uploads/big.bin', content_base64: Buffer.alloc(size, 7).toString('base64'), content_type: 'application/octet-stream' });
    assert.equal(put.status, 200);
    const batch = [1, 2, 3, 4].map((id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 's3_get_object', arguments: { key: 'uploads/big.bin' } } }));
    const res = await fetch(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-03-26' },
      body: JSON.stringify(batch),
      signal: AbortSignal.timeout(60_000),
    });
    assert.equal(res.status, 200);
    type Result = { isError?: boolean; content: { text: string }[]; structuredContent?: { error?: { code: string } } };
    const answers = (await res.json()) as { id: number; result: Result }[];
    assert.deepEqual(answers.map((a) => a.id).sort(), [1, 2, 3, 4]);
    const served = answers.filter((a) => a.result.isError !== true);
    const refused = answers.filter((a) => a.result.isError === true);
    assert.equal(served.length, 2);
    for (const { result } of served) {
      assert.equal(result.structuredContent, undefined, 'the object travels once, as text');
      assert.equal(Buffer.from((JSON.parse(result.content[0]?.text ?? '{}') as { content_base64: string }).content_base64, 'base64').length, size);
    }
    assert.deepEqual(refused.map((a) => a.result.structuredContent?.error?.code), ['too_large', 'too_large']);
    // The audit trail says so: the tool ran, its result was not delivered.
    assert.equal(lines.filter((l) => l.event_type === 'mcp_tool_result_refused' && l.tool === 's3_get_object' && l.outcome === 'too_large').length, 2);
  });

  it('refuses GET /mcp with 405 (stateless: no SSE stream) and malformed JSON with a parse error', async () => {
    const get = await fetch(`${gw.url}/mcp`, { headers: { accept: 'text/event-stream' } });
    assert.equal(get.status, 405);
    const bad = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{nope' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: number } }).error.code, -32700);
  });

  it('serves POST /call_tool with success true, and stable error codes on failure', async () => {
    const ok = await callTool(gw.url, 'documents_list', { limit: 1 }, identity);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.success, true);
    assert.ok(Array.isArray(ok.body.documents));
    const unknown = await callTool(gw.url, 'drop_tables', {});
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.success, false);
    assert.equal(unknown.body.error?.code, 'unknown_tool');
    const invalid = await callTool(gw.url, 'documents_get', { document_id: 'x' });
    assert.equal(invalid.body.error?.code, 'invalid_arguments');
    const notJson = await fetch(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[' });
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { error: { code: string } }).error.code, 'invalid_request');
    const noTool = await fetch(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"arguments":{}}' });
    assert.equal(((await noTool.json()) as { error: { code: string } }).error.code, 'invalid_request');
    const wrongType = await fetch(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    assert.equal(wrongType.status, 400);
  });

  it('reports each backend and its breaker state on GET /health with 200', async () => {
    const res = await fetch(`${gw.url}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      status: 'ok',
      backends: { postgres: { kind: 'postgres', breaker: 'closed' }, s3: { kind: 'disk', breaker: 'closed' } },
    });
  });

  it('writes an audit line per call with caller, tool, outcome and duration, never the arguments', async () => {
    const secret = 'very-personal-content';
    await callTool(gw.url, 's3_put_object', { key: 'uploads/audit.txt', content_base64: Buffer.from(secret).toString('base64'), content_type: 'text/plain' }, { ...identity, 'x-ca-a2a-request-id': 'req-audit' });
    const audit = lines.filter((l) => l.event_type === 'mcp_tool_call' && l.request_id === 'req-audit' && l.tool === 's3_put_object');
    assert.equal(audit.length, 1);
    const line = audit[0] as Record<string, unknown>;
    assert.deepEqual(line.caller, { subject: 'svc-extractor', client_id: 'extractor', roles: ['extractor', 'viewer'] });
    assert.equal(line.outcome, 'success');
    assert.equal(typeof line.duration_ms, 'number');
    const all = JSON.stringify(lines);
    assert.ok(!all.includes(Buffer.from(secret).toString('base64')) && !all.includes(secret));
  });

  it('exposes its own metrics on GET /metrics', async () => {
    const res = await fetch(`${gw.url}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /ca_a2a_mcp_tool_calls_total\{tool="documents_list",outcome="success"\} \d+/);
    assert.match(text, /ca_a2a_mcp_tool_calls_total\{tool="unknown",outcome="unknown_tool"\} 2/);
    assert.match(text, /ca_a2a_mcp_breaker_state\{backend="s3"\} 0/);
  });
});
