import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { RBAC_FILE, startHarness, writePolicy, type Harness } from '../helpers/harness.js';
import { tempDirSync } from '../helpers/temp-dir.js';

/**
 * tools/list filtering (proxy/mcp-filter.ts) against an upstream that answers something other
 * than a well-formed list: the caller never sees a tool its roles may not call, and the sidecar
 * answers (and keeps serving) whatever the upstream sent.
 */
const POLICY = `service: mcp-filter-test
rbac: ${RBAC_FILE}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
methods:
  tools/list: { access: tool_holders }
  tools/call: { access: per_tool }
tools:
  s3_get_object: {}
  s3_put_object: {}
`;

// The validator may call s3_get_object; s3_put_object is denied to it (policies/rbac.yaml).
const LISTED = [{ name: 's3_get_object' }, { name: 's3_put_object' }];

describe('tools/list filtering of unexpected upstream answers', () => {
  let h: Harness;
  let token: string;
  before(async () => {
    h = await startHarness({ policyFile: writePolicy(POLICY) });
    token = await h.issuer.sign({ realm_access: { roles: ['validator'] } });
  });
  after(() => h.close());
  const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' };

  it('answers a tools/list result that is null, an array or a string without crashing, and shows no denied tool', async () => {
    for (const result of [null, LISTED, 'text']) {
      h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result } }));
      const res = await h.call(list, { token });
      assert.equal(res.status, 200, JSON.stringify(result));
      assert.ok(!JSON.stringify(res.json).includes('s3_put_object'), `${JSON.stringify(result)} → ${JSON.stringify(res.json)}`);
      assert.deepEqual(res.json.result, { tools: [] });
    }
    h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: { tools: LISTED } } }));
    const res = await h.call(list, { token });
    assert.deepEqual(res.json.result, { tools: [{ name: 's3_get_object' }] }, 'the sidecar still serves');
    h.upstream.respond(undefined);
  });

  it('filters a tools/list answer whatever its HTTP status', async () => {
    for (const status of [201, 203, 400, 500]) {
      h.upstream.respond(() => ({ status, body: { jsonrpc: '2.0', id: 1, result: { tools: LISTED } } }));
      const res = await h.call(list, { token });
      assert.equal(res.status, status);
      assert.deepEqual(res.json.result, { tools: [{ name: 's3_get_object' }] }, `status ${status}`);
    }
    h.upstream.respond(undefined);
  });

  it('filters an answer whose id is not the one asked, unless it answers another call of the batch', async () => {
    for (const id of ['1', 2, null]) {
      h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id, result: { tools: LISTED } } }));
      const res = await h.call(list, { token });
      assert.deepEqual(res.json.result, { tools: [{ name: 's3_get_object' }] }, `id ${JSON.stringify(id)}`);
    }
    const call = { jsonrpc: '2.0', id: 'c', method: 'tools/call', params: { name: 's3_get_object', arguments: { key: 'uploads/a' } } };
    h.upstream.respond(() => ({
      body: [
        { jsonrpc: '2.0', id: 'c', result: { tools: LISTED } },
        { jsonrpc: '2.0', id: 'x', result: { tools: LISTED } },
      ],
    }));
    const res = await h.call([list, call], { token });
    const answers = res.json as unknown as { id: string; result: unknown }[];
    assert.deepEqual(answers[0]?.result, { tools: LISTED }, "the tools/call's own answer is left as it is");
    assert.deepEqual(answers[1]?.result, { tools: [{ name: 's3_get_object' }] }, 'an answer to no call is filtered');
    h.upstream.respond(undefined);
  });

  /** A sidecar on POLICY in front of an upstream answering every request with `status` and `answer` (raw bytes) under `headers`. */
  async function behindRaw(headers: Record<string, string>, answer: string | Buffer, run: (side: Harness) => Promise<void>): Promise<void> {
    const upstream = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, headers).end(answer));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const side = await startHarness({ policyFile: writePolicy(POLICY), sidecar: { upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }, issuer: h.issuer });
    try {
      await run(side);
    } finally {
      await side.close();
      await new Promise((resolve) => upstream.close(resolve));
    }
  }

  /** POSTs tools/list to `side` and resolves to the answer's status, content type and text. */
  async function rawList(side: Harness): Promise<{ status: number; contentType: string | undefined; text: string }> {
    const res = await fetch(`${side.sidecar.url}/message`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` },
      body: JSON.stringify(list),
    });
    return { status: res.status, contentType: res.headers.get('content-type') ?? undefined, text: await res.text() };
  }

  it('filters an SSE tools/list answer event by event, keeping ids, event names, priming events and retry', async () => {
    const answer = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: LISTED, nextCursor: 'c2' } });
    // The answer's data split over two lines (between members: the line break joins them), a
    // comment, a field SSE does not define, a priming event.
    const cut = answer.indexOf('"result"');
    const sse = `id: prime-1\ndata: \n\n: keep-alive\nretry: 500\n\nevent: message\nid: e-2\nx-extra: y\ndata: ${answer.slice(0, cut)}\ndata: ${answer.slice(cut)}\n\n`;
    await behindRaw({ 'content-type': 'text/event-stream; charset=utf-8' }, sse, async (side) => {
      const res = await rawList(side);
      assert.equal(res.status, 200);
      assert.equal(res.contentType, 'text/event-stream', res.text);
      const filtered = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 's3_get_object' }], nextCursor: 'c2' } });
      assert.equal(res.text, `id: prime-1\ndata: \n\nretry: 500\n\nid: e-2\nevent: message\ndata: ${filtered}\n\n`);
    });
  });

  it('answers an SSE stream whose event data is not JSON, or a compressed answer, with a JSON internal error that names no tool', async () => {
    const listed = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: LISTED } });
    const answers: [Record<string, string>, string | Buffer][] = [
      [{ 'content-type': 'text/event-stream' }, `event: message\ndata: ${listed}\n\ndata: s3_put_object is here\n\n`],
      [{ 'content-type': 'text/event-stream', 'content-encoding': 'gzip' }, gzipSync(`data: ${listed}\n\n`)],
      [{ 'content-type': 'application/json', 'content-encoding': 'br' }, listed],
    ];
    for (const [headers, answer] of answers) {
      await behindRaw(headers, answer, async (side) => {
        const res = await rawList(side);
        assert.equal(res.status, 200);
        assert.equal(res.contentType, 'application/json', JSON.stringify(headers));
        assert.equal(JSON.parse(res.text).error?.code, -32603);
        assert.ok(!res.text.includes('s3_'), res.text);
      });
    }
  });

  it("lists only the caller's tools from a stock MCP SDK server answering in SSE, to the SDK's own client", async () => {
    // A server as the SDK's examples make one: stateless, answers as an event stream (the default).
    const upstream = createServer((req, res) => {
      const server = new McpServer({ name: 'stock', version: '1.0.0' });
      for (const name of ['s3_get_object', 's3_put_object']) {
        server.registerTool(name, { description: name }, () => ({ content: [{ type: 'text', text: `${name} ran` }] }));
      }
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => void server.close());
      void server.connect(transport).then(() => transport.handleRequest(req, res));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const policy = POLICY.replace('methods:', 'methods:\n  initialize: { access: tool_holders }\n  notifications/initialized: { access: tool_holders }');
    const side = await startHarness({ policyFile: writePolicy(policy), sidecar: { upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }, issuer: h.issuer });
    const client = new Client({ name: 'test', version: '1.0.0' });
    try {
      await client.connect(new StreamableHTTPClientTransport(new URL(`${side.sidecar.url}/message`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name), ['s3_get_object']);
      const called = await client.callTool({ name: 's3_get_object', arguments: { key: 'uploads/a' } });
      assert.deepEqual(called.content, [{ type: 'text', text: 's3_get_object ran' }]);
    } finally {
      await client.close();
      await side.close();
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });
});

describe('tools/list answers the sidecar must read whole to filter', () => {
  const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' };
  /** A sidecar on POLICY (upstream timeout 1 s unless told) in front of an upstream that answers tools/list with `answer`. */
  async function behind(answer: (res: ServerResponse) => void, timeoutMs = 1000): Promise<{ side: Harness; token: string; close: () => Promise<void> }> {
    const upstream = createServer((req, res) => {
      req.resume();
      req.on('end', () => answer(res));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const policy = POLICY.replace('methods:', `limits: { upstream_timeout_ms: ${timeoutMs} }\nmethods:`);
    const side = await startHarness({ policyFile: writePolicy(policy), sidecar: { upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` } });
    const token = await side.issuer.sign({ realm_access: { roles: ['validator'] } });
    return {
      side,
      token,
      close: async () => {
        upstream.closeAllConnections();
        await side.close();
        await new Promise((resolve) => upstream.close(resolve));
      },
    };
  }

  // JSON.parse makes `__proto__` an own member, which the filter saw as no result; a client that
  // copies the answer with Object.assign or a merge reads it as the prototype, its result as one.
  it('shows no denied tool hidden under `__proto__` or in a batch within the batch', async () => {
    const listed = JSON.stringify(LISTED);
    const answers = [
      `{"jsonrpc":"2.0","id":1,"__proto__":{"result":{"tools":${listed}}}}`,
      `[{"jsonrpc":"2.0","id":1,"__proto__":{"result":{"tools":${listed}}}}]`,
      `{"jsonrpc":"2.0","id":1,"result":{"__proto__":{"tools":${listed}},"tools":${listed}}}`,
      `[[{"jsonrpc":"2.0","id":1,"result":{"tools":${listed}}}]]`,
    ];
    for (const answer of answers) {
      const t = await behind((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
      try {
        const res = await t.side.call(list, { token: t.token });
        assert.equal(res.status, 200, answer);
        const text = JSON.stringify(res.json);
        assert.ok(!text.includes('s3_put_object'), `${answer} -> ${text}`);
        assert.ok(!text.includes('__proto__'), `${answer} -> ${text}`);
      } finally {
        await t.close();
      }
    }
  });

  // Read whole, it could not be written again (the stack overflowed): a 500 and an internal_error
  // line, as for a bug of the sidecar's, where it is the agent's answer that cannot be read.
  it('answers a list nested deeper than it can read as one it cannot read: the JSON internal error, no 500', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const answer = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"s3_get_object","schema":${deep}},{"name":"s3_put_object"}]}}`;
    const t = await behind((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
    try {
      const res = await t.side.call(list, { token: t.token });
      assert.equal(res.status, 200);
      assert.equal(res.json.error?.code, -32603);
      assert.ok(!JSON.stringify(res.json).includes('s3_'), JSON.stringify(res.json));
      assert.deepEqual(t.side.audit.events('internal_error'), []);
    } finally {
      await t.close();
    }
  });

  it('answers 502 to a tools/list answer whose status is outside 100-599', async () => {
    const t = await behind((res) => res.writeHead(600, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: LISTED } })));
    try {
      const res = await t.side.call(list, { token: t.token });
      assert.equal(res.status, 502);
      assert.equal(res.json.error?.data?.reason, 'upstream.unavailable');
    } finally {
      await t.close();
    }
  });

  it('refuses an answer over 4 MiB with 502 instead of holding it all in memory', async () => {
    const huge = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: LISTED, padding: 'x'.repeat(5 * 1024 * 1024) } });
    const t = await behind((res) => res.writeHead(200, { 'content-type': 'application/json' }).end(huge));
    try {
      const res = await t.side.call(list, { token: t.token });
      assert.equal(res.status, 502, JSON.stringify(res.json).slice(0, 200));
      assert.equal(res.json.error?.code, -32050);
      assert.ok(!JSON.stringify(res.json).includes('s3_'));
    } finally {
      await t.close();
    }
  });

  it('cuts off with 504 an answer still arriving after the upstream timeout, though each part came in time', async () => {
    const t = await behind((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"jsonrpc":"2.0","id":1,"result":{"tools":[');
      const drip = setInterval(() => res.write(' '), 100);
      res.on('close', () => clearInterval(drip));
    });
    try {
      // Without the cut-off the sidecar waits for the answer's end, which never comes.
      const hung = sleep(20_000, undefined, { ref: false }).then(() => assert.fail('no answer within 20 s'));
      const res = await Promise.race([t.side.call(list, { token: t.token }), hung]);
      assert.equal(res.status, 504);
      assert.equal(res.json.error?.code, -32051);
    } finally {
      await t.close();
    }
  });
  it('stops reading the answer from the upstream once the client has gone', async () => {
    let upstreamClosed: Promise<unknown> | undefined;
    const t = await behind((res) => {
      upstreamClosed = once(res, 'close');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"jsonrpc":"2.0","id":1,"result":{"tools":[');
      const drip = setInterval(() => res.write(' '), 100);
      res.on('close', () => clearInterval(drip));
    }, 60_000);
    try {
      const client = new AbortController();
      const call = t.side.call(list, { token: t.token, signal: client.signal }).catch(() => 'aborted');
      while (upstreamClosed === undefined) await sleep(20);
      client.abort();
      assert.equal(await call, 'aborted');
      // Within the 60 s upstream timeout: only the client leaving can end it.
      const hung = sleep(20_000, undefined, { ref: false }).then(() => assert.fail('the upstream is still being read 20 s after the client left'));
      await Promise.race([upstreamClosed, hung]);
    } finally {
      await t.close();
    }
  });
});

describe('tools/list shows only tools a tools/call could reach', () => {
  const rbac = join(tempDirSync('rbac'), 'rbac.yaml');
  writeFileSync(rbac, `roles:
  admin: { allow: ["*"], tools: { allow: ["*"] } }
  lister: { allow: [tools/list], deny: [tools/call], tools: { allow: [s3_get_object] } }
`);
  const service = (methods: string, tools: string): string => `service: mcp-visible-test
rbac: ${rbac}
upstream: http://127.0.0.1:1
auth: { issuer: http://placeholder/realms/test, audience: ca-a2a-agents }
methods:
${methods}${tools}`;
  const cases: { name: string; policy: string; role: string }[] = [
    { name: 'a role denied tools/call itself', role: 'lister', policy: service('  tools/list: { access: rbac }\n  tools/call: { access: per_tool }\n', 'tools:\n  s3_get_object: {}\n') },
    { name: 'a service that does not serve tools/call', role: 'admin', policy: service('  tools/list: { access: rbac }\n', 'tools:\n  s3_get_object: {}\n') },
    { name: 'a service that names no tool', role: 'admin', policy: service('  tools/list: { access: rbac }\n  tools/call: { access: per_tool }\n', '') },
  ];
  for (const { name, policy, role } of cases) {
    it(`shows no tool to ${name}`, async () => {
      const h = await startHarness({ policyFile: writePolicy(policy) });
      try {
        h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: { tools: LISTED } } }));
        const res = await h.call({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token: await h.issuer.sign({ realm_access: { roles: [role] } }) });
        assert.equal(res.status, 200, JSON.stringify(res.json));
        assert.deepEqual(res.json.result, { tools: [] });
      } finally {
        await h.close();
      }
    });
  }
});

describe('tools/list timers', () => {
  it('leaves no timer of the upstream timeout running once a tools/list answer is sent', async () => {
    // A distinctive upstream timeout, to tell the sidecar's deadline from every other timer.
    const timeoutMs = 43_210;
    const h = await startHarness({ policyFile: writePolicy(POLICY.replace('methods:', `limits: { upstream_timeout_ms: ${timeoutMs} }\nmethods:`)) });
    const live = new Map<number, { _idleTimeout?: number }>();
    const hook = createHook({
      init(id, type, _trigger, resource) {
        if (type === 'Timeout') live.set(id, resource as { _idleTimeout?: number });
      },
      destroy(id) {
        live.delete(id);
      },
    });
    try {
      const token = await h.issuer.sign({ realm_access: { roles: ['validator'] } });
      h.upstream.respond(() => ({ body: { jsonrpc: '2.0', id: 1, result: { tools: LISTED } } }));
      hook.enable();
      const res = await h.call({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token });
      assert.deepEqual(res.json.result, { tools: [{ name: 's3_get_object' }] });
      // A cleared timer's destroy hook runs from the immediate queue.
      await new Promise(setImmediate);
      await new Promise(setImmediate);
      const deadlines = [...live.values()].filter((timer) => timer._idleTimeout === timeoutMs);
      // Before: AbortSignal.timeout's timer, which nothing can clear, ran on for 43 s after the answer.
      assert.equal(deadlines.length, 0, 'the deadline timer outlived its request');
    } finally {
      hook.disable();
      await h.close();
    }
  });
});

describe('tools/list from an upstream that compresses its answers', () => {
  it('filters the list for a client that accepts gzip, as fetch does, and answers it uncompressed', async () => {
    // As express's compression() does: gzip whenever the request accepts it.
    const upstream = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: LISTED } }));
        if (/\bgzip\b/.test(req.headers['accept-encoding'] ?? '') || req.headers['x-always-gzip'] !== undefined) res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(body));
        else res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const side = await startHarness({ policyFile: writePolicy(POLICY), sidecar: { upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` } });
    try {
      const token = await side.issuer.sign({ realm_access: { roles: ['validator'] } });
      const res = await side.call({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token, headers: { 'accept-encoding': 'gzip, deflate, br' } });
      assert.equal(res.status, 200);
      // Before: the gzip bytes could not be read as JSON, so every such list was an internal error
      // (sent with the upstream's Content-Encoding: gzip, which the client could not decode either).
      assert.equal(res.headers['content-encoding'], undefined);
      assert.deepEqual(res.json.result, { tools: [{ name: 's3_get_object' }] }, JSON.stringify(res.json));
      // An upstream that compresses anyway: its list cannot be read, and the error is not labelled gzip.
      const forced = await side.call({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { token, headers: { 'x-always-gzip': '1' } });
      assert.equal(forced.headers['content-encoding'], undefined);
      assert.equal(forced.json.error?.code, -32603);
    } finally {
      await side.close();
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });
});
