import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readlink, stat, truncate } from 'node:fs/promises';
import { createServer as createHttpServer, request } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startMcpGateway, type McpGateway } from '../../mcp/gateway.js';
import { base64Of } from '../../mcp/streamed-text.js';
import { backendOptions, callTool, captureLogger, metricValue, tieTogether } from './helpers.js';

const BIG = 1024 * 1024 + 1; // not a multiple of 3: the base64 tail is padded

/**
 * A TCP relay in front of the S3 server that ends each connection once `budget` bytes of answers
 * have gone through it: a body cut off midway, as a dropped connection leaves it.
 */
async function cuttingRelay(endpoint: string, budget: number): Promise<{ endpoint: string; close(): Promise<void> }> {
  const target = new URL(endpoint);
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    tieTogether(sockets, client, upstream);
    client.pipe(upstream);
    let sent = 0;
    upstream.on('data', (chunk: Buffer) => {
      const room = budget - sent;
      sent += chunk.length;
      if (chunk.length < room) {
        client.write(chunk);
        return;
      }
      client.end(chunk.subarray(0, Math.max(room, 0)));
      upstream.destroy();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/**
 * A TCP relay in front of the S3 server for an MCP batch of object reads: every answer stops
 * after its first `budget` bytes and holds, the answer to the request naming `firstKey` before
 * any other. `drop()` ends the held answers but that one, as a dropped connection would, and
 * resolves once the gateway has closed their connections.
 */
async function holdingRelay(endpoint: string, firstKey: string, budget: number): Promise<{ endpoint: string; drop(): Promise<void>; close(): Promise<void> }> {
  const target = new URL(endpoint);
  const sockets = new Set<Socket>();
  const held: Socket[] = [];
  let firstBegun: () => void = () => undefined;
  const begun = new Promise<void>((ok) => (firstBegun = ok));
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    tieTogether(sockets, client, upstream);
    upstream.pause();
    client.once('data', (request: Buffer) => {
      const first = request.toString('latin1').includes(firstKey);
      upstream.write(request);
      client.pipe(upstream);
      let sent = 0;
      upstream.on('data', (chunk: Buffer) => {
        const room = budget - sent;
        sent += chunk.length;
        if (chunk.length < room) return void client.write(chunk);
        client.write(chunk.subarray(0, Math.max(room, 0)));
        upstream.pause();
        upstream.removeAllListeners('data');
        if (first) firstBegun();
        else held.push(client);
      });
      if (first) upstream.resume();
      else void begun.then(() => upstream.resume());
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async drop() {
      await Promise.all(held.map((client) => new Promise<void>((ok) => {
        client.once('close', () => ok());
        client.end();
      })));
    },
    async close() {
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/**
 * An HTTP relay in front of the S3 server that sends every answer on chunked, without its
 * Content-Length, as some S3-compatible servers and proxies answer GetObject.
 */
async function chunkingRelay(endpoint: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  const target = new URL(endpoint);
  const server = createHttpServer((req, res) => {
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const { 'content-length': _length, ...headers } = answer.headers;
      res.writeHead(answer.statusCode ?? 502, req.method === 'HEAD' ? answer.headers : { ...headers, 'transfer-encoding': 'chunked' });
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      server.closeAllConnections();
      await closed;
    },
  };
}

describe('base64Of', () => {
  it('encodes any split of any bytes exactly as Buffer#toString("base64") of the whole', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 12 }), async (chunks) => {
      const bytes = chunks.reduce((n, c) => n + c.length, 0);
      const streamed = base64Of(Readable.from(chunks.map((c) => Buffer.from(c))), bytes);
      const text = (await buffer(streamed.stream)).toString('latin1');
      assert.equal(text, Buffer.concat(chunks).toString('base64'));
    }));
  });

  it('fails the text stream when the source fails', async () => {
    const source = new Readable({ read() {} });
    const streamed = base64Of(source, 8);
    const reading = buffer(streamed.stream);
    source.push(Buffer.from('abcd'));
    source.destroy(new Error('bucket went away'));
    await assert.rejects(reading, /bucket went away/);
  });

  it('keeps a failure that comes before anyone reads for its reader, never an uncaught exception', async () => {
    const source = new Readable({ read() {} });
    const streamed = base64Of(source, 8);
    source.push(Buffer.from('abcd'));
    source.destroy(new Error('bucket went away'));
    await setImmediate();
    await assert.rejects(buffer(streamed.stream), /bucket went away/);
  });

  it('lets go of its source when the text is destroyed before its end (a reader gone, a budget passed)', async () => {
    const source = new Readable({ read() {} });
    const streamed = base64Of(source, 8);
    source.push(Buffer.from('abcd'));
    streamed.stream.destroy();
    await setImmediate();
    assert.equal(source.destroyed, true);
  });

  it('fails the text when the source ends short of, or runs past, the size the answer states', async () => {
    await assert.rejects(buffer(base64Of(Readable.from([Buffer.from('abc')]), 4).stream), /ended after 3 of its 4 bytes/);
    await assert.rejects(buffer(base64Of(Readable.from([Buffer.from('abcde')]), 4).stream), /longer than its 4 bytes/);
  });
});

for (const backend of [{ name: 's3 (s3rver)', s3: true }, { name: 'local disk', s3: false }]) {
  describe(`s3_get_object streams on /call_tool (${backend.name})`, () => {
    let gw: McpGateway;
    const bytes = randomBytes(BIG);
    const cleanups: (() => Promise<void>)[] = [];
    const log = captureLogger();
    let options: NonNullable<Parameters<typeof startMcpGateway>[0]>;

    before(async () => {
      const { dataDir, databaseUrl, s3 } = await backendOptions(backend, cleanups);
      options = { port: 0, dataDir, databaseUrl, s3: { ...s3, maxObjectBytes: 2 * BIG }, logger: log.logger };
      gw = await startMcpGateway(options);
      cleanups.unshift(() => gw.close());
      const put = await callTool(gw.url, 's3_put_object', { key: 'uploads/big.bin', content_base64: bytes.toString('base64'), content_type: 'application/octet-stream' });
      assert.equal(put.status, 200, JSON.stringify(put.body));
    });
    after(async () => {
      for (const c of cleanups) await c();
    });

    it('answers chunked, without Content-Length, with every byte and the metadata around them', async () => {
      const res = await fetch(`${gw.url}/call_tool`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/big.bin' } }),
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), null);
      assert.equal(res.headers.get('transfer-encoding'), 'chunked');
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(body.success, true);
      assert.equal(body.size, BIG);
      assert.equal(body.content_type, 'application/octet-stream');
      assert.ok(Buffer.from(String(body.content_base64), 'base64').equals(bytes));
    });

    /** Asks for the big object and hangs up at the first bytes of the answer. */
    const hangUpMidway = () =>
      new Promise<void>((resolve, reject) => {
        const req = request(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
        req.end(JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/big.bin' } }));
      });

    it('a client that hangs up midway costs nothing: the gateway answers the next call whole', async () => {
      await hangUpMidway();
      const again = await callTool(gw.url, 's3_get_object', { key: 'uploads/big.bin' });
      assert.equal(again.status, 200);
      assert.ok(Buffer.from(String(again.body.content_base64), 'base64').equals(bytes));
    });

    // The answer's source stays open, paused, unless the text's end lets go of it: a file handle
    // (or a bucket connection) per client gone, until the process runs out of them.
    if (!backend.s3) it('closes the object file of an answer whose client hung up midway', { timeout: 30_000 }, async () => {
      const bucket = join(options.dataDir ?? '', 'bucket');
      const openInBucket = async () => {
        const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
        return targets.filter((t) => t.startsWith(bucket)).length;
      };
      for (let i = 0; i < 3; i++) await hangUpMidway();
      // Each hang-up reaches the gateway on its own turn; the files close once it has seen them all.
      while ((await openInBucket()) > 0) await sleep(20);
    });

    // A file of the local bucket holding fewer bytes than its header says (a write cut short, a
    // damaged disk) is refused when opened, before any byte of the answer goes out.
    if (!backend.s3) it('refuses a stored object shorter than its metadata with a whole 502 backend_error answer, never a cut-off one', async () => {
      const key = 'uploads/cut.bin';
      await callTool(gw.url, 's3_put_object', { key, content_base64: bytes.subarray(0, 300_000).toString('base64'), content_type: 'application/octet-stream' });
      const file = join(options.dataDir ?? '', 'bucket', `${createHash('sha256').update(key).digest('hex')}.obj`);
      await truncate(file, (await stat(file)).size - 1000);
      const got = await callTool(gw.url, 's3_get_object', { key });
      assert.equal(got.status, 502);
      assert.deepEqual(got.body.error, { code: 'backend_error', message: 'the bucket holds this object but cannot read it', backend: 's3' });
    });

    // An S3 answer whose connection drops midway: the headers (and a 200) went out before the
    // body was known to be short, so the answer can only be cut off.
    if (backend.s3) {
      let cut: McpGateway;
      let relay: { close(): Promise<void> } | undefined;
      before(async () => {
        await callTool(gw.url, 's3_put_object', { key: 'uploads/cut.bin', content_base64: bytes.subarray(0, 300_000).toString('base64'), content_type: 'application/octet-stream' });
        const cutting = await cuttingRelay(String(options.s3?.endpoint), 100_000);
        relay = cutting;
        cut = await startMcpGateway({ ...options, s3: { ...options.s3, endpoint: cutting.endpoint } });
      });
      after(async () => {
        await cut?.close();
        await relay?.close();
      });

      // Counted and audited as the same failure is over MCP (below): an object read that failed
      // midway was only a warning on /call_tool, in no metric.
      it('cuts the answer off (never a whole JSON body with wrong bytes), counts and logs it when the object ends short midway', async () => {
        const failed = { tool: 's3_get_object', code: 'backend_error' };
        const before = await metricValue(cut.url, 'ca_a2a_mcp_tool_errors_total', failed);
        const res = await fetch(`${cut.url}/call_tool`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': 'req-cut' },
          body: JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/cut.bin' } }),
        });
        assert.equal(res.status, 200, 'the headers went out before the shortfall was known');
        await assert.rejects(res.text(), 'the body ends in a reset, not in a complete answer');
        assert.equal(await metricValue(cut.url, 'ca_a2a_mcp_tool_errors_total', failed), before + 1);
        const lines = log.lines.filter((l) => l.request_id === 'req-cut' && l.event_type !== 'mcp_tool_call');
        assert.deepEqual(
          lines.map((l) => [l.event_type, l.level, l.tool, l.transport, l.outcome, l.backend]),
          [['mcp_tool_result_refused', 30, 's3_get_object', 'rest', 'backend_error', 's3']],
        );
        assert.equal(await metricValue(cut.url, 'ca_a2a_mcp_client_closed_total', { transport: 'rest', stage: 'answer' }), 0, 'the bucket failed, not the client');
      });

      it('answers an object that ends short midway over MCP with a backend_error tool result, counted and logged, no internal message', async () => {
        const res = await fetch(`${cut.url}/mcp`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-ca-a2a-request-id': 'req-cut-mcp' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 's3_get_object', arguments: { key: 'uploads/cut.bin' } } }),
        });
        const answer = (await res.json()) as { error?: unknown; result?: { isError?: boolean; structuredContent?: { error?: { code: string; message: string } } } };
        assert.equal(answer.error, undefined, JSON.stringify(answer));
        assert.equal(answer.result?.isError, true);
        assert.equal(answer.result?.structuredContent?.error?.code, 'backend_error');
        assert.doesNotMatch(JSON.stringify(answer), /aborted|ECONNRESET|ended after|300000/);
        const line = log.lines.find((l) => l.event_type === 'mcp_tool_result_refused' && l.request_id === 'req-cut-mcp');
        assert.equal(line?.outcome, 'backend_error');
      });
    }

    // A client that leaves while an object streams to it is no failure of the gateway nor of the
    // bucket: it was a warning (mcp_stream_failed) that any client could write. The bucket's
    // answer is held after its first bytes, so the gateway's answer is midway when the client goes.
    if (backend.s3) it('counts and logs at info a client that leaves while its object streams, as no backend failure', async () => {
      const relay = await holdingRelay(String(options.s3?.endpoint), '/uploads/big.bin', 20_000);
      const held = await startMcpGateway({ ...options, s3: { ...options.s3, endpoint: relay.endpoint } });
      try {
        await new Promise<void>((resolve, reject) => {
          const req = request(`${held.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': 'req-gone' } }, (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          });
          req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
          req.end(JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/big.bin' } }));
        });
        const said = () => log.lines.filter((l) => l.request_id === 'req-gone' && l.event_type !== 'mcp_tool_call');
        while (said().length === 0) await setImmediate();
        assert.deepEqual(said().map((l) => [l.event_type, l.level, l.transport, l.stage, l.tool, 'err' in l]), [['mcp_client_closed', 30, 'rest', 'answer', 's3_get_object', false]]);
        assert.equal(await metricValue(held.url, 'ca_a2a_mcp_client_closed_total', { transport: 'rest', stage: 'answer' }), 1);
        assert.equal(await metricValue(held.url, 'ca_a2a_mcp_tool_errors_total', { tool: 's3_get_object', code: 'backend_error' }), 0);
      } finally {
        await held.close();
        await relay.close();
      }
    });

    // Over MCP a batch's object reads are read one after the other: a later one waits its turn
    // with its bucket connection open, and that connection may drop meanwhile.
    if (backend.s3) it('answers an MCP batch whose waiting object read loses its connection with backend_error for both, and keeps serving', async () => {
      for (const key of ['uploads/stuck.bin', 'uploads/dropped.bin']) {
        const put = await callTool(gw.url, 's3_put_object', { key, content_base64: bytes.subarray(0, 300_000).toString('base64'), content_type: 'application/octet-stream' });
        assert.equal(put.status, 200);
      }
      const relay = await holdingRelay(String(options.s3?.endpoint), '/uploads/stuck.bin', 5_000);
      const batched = await startMcpGateway({ ...options, s3: { ...options.s3, endpoint: relay.endpoint } });
      try {
        const calls = ['stuck', 'dropped'].map((name, id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 's3_get_object', arguments: { key: `uploads/${name}.bin` } } }));
        const answering = fetch(`${batched.url}/mcp`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-ca-a2a-request-id': 'req-batch-drop' },
          body: JSON.stringify(calls),
        });
        // Both reads opened (their calls are audited once the object is open), the first one read.
        while (log.lines.filter((l) => l.event_type === 'mcp_tool_call' && l.request_id === 'req-batch-drop').length < 2) await setImmediate();
        await relay.drop();
        // The stuck read fails too once the bucket's connections are gone: the answer can go out.
        await relay.close();
        const answers = (await (await answering).json()) as { id: number; result?: { isError?: boolean; structuredContent?: { error?: { code: string } } } }[];
        assert.deepEqual(answers.map((a) => [a.id, a.result?.isError, a.result?.structuredContent?.error?.code]).sort(), [[0, true, 'backend_error'], [1, true, 'backend_error']]);
        assert.equal((await fetch(`${batched.url}/health`)).status, 200);
      } finally {
        await batched.close();
        await relay.close();
      }
    });

    // The S3 client's HTTP agent held 50 sockets by default: 50 answers their readers did not take
    // held them all, and every other bucket call waited for one until it timed out (opening the
    // breaker for every caller).
    if (backend.s3) it('keeps answering other bucket calls, breaker closed, while 60 object answers wait for readers that do not read', async () => {
      const large = await startMcpGateway({ ...options, s3: { ...options.s3, maxObjectBytes: 10 * 1024 * 1024 } });
      const readers: Socket[] = [];
      try {
        const put = await callTool(large.url, 's3_put_object', { key: 'uploads/large.bin', content_base64: randomBytes(10 * 1024 * 1024).toString('base64'), content_type: 'application/octet-stream' });
        assert.equal(put.status, 200);
        const body = JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/large.bin' } });
        for (let i = 0; i < 60; i++) {
          const reader = connect(Number(new URL(large.url).port), '127.0.0.1');
          reader.on('error', () => undefined);
          reader.pause();
          reader.write(`POST /call_tool HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\nx-ca-a2a-request-id: req-unread\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
          readers.push(reader);
        }
        const opened = () => log.lines.filter((l) => l.event_type === 'mcp_tool_call' && l.request_id === 'req-unread');
        while (opened().length < 60) await setImmediate();
        assert.deepEqual(new Set(opened().map((l) => l.outcome)), new Set(['success']), 'each object was opened');
        const other = await callTool(large.url, 's3_get_object', { key: 'uploads/cut.bin' });
        assert.equal(other.status, 200, JSON.stringify(other.body));
        const health = (await (await fetch(`${large.url}/health`)).json()) as { backends: { s3: { breaker: string } } };
        assert.equal(health.backends.s3.breaker, 'closed');
      } finally {
        for (const reader of readers) reader.destroy();
        await large.close();
      }
    });

    // Without a Content-Length the object's size was taken as 0: the answer said size 0 and was
    // cut off at the first byte, and no object was ever refused as too large.
    if (backend.s3) it('reads an object the bucket answers chunked, without a Content-Length, whole; refuses one over the limit with 413', async () => {
      const relay = await chunkingRelay(String(options.s3?.endpoint));
      const chunked = await startMcpGateway({ ...options, s3: { ...options.s3, endpoint: relay.endpoint } });
      const strict = await startMcpGateway({ ...options, s3: { ...options.s3, endpoint: relay.endpoint, maxObjectBytes: 1024 } });
      try {
        const got = await callTool(chunked.url, 's3_get_object', { key: 'uploads/big.bin' });
        assert.equal(got.status, 200, JSON.stringify(got.body).slice(0, 300));
        assert.equal(got.body.size, BIG);
        assert.ok(Buffer.from(String(got.body.content_base64), 'base64').equals(bytes));
        const tooBig = await callTool(strict.url, 's3_get_object', { key: 'uploads/big.bin' });
        assert.equal(tooBig.status, 413);
        assert.deepEqual(tooBig.body.error, { code: 'too_large', message: 'object is over the limit of 1024 bytes' });
        const small = Buffer.from('a small object');
        const put = await callTool(strict.url, 's3_put_object', { key: 'uploads/small.txt', content_base64: small.toString('base64'), content_type: 'text/plain' });
        assert.equal(put.status, 200);
        const smallGot = await callTool(strict.url, 's3_get_object', { key: 'uploads/small.txt' });
        assert.equal(smallGot.body.size, small.length);
        assert.equal(Buffer.from(String(smallGot.body.content_base64), 'base64').toString(), 'a small object');
      } finally {
        await Promise.all([chunked.close(), strict.close()]);
        await relay.close();
      }
    });

    it('refuses an object over the limit before streaming any of it (413 too_large), and a missing key (404)', async () => {
      const strict = await startMcpGateway({ ...options, s3: { ...(options.s3 ?? {}), maxObjectBytes: 1024 } });
      try {
        const tooBig = await callTool(strict.url, 's3_get_object', { key: 'uploads/big.bin' });
        assert.equal(tooBig.status, 413);
        assert.equal(tooBig.body.error?.code, 'too_large');
        const missing = await callTool(strict.url, 's3_get_object', { key: 'uploads/none.bin' });
        assert.equal(missing.status, 404);
        assert.equal(missing.body.error?.code, 'not_found');
      } finally {
        await strict.close();
      }
    });
  });
}
