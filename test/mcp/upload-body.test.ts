import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createDiskStore } from '../../mcp/backends/disk-store.js';
import type { ObjectStore } from '../../mcp/backends/object-store.js';
import { bodyLimit, startMcpGateway } from '../../mcp/gateway.js';
import type { McpGateway } from '../../mcp/gateway.js';
import { createGatewayMetrics } from '../../mcp/metrics.js';
import { DEFAULT_KEY_POLICY } from '../../mcp/object-keys.js';
import { createResilientBackend } from '../../mcp/resilience.js';
import { S3_TOOLS } from '../../mcp/tools/s3-tools.js';
import type { ToolDeps } from '../../mcp/tools/tool-types.js';
import { backendOptions, captureLogger, metricValue, tempDir } from './helpers.js';

/** Sends `head` then each of `parts` on one connection, and resolves the raw answer once it is whole (or the server closes). */
function rawRequest(port: number, head: string, parts: (string | Buffer)[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => {
      answer += d.toString('latin1');
      // One answer with a Content-Length is whole once its body is in.
      const m = /\r\ncontent-length: (\d+)\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/i.exec(answer);
      if (m && Buffer.byteLength(m[2] ?? '', 'latin1') >= Number(m[1])) {
        socket.destroy();
        resolve(answer);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    void (async () => {
      socket.write(head);
      for (const p of parts) {
        // Each part its own packet: the gateway gets the body in several chunks.
        await new Promise<void>((ok) => socket.write(p, () => ok()));
        await new Promise<void>((ok) => setImmediate(ok));
      }
    })();
  });
}

/**
 * Writes `bytes` on one keep-alive connection and collects every answer until the gateway closes
 * it. A first answer that does not say `connection: close` ends the exchange there: a connection
 * kept open would never close.
 */
function exchange(port: number, bytes: string): Promise<{ answer: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    let closedByServer = false;
    socket.on('data', (d: Buffer) => {
      answer += d.toString('latin1');
      const head = answer.split('\r\n\r\n')[0] ?? '';
      if (answer.includes('\r\n\r\n') && !/\r\nconnection: close\r\n/i.test(head)) socket.destroy();
    });
    socket.on('end', () => (closedByServer = true));
    // The server may reset what it did not read; what it answered before is in `answer`.
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ answer, closedByServer }));
    socket.write(bytes);
  });
}

describe('s3_put_object and the arguments it is given', () => {
  let dir = '';
  let store: ObjectStore;
  const { logger } = captureLogger();
  const metrics = createGatewayMetrics(() => ({ total: 0, idle: 0, waiting: 0 }));
  const s3 = createResilientBackend('s3', () => false, {}, metrics, logger);
  before(async () => {
    dir = await tempDir();
    store = await createDiskStore(join(dir, 'bucket'), { logger });
  });
  after(async () => {
    s3.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('lets go of the base64 text before the bucket takes the bytes, and stores them whole', async () => {
    const bytes = Buffer.from('%PDF-1.7 '.repeat(1000));
    const args: Record<string, unknown> = { key: 'uploads/held.pdf', content_base64: bytes.toString('base64'), content_type: 'application/pdf' };
    const seen: boolean[] = [];
    // The real store, watched: what the call still holds when the bucket is asked.
    const watched: ObjectStore = { ...store, put: (...put) => (seen.push('content_base64' in args), store.put(...put)) };
    const deps = { store: watched, s3, keys: DEFAULT_KEY_POLICY, maxObjectBytes: 1 << 20 } as unknown as ToolDeps;
    const result = (await S3_TOOLS.s3_put_object!.handler(args, deps)) as { size: number; sha256: string };
    assert.deepEqual(seen, [false]);
    assert.equal(result.size, bytes.length);
    assert.equal(result.sha256, createHash('sha256').update(bytes).digest('hex'));
    const got = await store.get('uploads/held.pdf', 1 << 20, new AbortController().signal);
    const chunks: Buffer[] = [];
    for await (const c of got!.body) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), bytes);
  });
});

describe('request bodies of /call_tool', () => {
  let gw: McpGateway;
  const cleanups: (() => Promise<void>)[] = [];
  const log = captureLogger();
  before(async () => {
    const options = await backendOptions({ s3: false }, cleanups);
    // Bodies up to 4/3 of 3 KiB plus 64 KiB.
    gw = await startMcpGateway({ port: 0, ...options, s3: { maxObjectBytes: 3 * 1024 }, logger: log.logger });
    cleanups.unshift(() => gw.close());
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  const bytes = Buffer.from('0123456789abcdef'.repeat(150));
  const body = Buffer.from(JSON.stringify({ tool: 's3_put_object', arguments: { key: 'uploads/parts.bin', content_base64: bytes.toString('base64'), content_type: 'application/octet-stream' } }));
  const parts = [body.subarray(0, 7), body.subarray(7, 1000), body.subarray(1000, 1001), body.subarray(1001)];
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  it('puts an object whose body came with a Content-Length in several chunks, byte for byte', async () => {
    const head = `POST /call_tool HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    const answer = await rawRequest(gw.port, head, parts);
    assert.match(answer, /^HTTP\/1.1 200 /);
    assert.ok(answer.includes(`"sha256":"${sha256}"`), answer);
  });

  it('puts an object whose body came chunked, byte for byte', async () => {
    const head = 'POST /call_tool HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n';
    const chunked = [...parts.map((p) => Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')])), '0\r\n\r\n'];
    const answer = await rawRequest(gw.port, head, chunked);
    assert.match(answer, /^HTTP\/1.1 200 /);
    assert.ok(answer.includes(`"sha256":"${sha256}"`), answer);
  });

  // A request the client sends after its refused body, or inside it, must not be answered: on a
  // connection kept open the gateway would read one as the other.
  const health = 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n';

  it('closes the connection after refusing a body whose Content-Length is over the cap; a request inside the body is never answered', async () => {
    const head = `POST /call_tool HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${70 * 1024}\r\n\r\n`;
    const { answer, closedByServer } = await exchange(gw.port, head + health);
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.match(answer, /"code":"too_large"/);
    assert.equal(answer.match(/HTTP\/1.1 /g)?.length, 1, answer);
    assert.equal(closedByServer, true);
  });

  it('closes the connection after refusing a chunked body past the cap; the request sent after it is never answered', async () => {
    const head = 'POST /call_tool HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n';
    const big = 'y'.repeat(70 * 1024);
    const { answer, closedByServer } = await exchange(gw.port, `${head}${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n${health}`);
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.equal(answer.match(/HTTP\/1.1 /g)?.length, 1, answer);
    assert.equal(closedByServer, true);
  });

  it('closes the connection after refusing an MCP body over the cap (JSON-RPC -32600)', async () => {
    const head = `POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: ${70 * 1024}\r\n\r\n`;
    const { answer, closedByServer } = await exchange(gw.port, head + health);
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.match(answer, /"code":-32600/);
    assert.equal(answer.match(/HTTP\/1.1 /g)?.length, 1, answer);
    assert.equal(closedByServer, true);
  });

  it('keeps the connection of a request whose whole body was read, even when the call itself is refused 413', async () => {
    const body = JSON.stringify({ tool: 's3_put_object', arguments: { key: 'uploads/big.bin', content_base64: Buffer.alloc(4 * 1024).toString('base64'), content_type: 'application/octet-stream' } });
    const head = `POST /call_tool HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
    const { answer } = await exchange(gw.port, head + body);
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.doesNotMatch(answer, /\r\nconnection: close\r\n/i);
  });

  // Any client may leave mid-upload: no failure of the gateway, and no way for a client to write
  // error lines. /call_tool logged it as mcp_http_error with a stack; /mcp, nothing.
  for (const [path, transport] of [['/call_tool', 'rest'], ['/mcp', 'mcp']] as const) {
    it(`counts and logs at info, without a stack, a client that leaves mid-body on ${path}`, async () => {
      const requestId = `req-gone-${transport}`;
      const seen = log.lines.length;
      const socket = connect(gw.port, '127.0.0.1');
      socket.on('error', () => undefined);
      const head = `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nx-ca-a2a-request-id: ${requestId}\r\ncontent-length: 1000\r\n\r\n`;
      await new Promise<void>((ok) => socket.write(`${head}{"tool":`, () => ok()));
      socket.destroy();
      while (log.lines.length === seen) await nextTurn();
      const said = log.lines.slice(seen);
      assert.deepEqual(said.map((l) => [l.event_type, l.level, l.transport, l.stage, l.request_id, 'err' in l]), [['mcp_client_closed', 30, transport, 'request', requestId, false]]);
      assert.equal(await metricValue(gw.url, 'ca_a2a_mcp_client_closed_total', { transport, stage: 'request' }), 1);
    });
  }

  it('refuses a body whose Content-Length is over the cap with 413 before any of it arrives', async () => {
    const head = `POST /call_tool HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${70 * 1024}\r\n\r\n`;
    // The body never comes: the answer is owed to the header alone.
    const answer = await rawRequest(gw.port, head, ['{"tool":']);
    assert.match(answer, /^HTTP\/1.1 413 /);
    assert.match(answer, /"code":"too_large"/);
  });
});

// The body cap counts an upload's base64 as sent plain: a client escaping its `/` as `\/` (PHP's
// json_encode by default) is refused near the cap rather than the cap doubled for every request
// (docs/mcp.md, S3). An object of 0xFF bytes is `/` throughout in base64: the worst case.
describe('the body cap and an upload at the object cap', () => {
  let gw: McpGateway;
  const cleanups: (() => Promise<void>)[] = [];
  // Large enough that the base64 text, not the 64 KiB of slack, makes the body cap.
  const cap = 384 * 1024;
  before(async () => {
    const options = await backendOptions({ s3: false }, cleanups);
    gw = await startMcpGateway({ port: 0, ...options, s3: { maxObjectBytes: cap }, logger: captureLogger().logger });
    cleanups.unshift(() => gw.close());
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  const put = (body: string) => fetch(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const plain = JSON.stringify({ tool: 's3_put_object', arguments: { key: 'uploads/cap.bin', content_base64: Buffer.alloc(cap, 0xff).toString('base64'), content_type: 'application/octet-stream' } });

  it('takes an upload at the cap written plain', async () => {
    const res = await put(plain);
    assert.equal(res.status, 200, await res.text());
  });

  it('refuses it 413 too_large with every / escaped, the body then past the cap', async () => {
    const escaped = plain.replaceAll('/', '\\/');
    assert.equal(JSON.stringify(JSON.parse(escaped)), plain, 'the same JSON value');
    assert.ok(Buffer.byteLength(escaped) > bodyLimit(cap));
    const res = await put(escaped);
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'too_large');
  });
});
