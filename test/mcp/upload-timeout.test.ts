import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { startMcpGateway, type McpGateway } from '../../mcp/gateway.js';
import { backendOptions, callTool, captureLogger } from './helpers.js';

/**
 * An HTTP relay in front of the S3 server, a slow link at the test's command: each PUT waits,
 * its body unsent, until `release()`; a GET of `stalledKey` is never answered.
 */
async function slowLink(endpoint: string, stalledKey: string) {
  const target = new URL(endpoint);
  const held: (() => void)[] = [];
  let release = false;
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.includes(stalledKey)) return;
    const forward = () => {
      const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (req.method === 'PUT' && !release) held.push(forward);
    else forward();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: () => held.length,
    release() {
      release = true;
      for (const forward of held.splice(0)) forward();
    },
    async close() {
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      server.closeAllConnections();
      await closed;
    },
  };
}

describe('s3_put_object on a slow link', () => {
  let gw: McpGateway;
  let link: Awaited<ReturnType<typeof slowLink>>;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    const options = await backendOptions({ s3: true }, cleanups);
    link = await slowLink(options.s3.endpoint ?? '', 'uploads/stalled.bin');
    cleanups.unshift(() => link.close());
    // Other bucket calls give up after 100 ms, once; an upload has ten minutes.
    gw = await startMcpGateway({
      port: 0,
      dataDir: options.dataDir,
      databaseUrl: options.databaseUrl,
      s3: { ...options.s3, endpoint: link.endpoint, uploadTimeoutMs: 600_000 },
      breaker: { timeoutMs: 100, maxAttempts: 1 },
      logger: captureLogger().logger,
    });
    cleanups.unshift(() => gw.close());
  });
  after(async () => {
    for (const c of cleanups) await c();
  });

  it('is bounded by the upload timeout, not by the timeout of other bucket calls', async () => {
    const bytes = randomBytes(1024 * 1024);
    const putting = callTool(gw.url, 's3_put_object', { key: 'uploads/slow.bin', content_base64: bytes.toString('base64'), content_type: 'application/octet-stream' });
    while (link.held() === 0) await setImmediate();
    // A read that started after the upload, under the other calls' bound, has timed out: the
    // upload has run past that bound too.
    const stalled = await callTool(gw.url, 's3_get_object', { key: 'uploads/stalled.bin' });
    assert.equal(stalled.status, 502);
    assert.deepEqual(stalled.body.error, { code: 'backend_error', message: 's3 did not answer in time', backend: 's3' });
    link.release();
    const put = await putting;
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.size, bytes.length);
    const got = await callTool(gw.url, 's3_get_object', { key: 'uploads/slow.bin' });
    assert.ok(Buffer.from(String(got.body.content_base64), 'base64').equals(bytes));
  });
});
