import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { stat, truncate } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startMcpGateway, type McpGateway } from '../../mcp/gateway.js';
import { base64Of } from '../../mcp/streamed-text.js';
import { backendOptions, callTool, captureLogger } from './helpers.js';

const BIG = 1024 * 1024 + 1; // not a multiple of 3: the base64 tail is padded

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

    it('a client that hangs up midway costs nothing: the gateway answers the next call whole', async () => {
      await new Promise<void>((resolve, reject) => {
        const req = request(`${gw.url}/call_tool`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
        req.end(JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/big.bin' } }));
      });
      const again = await callTool(gw.url, 's3_get_object', { key: 'uploads/big.bin' });
      assert.equal(again.status, 200);
      assert.ok(Buffer.from(String(again.body.content_base64), 'base64').equals(bytes));
    });

    /** Puts `size` bytes under `key` in the local bucket, then cuts `missing` off its file: metadata and bytes disagree. */
    const putShort = async (key: string, size: number, missing: number) => {
      await callTool(gw.url, 's3_put_object', { key, content_base64: bytes.subarray(0, size).toString('base64'), content_type: 'application/octet-stream' });
      const file = join(options.dataDir ?? '', 'bucket', `${createHash('sha256').update(key).digest('hex')}.obj`);
      await truncate(file, (await stat(file)).size - missing);
    };

    // The local bucket's metadata can disagree with its bytes (a damaged file); an S3 body is
    // framed by Content-Length, where a short one is a socket error instead.
    if (!backend.s3) it('cuts the answer off (never a whole JSON body with wrong bytes) and logs it when the stored object is shorter than its metadata', async () => {
      await putShort('uploads/cut.bin', 300_000, 1000);
      const res = await fetch(`${gw.url}/call_tool`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-ca-a2a-request-id': 'req-cut' },
        body: JSON.stringify({ tool: 's3_get_object', arguments: { key: 'uploads/cut.bin' } }),
      });
      assert.equal(res.status, 200, 'the headers went out before the shortfall was known');
      await assert.rejects(res.text(), 'the body ends in a reset, not in a complete answer');
      const line = log.lines.find((l) => l.event_type === 'mcp_stream_failed' && l.request_id === 'req-cut');
      assert.match(String(line?.err), /ended after 299000 of its 300000 bytes/);
    });

    if (!backend.s3) it('answers a short stored object over MCP with a backend_error tool result, counted and logged, no internal message', async () => {
      await putShort('uploads/cut-mcp.bin', 3000, 10);
      const res = await fetch(`${gw.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-ca-a2a-request-id': 'req-cut-mcp' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 's3_get_object', arguments: { key: 'uploads/cut-mcp.bin' } } }),
      });
      const answer = (await res.json()) as { error?: unknown; result?: { isError?: boolean; structuredContent?: { error?: { code: string; message: string } } } };
      assert.equal(answer.error, undefined, JSON.stringify(answer));
      assert.equal(answer.result?.isError, true);
      assert.equal(answer.result?.structuredContent?.error?.code, 'backend_error');
      assert.doesNotMatch(JSON.stringify(answer), /2990|ended after/);
      const line = log.lines.find((l) => l.event_type === 'mcp_tool_result_refused' && l.request_id === 'req-cut-mcp');
      assert.equal(line?.outcome, 'backend_error');
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
