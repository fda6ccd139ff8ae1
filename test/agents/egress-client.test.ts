import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEgressClient, isEgressError } from '../../agents/shared/egress-client.js';
import { callTrace, withTrace } from '../../agents/shared/trace.js';

describe('agents: egress client', () => {
  let server: Server;
  let url: string;
  before(async () => {
    // Announces 1000 bytes, sends 16, then drops the connection: a dependency failing mid-answer.
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"success":true,');
      setTimeout(() => res.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  it('passes on the trace of the call being served, and no trace outside one', async () => {
    const seen: (string | undefined)[][] = [];
    const sidecar = createServer((req, res) => {
      seen.push([req.headers.traceparent as string | undefined, req.headers.tracestate as string | undefined]);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true,"result":{}}');
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}` });
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const trace = callTrace({ traceparent, tracestate: 'vendor=opaque' });
      // Work started while serving the call (a timer included) keeps its trace.
      await withTrace(trace, async () => {
        await egress.callTool('documents_get', { document_id: 'x' });
        await new Promise<void>((resolve) => setTimeout(() => void egress.callTool('documents_get', { document_id: 'y' }).then(() => resolve()), 1));
      });
      await egress.callTool('documents_get', { document_id: 'z' });
      assert.deepEqual(seen, [[traceparent, 'vendor=opaque'], [traceparent, 'vendor=opaque'], [undefined, undefined]]);
      assert.equal(callTrace({ traceparent: traceparent.toUpperCase() }), undefined);
    } finally {
      sidecar.close();
    }
  });

  it('makes a read-only tool call again when its hop failed, and never one that changes something', async () => {
    const tools: string[] = [];
    // The next `failing` calls fail as a restarting gateway's sidecar answers: 503, or a dropped connection.
    let failing = 2;
    const sidecar = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        tools.push((JSON.parse(body) as { tool: string }).tool);
        if (failing-- > 0) {
          if (failing % 2 === 1) return res.writeHead(503, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"upstream unavailable","data":{"reason":"upstream.unavailable"}}}');
          return res.destroy();
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true,"document_id":"d"}');
      });
    });
    await new Promise<void>((resolve) => sidecar.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(sidecar.address() as AddressInfo).port}`, toolRetry: { attempts: 3, initialDelayMs: 1, maxDelayMs: 1 } });
      assert.deepEqual(await egress.callTool('documents_get', { document_id: 'd' }), { document_id: 'd' });
      assert.deepEqual(tools, ['documents_get', 'documents_get', 'documents_get']);
      failing = 2;
      tools.length = 0;
      await assert.rejects(egress.callTool('documents_update', { document_id: 'd', status: 'failed' }), (error: unknown) => isEgressError(error) && error.kind === 'transport' && error.status === 503);
      assert.deepEqual(tools, ['documents_update']);
      // Past its attempts the hop failure is the caller's, as before.
      failing = 10;
      tools.length = 0;
      await assert.rejects(egress.callTool('s3_get_object', { key: 'k' }), (error: unknown) => isEgressError(error) && error.kind === 'transport');
      assert.equal(tools.length, 3);
    } finally {
      sidecar.close();
    }
  });

  it('never follows a redirect: the body is not posted anywhere past the sidecar', async () => {
    const elsewhere: string[] = [];
    const sink = createServer((req, res) => {
      elsewhere.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true}');
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    const redirecting = createServer((_req, res) => res.writeHead(307, { location: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/steal` }).end());
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    try {
      const egress = createEgressClient({ baseUrl: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}` });
      await assert.rejects(egress.callTool('documents_get', { document_id: 'x' }), (error: unknown) => {
        assert.ok(isEgressError(error), String(error));
        assert.equal(error.kind, 'remote');
        assert.match(error.message, /redirect \(HTTP 307\), not followed/);
        return true;
      });
      assert.deepEqual(elsewhere, []);
    } finally {
      sink.close();
      redirecting.close();
    }
  });

  it('reports an answer cut off mid-body as a transport failure, which callers retry', async () => {
    const egress = createEgressClient({ baseUrl: url });
    await assert.rejects(egress.callTool('documents_get', { document_id: 'x' }), (error: unknown) => {
      assert.ok(isEgressError(error), String(error));
      assert.equal(error.kind, 'transport');
      return true;
    });
  });
});
